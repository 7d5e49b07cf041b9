-- Drop an alias only if it still names the given customer (it may have been replaced).
-- KEYS[1]  a merged-away customer's alias key
-- ARGV[1]  the customer it must name
-- Returns 1 when it was dropped, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
