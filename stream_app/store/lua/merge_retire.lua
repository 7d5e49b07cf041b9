-- Retire a customer merged into another: delete its record, fenced, and leave an alias
-- to the survivor (cluster-safe: KEYS[2..3] share the customer's slot; on Redis Cluster
-- KEYS[1] is that slot's tier-counts hash).
-- KEYS[1]  the tier-counts hash: tier name -> customers in it
-- KEYS[2]  the customer's state key
-- KEYS[3]  its alias key
-- ARGV[1]  the fence token of the record the caller read, as cas_write.lua takes it:
--          "<version>.<write id>", or a bare version ("0": there was no record)
-- ARGV[2]  the tier of that record ("": none, or tiers are not counted)
-- ARGV[3]  the survivor's customer id
-- ARGV[4]  how long the alias lives, in ms
-- Returns 0 when the record changed since it was read, or the key holds another type
-- (nothing is done), else 1.
local cur = redis.pcall('GET', KEYS[2])
if type(cur) == 'table' then
  return 0
end
local want = ARGV[1]
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
  return 0
end
if cur then
  redis.call('DEL', KEYS[2])
  if ARGV[2] ~= '' then
    redis.call('HINCRBY', KEYS[1], ARGV[2], -1)
  end
end
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
return 1
