-- promote.lua: move scheduled messages whose due time has come into the stream.
-- KEYS[1] stream  KEYS[2] sched  ARGV[1] now ms  ARGV[2] max
-- KEYS[3] the queue's priority marker, KEYS[4] and KEYS[5] its level 1 and 2
-- streams (optional: a caller that names only the first two keys queues
-- everything at level 0).  With the marker set, each message goes to the
-- stream of its level (its "pr" field, include/level.lua); without it (no
-- send with a level ever reached the queue), the script is as before, one
-- EXISTS more per call.
-- Members of sched are the 36-byte task id followed by the message body.
-- Returns {moved, earliest remaining due ms or 0}.
-- The schedule is read, and the first XADD checks the stream, before anything
-- else is written: a key of the wrong type changes nothing (issue 14).
-- @include level
local function refuse(r, key)
  return redis.error_reply(r.err .. ' (' .. key .. '; promote.lua changed nothing)')
end
local due = redis.pcall('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if due.err then return refuse(due, KEYS[2]) end
local levels = #KEYS >= 5 and #due > 0 and redis.call('EXISTS', KEYS[3]) == 1
local streams = {KEYS[1], KEYS[4], KEYS[5]}
if levels then -- the level streams are checked before any write
  for i = 4, 5 do
    local r = redis.pcall('XLEN', KEYS[i])
    if type(r) == 'table' and r.err then return refuse(r, KEYS[i]) end
  end
end
for k, m in ipairs(due) do
  local key = KEYS[1]
  if levels then key = streams[level_of(m, 37) + 1] end
  if k == 1 then
    local r = redis.pcall('XADD', key, '*', 'i', string.sub(m, 1, 36), 'm', string.sub(m, 37))
    if type(r) == 'table' and r.err then return refuse(r, key) end
  else
    redis.call('XADD', key, '*', 'i', string.sub(m, 1, 36), 'm', string.sub(m, 37))
  end
  redis.call('ZREM', KEYS[2], m)
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local at = 0
if #nxt == 2 then at = tonumber(nxt[2]) end
return {#due, at}
