#!lua flags=no-writes,allow-cross-slot-keys
-- The tier counts of Redis Cluster summed on one node, in one call (instead of one HMGET
-- per slot: 16,384 per request). Sent to each primary with the counts hashes of the slots
-- it serves; keys are read, not declared (a declared key list must be of one slot), so
-- the call needs Redis 7's allow-cross-slot-keys flag, and every key on this node (a slot
-- on the move fails the call: the caller then reads slot by slot).
-- ARGV[1]            n, the number of counts hashes
-- ARGV[2 .. n + 1]   the counts hashes ("<prefix>:<model>:tier-counts:{<tag>}")
-- ARGV[n + 2 ..]     the tier names
-- Returns the sum per tier, in the order given.
local n = tonumber(ARGV[1])
local tiers = {}
for j = n + 2, #ARGV do
  tiers[#tiers + 1] = ARGV[j]
end
local total = {}
for j = 1, #tiers do
  total[j] = 0
end
for i = 2, n + 1 do
  local row = redis.call('HMGET', ARGV[i], unpack(tiers))
  for j = 1, #tiers do
    total[j] = total[j] + (tonumber(row[j]) or 0)
  end
end
return total
