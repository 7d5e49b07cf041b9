-- Retention of the NPS day counters of one source partition (one key: cluster-safe).
-- KEYS[1]  counters hash: "<YYYY-MM-DD>|<tier>|<category>" -> count, plus "_wm"
-- ARGV[1]  the first day kept, "YYYY-MM-DD": the counters of every earlier day are deleted
-- Returns the number of fields deleted. The watermark "_wm" is never touched.
local doomed = {}
for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
  if name ~= '_wm' and string.sub(name, 1, 10) < ARGV[1] then
    doomed[#doomed + 1] = name
  end
end
for i = 1, #doomed, 1000 do
  redis.call('HDEL', KEYS[1], unpack(doomed, i, math.min(i + 999, #doomed)))
end
return #doomed
