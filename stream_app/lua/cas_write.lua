-- Fenced write of one customer's state record (one key, so cluster-safe).
-- KEYS[1]  state key
-- ARGV[1]  version the writer read (0: the key did not exist)
-- ARGV[2]  the new record, "<version+1> <marks> <state>"
-- KEYS[2]  optional: the customer's explanation key (same hash tag), ARGV[3] its value
-- Returns -1 when written, else the version currently stored (the write lost a race).
local cur = redis.call('GET', KEYS[1])
local version = 0
if cur then
  version = tonumber(string.match(cur, '^(%d+) ')) or 0
end
if version ~= tonumber(ARGV[1]) then
  return version
end
redis.call('SET', KEYS[1], ARGV[2])
if KEYS[2] then
  redis.call('SET', KEYS[2], ARGV[3])
end
return -1
