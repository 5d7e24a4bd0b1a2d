-- tasks_to_mark: the head of started.lua and progress.lua.  Not a function:
-- statements run at the top of the including script, which names itself in
-- `script` first (a function would cost a closure and a call on every
-- task's start).  It leaves `marks`, the tasks of the call to write (KEYS[2i-1]
-- state hash, KEYS[2i] notify list of task i): those not final (a final task
-- has its notify list), as a list of i; and refuse(r, key), the error reply
-- for a key that cannot be written, which it returns itself when one of
-- those hashes but the first has the wrong type.
--
-- All or nothing (issue 14): Redis does not undo the writes of a script that
-- fails half-way, and HSET fails on a key of the wrong type.  So every hash
-- to write but the first is checked here (HLEN, a read that fails on a key
-- of the wrong type); the script's first HSET checks its own (pcall).
local marks = {}
for i = 1, #KEYS / 2 do
  if redis.call('EXISTS', KEYS[2 * i]) == 0 then marks[#marks + 1] = i end
end
local function refuse(r, key)
  return redis.error_reply(r.err .. ' (' .. key .. '; ' .. script .. ' changed nothing)')
end
for k = 2, #marks do
  local r = redis.pcall('HLEN', KEYS[2 * marks[k] - 1])
  if type(r) == 'table' then return refuse(r, KEYS[2 * marks[k] - 1]) end
end
