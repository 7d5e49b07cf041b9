-- Reschedule customers the decay sweep took from a due index (one key, so cluster-safe).
-- KEYS[1]  the partition's due index (sorted set: customer -> next crossing ms)
-- ARGV     triples: customer, score the sweep read, new score ('' to drop the entry)
-- An entry still at the score the sweep read is replaced; one another writer moved
-- meanwhile only ever moves earlier (like ZADD LT), so no crossing is pushed back.
for i = 1, #ARGV, 3 do
  local member, old, new = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local cur = redis.call('ZSCORE', KEYS[1], member)
  if cur and tonumber(cur) == old then
    if new == '' then
      redis.call('ZREM', KEYS[1], member)
    else
      redis.call('ZADD', KEYS[1], new, member)
    end
  elseif new ~= '' then
    redis.call('ZADD', KEYS[1], 'LT', new, member)
  end
end
return 0
