-- Durable event-time progress of one partition number (one key, so cluster-safe).
-- KEYS[1]  the partition's progress hash (see keys.py: progress)
-- ARGV     pairs: field, number
-- Each field only moves up: progress and the offsets that justify it are monotonic, so
-- a late write from a worker that lost the partition can never move them back.
for i = 1, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if not cur or tonumber(ARGV[i + 1]) > tonumber(cur) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 0
