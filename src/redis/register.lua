-- register.lua: records a worker as serving a queue, refusing to when a live
-- worker of another key schema serves it (docs/PROTOCOL.md, "Key schema
-- versions").  One call per queue (its keys share the queue's hash slot).
-- KEYS[1] the queue's workers hash: consumer name -> "SCHEMA EXPIRES_MS"
-- ARGV[1] consumer  ARGV[2] its key schema  ARGV[3] now (unix ms)
-- ARGV[4] until when it counts as live (unix ms); "0" removes it
-- Returns {1} when recorded (or removed), {0, name, schema} for the first
-- live worker of another schema found; then nothing changed.
-- Entries past their time are dropped on the way (their workers died without
-- removing themselves).
local me, schema, now, till = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local h = redis.call('HGETALL', KEYS[1])
local stale = {}
for i = 1, #h, 2 do
  local name = h[i]
  local s, exp = string.match(h[i + 1], '^(%d+) (%d+)$')
  if not exp or tonumber(exp) < now then
    stale[#stale + 1] = name
  elseif s ~= schema and name ~= me and till ~= '0' then
    return {0, name, s}
  end
end
if #stale > 0 then redis.call('HDEL', KEYS[1], unpack(stale)) end
if till == '0' then
  redis.call('HDEL', KEYS[1], me)
  return {1}
end
redis.call('HSET', KEYS[1], me, schema .. ' ' .. till)
-- The hash outlives its last worker by no more than that worker's time.
local ttl = tonumber(till) - now
if ttl > 0 and redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return {1}
