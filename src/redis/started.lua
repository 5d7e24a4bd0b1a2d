-- started.lua: record STARTED for tasks a worker is about to run, unless final
-- (a final task has its notify list); all or nothing (see tasks_to_mark).
-- KEYS[2i-1] state hash, KEYS[2i] notify list of task i  ARGV[1] ttl ms
-- ARGV[1+i] attempt number of task i
-- Returns how many tasks the call named.
local script = 'started.lua'
-- @include tasks_to_mark
for k, i in ipairs(marks) do
  local tkey = KEYS[2 * i - 1]
  if k == 1 then -- the one hash tasks_to_mark did not check
    local r = redis.pcall('HSET', tkey, 's', 'STARTED', 'a', ARGV[1 + i])
    if type(r) == 'table' then return refuse(r, tkey) end
  else
    redis.call('HSET', tkey, 's', 'STARTED', 'a', ARGV[1 + i])
  end
  redis.call('PEXPIRE', tkey, ARGV[1])
end
return #KEYS / 2
