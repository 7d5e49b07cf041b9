#!lua flags=no-writes
-- Customer records of one batch, in one call (single Redis; on Redis Cluster the worker
-- reads with MGET per slot instead, since a script only sees keys of one slot).
-- KEYS[i]  state key of customer i
-- Returns one entry per key: the record (a string), false (nil in the reply) when the key
-- does not exist, or 0 when it holds another Redis type (GET refused it with WRONGTYPE):
-- the worker then asks TYPE of those only. MGET would read such a key as missing, and a
-- second round trip (EXISTS) would be needed to tell the two apart.
-- Flagged no-writes and called with EVALSHA_RO (Redis 7), so that, like MGET, it runs
-- while writes are paused (CLIENT PAUSE WRITE, as during a failover) or refused (a
-- replica, OOM).
local out = {}
for i = 1, #KEYS do
  local v = redis.pcall('GET', KEYS[i])
  if type(v) == 'table' then
    out[i] = 0
  else
    out[i] = v
  end
end
return out
