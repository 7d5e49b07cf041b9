-- Fenced writes of customer records, and the tier counts that go with them (cluster-safe
-- when all KEYS share a slot: on Redis Cluster the worker sends one customer per call,
-- with its slot's tier-counts hash; on a single Redis, a whole batch).
-- KEYS[1]      the tier-counts hash: tier name -> customers in it
-- KEYS[i + 1]  state key of customer i
-- ARGV[4i-3]   the version the writer read for customer i (0: the key did not exist)
-- ARGV[4i-2]   customer i's new record, "<version+1> <marks> <state length> <state><explanation>"
-- ARGV[4i-1]   the tier of the record read ("": none, a new customer)
-- ARGV[4i]     the tier of the new record ("": tiers are not counted)
-- Writes every record whose stored version is still the one read, moving the customer
-- between tier counts if its tier changed; returns the (1-based) indexes of the others:
-- their writes lost a race and change nothing, counts included.
local lost = {}
for i = 1, #KEYS - 1 do
  local cur = redis.call('GET', KEYS[i + 1])
  local version = 0
  if cur then
    version = tonumber(string.match(cur, '^(%d+) ')) or 0
  end
  if version == tonumber(ARGV[4 * i - 3]) then
    redis.call('SET', KEYS[i + 1], ARGV[4 * i - 2])
    local from, to = ARGV[4 * i - 1], ARGV[4 * i]
    if to ~= '' and from ~= to then
      if from ~= '' then
        redis.call('HINCRBY', KEYS[1], from, -1)
      end
      redis.call('HINCRBY', KEYS[1], to, 1)
    end
  else
    lost[#lost + 1] = i
  end
end
return lost
