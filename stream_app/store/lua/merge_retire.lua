-- Retire a customer merged into another: delete its record, fenced, and leave an alias
-- to the survivor (cluster-safe: KEYS[2..3] share the customer's slot; on Redis Cluster
-- KEYS[1] is that slot's tier-counts hash).
-- KEYS[1]  the tier-counts hash: tier name -> customers in it
-- KEYS[2]  the customer's state key
-- KEYS[3]  its alias key
-- ARGV[1]  the record version the caller read (0: there was no record)
-- ARGV[2]  the tier of that record ("": none, or tiers are not counted)
-- ARGV[3]  the survivor's customer id
-- ARGV[4]  how long the alias lives, in ms
-- Returns 0 when the record changed since it was read (nothing is done), else 1.
local cur = redis.call('GET', KEYS[2])
local version = 0
if cur then
  version = tonumber(string.match(cur, '^(%d+) ')) or 0
end
if version ~= tonumber(ARGV[1]) then
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
