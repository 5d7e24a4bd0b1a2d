-- started.lua: record STARTED for tasks a worker is about to run, unless final.
-- KEYS[i] state hash of task i  ARGV[1] ttl ms  ARGV[1+i] attempt number of task i
for i = 1, #KEYS do
  local s = redis.call('HGET', KEYS[i], 's')
  if s ~= 'SUCCESS' and s ~= 'FAILURE' then
    redis.call('HSET', KEYS[i], 's', 'STARTED', 'a', ARGV[1 + i])
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
  end
end
return #KEYS
