-- started.lua: record STARTED for tasks a worker is about to run, unless final
-- (a final task has its notify list).
-- KEYS[2i-1] state hash, KEYS[2i] notify list of task i  ARGV[1] ttl ms
-- ARGV[1+i] attempt number of task i
for i = 1, #KEYS / 2 do
  if redis.call('EXISTS', KEYS[2 * i]) == 0 then
    redis.call('HSET', KEYS[2 * i - 1], 's', 'STARTED', 'a', ARGV[1 + i])
    redis.call('PEXPIRE', KEYS[2 * i - 1], ARGV[1])
  end
end
return #KEYS / 2
