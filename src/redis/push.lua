-- push.lua: queue task messages, optionally recording each as PENDING.
-- KEYS[1] stream  KEYS[2] sched  KEYS[3] pending set (used when ARGV[1] == "1")
-- ARGV[1] "1" to record PENDING, "0" not   ARGV[2] now ms
-- ARGV[3] "2": every message is due now, each is id, body (ARGV[4..])
--         "3": each message is id, body, due ms (0 = now)
-- Returns the number of messages queued.  All or nothing (one script).
local now = tonumber(ARGV[2])
local stride = tonumber(ARGV[3])
local n = (#ARGV - 3) / stride
local with_state = ARGV[1] == '1'
local ids = {}
for i = 1, n do
  local b = 4 + stride * (i - 1)
  local id, body = ARGV[b], ARGV[b + 1]
  local due = stride == 3 and tonumber(ARGV[b + 2]) or 0
  if due > now then
    redis.call('ZADD', KEYS[2], due, id .. body)
  else
    redis.call('XADD', KEYS[1], '*', 'i', id, 'm', body)
  end
  if with_state then ids[i] = id end
end
-- PENDING is membership of the pending set; finish.lua and store.lua take the
-- id out when they write the state that ends a delivery (a state hash, when
-- there is one, outranks the set).
if with_state and n > 0 then redis.call('SADD', KEYS[3], unpack(ids)) end
return n
