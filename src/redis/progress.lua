-- progress.lua: record the progress running tasks reported (issue 18:
-- gtask_ctx_progress), unless final (a final task has its notify list).
-- KEYS[2i-1] state hash, KEYS[2i] notify list of task i  ARGV[1] ttl ms
-- ARGV[1+i] task i's progress: "DONE TOTAL MESSAGE" (field p of the hash)
-- Returns how many were recorded.
--
-- All or nothing (issue 14), as started.lua: every hash to write but the
-- first is checked first (HLEN fails on a key of the wrong type); the first
-- one's own HSET checks it.
local n = #KEYS / 2
local marks = {}
for i = 1, n do
  if redis.call('EXISTS', KEYS[2 * i]) == 0 then marks[#marks + 1] = i end
end
local function refuse(r, key)
  return redis.error_reply(r.err .. ' (' .. key .. '; progress.lua changed nothing)')
end
for k = 2, #marks do
  local r = redis.pcall('HLEN', KEYS[2 * marks[k] - 1])
  if type(r) == 'table' then return refuse(r, KEYS[2 * marks[k] - 1]) end
end
for k, i in ipairs(marks) do
  local tkey = KEYS[2 * i - 1]
  if k == 1 then
    local r = redis.pcall('HSET', tkey, 'p', ARGV[1 + i])
    if type(r) == 'table' then return refuse(r, tkey) end
  else
    redis.call('HSET', tkey, 'p', ARGV[1 + i])
  end
  redis.call('PEXPIRE', tkey, ARGV[1])
end
return #marks
