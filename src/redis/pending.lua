-- pending.lua: record PENDING for new tasks unless they already have a state.
-- KEYS[i] state hash of task i  ARGV[1] ttl ms
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 's', 'PENDING', 'a', 0)
    redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[1]))
  end
end
return #KEYS
