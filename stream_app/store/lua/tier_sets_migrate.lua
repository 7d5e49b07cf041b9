-- Folds release 0.1's tier sorted sets into the tier counts, once (a single Redis only).
-- KEYS[1]      the tier-counts hash: tier name -> customers in it
-- KEYS[i + 1]  the 0.1 sorted set of the customers in tier ARGV[i]
-- Each set still there adds its size to its tier's count and is deleted; returns the
-- customers moved (0 when there was nothing left to fold).
local moved = 0
for i = 1, #ARGV do
  if redis.call('TYPE', KEYS[i + 1])['ok'] == 'zset' then
    local n = redis.call('ZCARD', KEYS[i + 1])
    redis.call('HINCRBY', KEYS[1], ARGV[i], n)
    redis.call('UNLINK', KEYS[i + 1])
    moved = moved + n
  end
end
return moved
