-- promote.lua: move scheduled messages whose due time has come into the stream.
-- KEYS[1] stream  KEYS[2] sched  ARGV[1] now ms  ARGV[2] max
-- Members of sched are the 36-byte task id followed by the message body.
-- Returns {moved, earliest remaining due ms or 0}.
-- The schedule is read, and the first XADD checks the stream, before anything
-- else is written: a key of the wrong type changes nothing (issue 14).
local function refuse(r, key)
  return redis.error_reply(r.err .. ' (' .. key .. '; promote.lua changed nothing)')
end
local due = redis.pcall('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if due.err then return refuse(due, KEYS[2]) end
for k, m in ipairs(due) do
  if k == 1 then
    local r = redis.pcall('XADD', KEYS[1], '*', 'i', string.sub(m, 1, 36), 'm', string.sub(m, 37))
    if type(r) == 'table' and r.err then return refuse(r, KEYS[1]) end
  else
    redis.call('XADD', KEYS[1], '*', 'i', string.sub(m, 1, 36), 'm', string.sub(m, 37))
  end
  redis.call('ZREM', KEYS[2], m)
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local at = 0
if #nxt == 2 then at = tonumber(nxt[2]) end
return {#due, at}
