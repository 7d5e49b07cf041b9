-- Fenced writes of customer records (cluster-safe when all KEYS share a slot: the
-- worker sends one key per call on Redis Cluster, a whole batch on a single Redis).
-- KEYS[i]      state key of customer i
-- ARGV[2i-1]   the version the writer read for customer i (0: the key did not exist)
-- ARGV[2i]     customer i's new record, "<version+1> <marks> <state length> <state><explanation>"
-- Writes every record whose stored version is still the one read; returns the
-- (1-based) indexes of the others: their writes lost a race and change nothing.
local lost = {}
for i = 1, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  local version = 0
  if cur then
    version = tonumber(string.match(cur, '^(%d+) ')) or 0
  end
  if version == tonumber(ARGV[2 * i - 1]) then
    redis.call('SET', KEYS[i], ARGV[2 * i])
  else
    lost[#lost + 1] = i
  end
end
return lost
