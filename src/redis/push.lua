-- push.lua: queue task messages, optionally recording each as PENDING.
-- KEYS[1] stream  KEYS[2] sched  KEYS[2+i] state hash of message i (when ARGV[1] == "1")
-- ARGV[1] "1" to record state, "0" not   ARGV[2] state ttl ms   ARGV[3] now ms
-- ARGV[4+3(i-1)..] id, body, due ms (0 = now) for each message i
-- Returns the number of messages queued.  All or nothing (one script).
local with_state = ARGV[1] == '1'
local ttl = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local n = (#ARGV - 3) / 3
for i = 1, n do
  local id, body, due = ARGV[1 + 3 * i], ARGV[2 + 3 * i], tonumber(ARGV[3 + 3 * i])
  if due > now then
    redis.call('ZADD', KEYS[2], due, id .. body)
  else
    redis.call('XADD', KEYS[1], '*', 'i', id, 'm', body)
  end
  if with_state then
    -- Only a task without a state gets one (attempts: absent means 0).
    local k = KEYS[2 + i]
    if redis.call('HSETNX', k, 's', 'PENDING') == 1 then
      redis.call('PEXPIRE', k, ttl)
    end
  end
end
return n
