-- progress.lua: record the progress running tasks reported (issue 18:
-- gtask_ctx_progress), unless final (a final task has its notify list); all
-- or nothing, as started.lua (see tasks_to_mark).
-- KEYS[2i-1] state hash, KEYS[2i] notify list of task i  ARGV[1] ttl ms
-- ARGV[1+i] task i's progress: "DONE TOTAL MESSAGE" (field p of the hash)
-- Returns how many were recorded.
local script = 'progress.lua'
-- @include tasks_to_mark
for k, i in ipairs(marks) do
  local tkey = KEYS[2 * i - 1]
  if k == 1 then -- the one hash tasks_to_mark did not check
    local r = redis.pcall('HSET', tkey, 'p', ARGV[1 + i])
    if type(r) == 'table' then return refuse(r, tkey) end
  else
    redis.call('HSET', tkey, 'p', ARGV[1 + i])
  end
  redis.call('PEXPIRE', tkey, ARGV[1])
end
return #marks
