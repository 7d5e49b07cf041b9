-- A compare-and-set of the model registry: the caller decided the change from the registry
-- it read; it is written only if nobody changed the registry since.
-- KEYS[1]      the registry hash (its field "rev" counts changes)
-- KEYS[i > 1]  other hashes written with it (a model's slot), same hash tag
-- ARGV[1]      the "rev" the caller read ("" : the registry did not exist)
-- then, for each KEYS[i] in order: n, followed by n field/value pairs to set
-- Returns 1 when written (and "rev" moved on), 0 when the registry had changed.
local rev = redis.call('HGET', KEYS[1], 'rev') or ''
if rev ~= ARGV[1] then
  return 0
end
local a = 2
for i = 1, #KEYS do
  local n = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, n do
    redis.call('HSET', KEYS[i], ARGV[a], ARGV[a + 1])
    a = a + 2
  end
end
redis.call('HINCRBY', KEYS[1], 'rev', 1)
return 1
