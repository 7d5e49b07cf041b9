-- Put an erased customer on its slot's suppression list, and prune the entries that ended
-- (cluster-safe: one key).
-- KEYS[1]  the suppression hash of the customer's slot: keyed hash of an id -> end (ms)
-- ARGV[1]  the customer's keyed hash (hex HMAC-SHA256 of its id)
-- ARGV[2]  now, in ms
-- ARGV[3]  how long the suppression lasts from now, in ms
-- An entry is only ever moved later. The hash expires when its last entry ends. Returns
-- the number of entries pruned.
local now, keep = tonumber(ARGV[2]), tonumber(ARGV[3])
local ends = now + keep
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
if old < ends then
  redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', ends))
end
local pruned = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local until_ms = tonumber(all[i + 1])
  if until_ms == nil or until_ms <= now then
    redis.call('HDEL', KEYS[1], all[i])
    pruned = pruned + 1
  end
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < keep then
  redis.call('PEXPIRE', KEYS[1], keep)
end
return pruned
