-- store.lua: record states and results (backend on its own server), never
-- overwriting a final state; a final state notifies waiters.
-- KEYS[2i-1] state hash, KEYS[2i] notify list of task i
-- ARGV[1] ttl ms  ARGV[2i], ARGV[2i+1] status and result ("" none) of task i
-- Returns one integer per task: 1 stored, 0 already final.
local ttl = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS / 2 do
  local tkey, nkey = KEYS[2 * i - 1], KEYS[2 * i]
  local status, result = ARGV[2 * i], ARGV[2 * i + 1]
  local s = redis.call('HGET', tkey, 's')
  if s == 'SUCCESS' or s == 'FAILURE' then
    out[i] = 0
  else
    if result ~= '' then
      redis.call('HSET', tkey, 's', status, 'r', result)
    else
      redis.call('HSET', tkey, 's', status)
    end
    redis.call('PEXPIRE', tkey, ttl)
    if status == 'SUCCESS' or status == 'FAILURE' then
      redis.call('RPUSH', nkey, result)
      redis.call('PEXPIRE', nkey, ttl)
    end
    out[i] = 1
  end
end
return out
