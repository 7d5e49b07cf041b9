-- Idempotent NPS counting for one source partition (one key, so cluster-safe).
-- KEYS[1]  counters hash of the partition; field "_wm" is the highest offset counted
-- ARGV     triples: offset, field, delta  (offsets ascending)
-- Counts only offsets above the watermark, so a replayed batch counts nothing twice.
-- Returns the number of triples counted.
local wm = tonumber(redis.call('HGET', KEYS[1], '_wm') or '-1')
local counted = 0
local top = wm
for i = 1, #ARGV, 3 do
  local offset = tonumber(ARGV[i])
  if offset > wm then
    redis.call('HINCRBY', KEYS[1], ARGV[i + 1], tonumber(ARGV[i + 2]))
    counted = counted + 1
    if offset > top then top = offset end
  end
end
if top > wm then
  redis.call('HSET', KEYS[1], '_wm', top)
end
return counted
