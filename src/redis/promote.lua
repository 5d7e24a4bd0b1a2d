-- promote.lua: move scheduled messages whose due time has come into the stream.
-- KEYS[1] stream  KEYS[2] sched  ARGV[1] now ms  ARGV[2] max
-- Members of sched are the 36-byte task id followed by the message body.
-- Returns {moved, earliest remaining due ms or 0}.
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  redis.call('XADD', KEYS[1], '*', 'i', string.sub(m, 1, 36), 'm', string.sub(m, 37))
  redis.call('ZREM', KEYS[2], m)
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local at = 0
if #nxt == 2 then at = tonumber(nxt[2]) end
return {#due, at}
