-- Erase one customer's record, fenced, and its alias (cluster-safe: KEYS[2..4] share the
-- customer's slot; on Redis Cluster KEYS[1] is that slot's tier-counts hash).
-- KEYS[1]  the tier-counts hash: tier name -> customers in it
-- KEYS[2]  the customer's state key
-- KEYS[3]  its alias key (set if it was merged into another customer)
-- KEYS[4]  its aliases key (customers merged into it -> when their alias expires, ms)
-- ARGV[1]  the record version the caller read (0: there was no record)
-- ARGV[2]  the tier of that record ("": none, or tiers are not counted)
-- ARGV[3]  now, in ms: aliases expired by then are not returned
-- Returns {0} when the record changed since it was read (nothing is done), else {1, ...}
-- followed by the customers still aliased to this one (the caller drops their aliases,
-- then the aliases key).
local cur = redis.call('GET', KEYS[2])
local version = 0
if cur then
  version = tonumber(string.match(cur, '^(%d+) ')) or 0
end
if version ~= tonumber(ARGV[1]) then
  return {0}
end
if cur then
  redis.call('DEL', KEYS[2])
  if ARGV[2] ~= '' then
    redis.call('HINCRBY', KEYS[1], ARGV[2], -1)
  end
end
redis.call('DEL', KEYS[3])
local out = {1}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], ARGV[3], '+inf')) do
  out[#out + 1] = member
end
return out
