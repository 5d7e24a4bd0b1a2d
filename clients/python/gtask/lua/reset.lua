-- reset.lua: force task states back to PENDING, final ones included, dropping
-- result and notification (a dead task requeued by hand; backend on its own
-- server -- colocated, dead_requeue.lua does this itself).
-- KEYS[2i-1] state hash, KEYS[2i] notify list of task i  ARGV[1] ttl ms
--
-- All or nothing (issue 14): Redis does not undo the writes of a script that
-- fails half-way.  Every key is read before the first write (LINDEX of the
-- notify list, HLEN of the hash: each fails on a key of the wrong type).

-- @include attempts
local function refuse(r, key)
  return redis.error_reply(r.err .. ' (' .. key .. '; reset.lua changed nothing)')
end
local ttl = ARGV[1] -- a string: PEXPIRE parses it (no float formatting)
local n = #KEYS / 2
local at = {}
for i = 1, n do
  local tkey, nkey = KEYS[2 * i - 1], KEYS[2 * i]
  local rec = redis.pcall('LINDEX', nkey, 0)
  if type(rec) == 'table' then return refuse(rec, nkey) end
  local r = redis.pcall('HLEN', tkey)
  if type(r) == 'table' then return refuse(r, tkey) end
  -- The final record's attempt count carries over (its hash was deleted).
  at[i] = attempts_of(rec) or false
end
for i = 1, n do
  local tkey, nkey = KEYS[2 * i - 1], KEYS[2 * i]
  redis.call('DEL', nkey)
  redis.call('HDEL', tkey, 'r')
  if at[i] then
    redis.call('HSET', tkey, 's', 'PENDING', 'a', at[i])
  else
    redis.call('HSET', tkey, 's', 'PENDING')
  end
  redis.call('PEXPIRE', tkey, ttl)
end
return n
