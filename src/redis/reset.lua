-- reset.lua: force task states back to PENDING, final ones included, dropping
-- result and notification (a dead task requeued by hand; backend on its own
-- server -- colocated, dead_requeue.lua does this itself).
-- KEYS[2i-1] state hash, KEYS[2i] notify list of task i  ARGV[1] ttl ms
local ttl = ARGV[1] -- a string: PEXPIRE parses it (no float formatting)
for i = 1, #KEYS / 2 do
  local tkey, nkey = KEYS[2 * i - 1], KEYS[2 * i]
  redis.call('DEL', nkey)
  redis.call('HDEL', tkey, 'r')
  redis.call('HSET', tkey, 's', 'PENDING')
  redis.call('PEXPIRE', tkey, ttl)
end
return #KEYS / 2
