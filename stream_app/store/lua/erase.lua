-- Erase one customer's record, fenced, and its alias (cluster-safe: KEYS[2..4] share the
-- customer's slot; on Redis Cluster KEYS[1] is that slot's tier-counts hash).
-- KEYS[1]  the tier-counts hash: tier name -> customers in it
-- KEYS[2]  the customer's state key
-- KEYS[3]  its alias key (set if it was merged into another customer)
-- KEYS[4]  its aliases key (customers merged into it -> when their alias expires, ms)
-- ARGV[1]  the fence token of the record the caller read, as cas_write.lua takes it:
--          "<version>.<write id>", or a bare version ("0": there was no record); "*": the
--          record could not be read (it does not decode, or the key holds another type),
--          so whatever the key holds goes
-- ARGV[2]  the tier of that record ("": none, or tiers are not counted)
-- ARGV[3]  now, in ms: aliases expired by then are not returned
-- Returns {0} when the record changed since it was read (nothing is done), else {1, ...}
-- followed by the customers still aliased to this one (the caller drops their aliases,
-- then the aliases key).
local want = ARGV[1]
local cur = false
if want ~= '*' then
  cur = redis.pcall('GET', KEYS[2])
  if type(cur) == 'table' then
    return {0}
  end
  local token = ''
  if cur then
    token = string.match(cur, '^(%S+) ') or ''
  end
  local match
  if string.find(want, '.', 1, true) then
    match = token == want
  else
    local version = string.match(token, '^(%d+)')
    match = (version and tonumber(version) or 0) == tonumber(want)
  end
  if not match then
    return {0}
  end
end
if redis.call('DEL', KEYS[2]) == 1 and cur and ARGV[2] ~= '' then
  redis.call('HINCRBY', KEYS[1], ARGV[2], -1)
end
redis.call('DEL', KEYS[3])
local out = {1}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], ARGV[3], '+inf')) do
  out[#out + 1] = member
end
return out
