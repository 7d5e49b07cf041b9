-- Adds one slot's share of a release-0.1 tier set to that slot's tier count, once
-- (Redis Cluster; retried freely: a share already added is not added again).
-- KEYS[1]  one slot's tier-counts hash
-- ARGV[1]  the tier; ARGV[2] how many members of its 0.1 set fall in this slot
-- Returns 1 when it added them, 0 when this slot's share was added before.
if redis.call('HSETNX', KEYS[1], 'folded:' .. ARGV[1], 1) == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
