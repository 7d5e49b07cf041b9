-- Fenced writes of customer records, and the tier counts that go with them (cluster-safe
-- when all KEYS share a slot: on Redis Cluster the worker sends one customer per call,
-- with its slot's tier-counts hash; on a single Redis, a whole batch).
-- KEYS[1]      the tier-counts hash: tier name -> customers in it
-- KEYS[i + 1]  state key of customer i
-- ARGV[4i-3]   the fence token of the record the writer read: "<version>.<write id>", or a
--              bare version ("0": the key did not exist; "12": a record of an earlier
--              release, or a writer that only knows the version)
-- ARGV[4i-2]   customer i's new record, "<version+1>.<write id> <marks> <state length> ..."
-- ARGV[4i-1]   the tier of the record read ("": none, a new customer)
-- ARGV[4i]     the tier of the new record ("": tiers are not counted)
-- Writes every record whose stored token is still the one read (a bare version compares
-- the stored record's version only), moving the customer between tier counts if its tier
-- changed; returns the (1-based) indexes of the others: their writes lost a race and
-- change nothing, counts included. A state key holding another type (WRONGTYPE) counts as
-- lost too: the writer reads it again and finds out. A tier count Redis refuses is
-- reported as a string after the indexes, and does not stop the writes.
local lost = {}
local count_error = nil
for i = 1, #KEYS - 1 do
  local cur = redis.pcall('GET', KEYS[i + 1])
  local want = ARGV[4 * i - 3]
  local match = false
  if type(cur) ~= 'table' then
    local token = ''
    if cur then
      token = string.match(cur, '^(%S+) ') or ''
    end
    if string.find(want, '.', 1, true) then
      match = token == want
    else
      local version = string.match(token, '^(%d+)')
      match = (version and tonumber(version) or 0) == tonumber(want)
    end
  end
  if match then
    redis.call('SET', KEYS[i + 1], ARGV[4 * i - 2])
    local from, to = ARGV[4 * i - 1], ARGV[4 * i]
    if to ~= '' and from ~= to then
      local moved = redis.pcall('HINCRBY', KEYS[1], to, 1)
      if from ~= '' and type(moved) ~= 'table' then
        moved = redis.pcall('HINCRBY', KEYS[1], from, -1)
      end
      if type(moved) == 'table' then
        count_error = KEYS[1] .. ': ' .. tostring(moved.err)
      end
    end
  else
    lost[#lost + 1] = i
  end
end
if count_error then
  lost[#lost + 1] = count_error
end
return lost
