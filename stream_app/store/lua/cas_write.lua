-- Fenced writes of customer records, and the tier counts that go with them (cluster-safe
-- when all KEYS share a slot: on Redis Cluster the worker sends one customer per call,
-- with its slot's tier-counts and suppression hashes; on a single Redis, a whole batch).
-- KEYS[1]      the tier-counts hash: tier name -> customers in it
-- KEYS[2i]     state key of customer i
-- KEYS[2i+1]   the suppression hash of customer i's slot: keyed hash of an id -> end (ms)
--              (any key of the slot when ARGV[5i+1] is "")
-- ARGV[1]      now, in ms
-- ARGV[5i-3]   the fence token of the record the writer read: "<version>.<write id>", or a
--              bare version ("0": the key did not exist; "12": a record of an earlier
--              release, or a writer that only knows the version)
-- ARGV[5i-2]   customer i's new record, "<version+1>.<write id> <marks> <state length> ..."
-- ARGV[5i-1]   the tier of the record read ("": none, a new customer)
-- ARGV[5i]     the tier of the new record ("": tiers are not counted)
-- ARGV[5i+1]   customer i's keyed hash in the suppression hash ("": not checked)
-- Writes every record whose stored token is still the one read (a bare version compares
-- the stored record's version only), moving the customer between tier counts if its tier
-- changed; returns the (1-based) indexes of the others: their writes lost a race and
-- change nothing, counts included. A write that would create the record of a customer
-- on the suppression list (erased after the writer read it) loses too: the writer reads
-- again and finds the customer erased. A state key holding another type (WRONGTYPE) counts
-- as lost too: the writer reads it again and finds out. A tier count Redis refuses is
-- reported as a string after the indexes, and does not stop the writes.
local now = tonumber(ARGV[1])
local lost = {}
local count_error = nil
for i = 1, (#KEYS - 1) / 2 do
  local key = KEYS[2 * i]
  local a = 5 * i - 4
  local cur = redis.pcall('GET', key)
  local want = ARGV[a + 1]
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
  if match and not cur and ARGV[a + 5] ~= '' then
    local ends = redis.pcall('HGET', KEYS[2 * i + 1], ARGV[a + 5])
    if type(ends) == 'string' and (tonumber(ends) or 0) > now then
      match = false
    end
  end
  if match then
    redis.call('SET', key, ARGV[a + 2])
    local from, to = ARGV[a + 3], ARGV[a + 4]
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
