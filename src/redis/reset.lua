-- reset.lua: force task states back to PENDING, final ones included, dropping
-- result and notification (a dead task requeued by hand; backend on its own
-- server -- colocated, dead_requeue.lua does this itself).
-- KEYS[2i-1] state hash, KEYS[2i] notify list of task i  ARGV[1] ttl ms
-- The attempt count of a result record (JSON), or nil.
local function attempts_of(rec)
  if not rec then return nil end
  local ok, r = pcall(cjson.decode, rec)
  if ok and type(r) == 'table' and type(r.at) == 'number' then return r.at end
  return nil
end
local ttl = ARGV[1] -- a string: PEXPIRE parses it (no float formatting)
for i = 1, #KEYS / 2 do
  local tkey, nkey = KEYS[2 * i - 1], KEYS[2 * i]
  -- The final record's attempt count carries over (its hash was deleted).
  local at = attempts_of(redis.call('LINDEX', nkey, 0))
  redis.call('DEL', nkey)
  redis.call('HDEL', tkey, 'r')
  if at then
    redis.call('HSET', tkey, 's', 'PENDING', 'a', at)
  else
    redis.call('HSET', tkey, 's', 'PENDING')
  end
  redis.call('PEXPIRE', tkey, ttl)
end
return #KEYS / 2
