-- failed_requeue.lua: run failed tasks again (gtask rerun): move kept
-- messages from the failed set back to the stream, each only if the failed set
-- still holds the member the caller read (compare-and-swap: a concurrent
-- rerun, or the trim of an expired entry, wins, so no task is queued twice),
-- optionally resetting its state to PENDING (ARGV[1] == "1": broker and
-- backend colocated), as dead_requeue.lua does: the final record's attempts
-- carry over until the task runs again (its message counts runs from 0).
-- KEYS[1] stream  KEYS[2] failed
-- KEYS[3+2(i-1)] state hash, KEYS[4+2(i-1)] notify list of task i (when state)
-- ARGV[1] "1" reset state, "0" not  ARGV[2] state ttl ms
-- ARGV[3+3(i-1)..] task id, the message now kept (the member is id .. it),
--                  the message to queue
-- Returns one integer per task: 1 moved, 0 not (entry gone or changed).
--
-- All or nothing (issue 14): every key is read before the first write (ZSCORE
-- of the failed set, XLEN of the stream, LINDEX of a notify list and HLEN of
-- a state hash: each fails on a key of the wrong type).

-- @include attempts
local function refuse(r, key)
  return redis.error_reply(r.err .. ' (' .. key .. '; failed_requeue.lua changed nothing)')
end
local with_state = ARGV[1] == '1'
local ttl = ARGV[2]
local n = (#ARGV - 2) / 3
local out, at, moved = {}, {}, 0
for i = 1, n do
  local b = 2 + 3 * (i - 1)
  local sc = redis.pcall('ZSCORE', KEYS[2], ARGV[b + 1] .. ARGV[b + 2])
  if type(sc) == 'table' and sc.err then return refuse(sc, KEYS[2]) end
  out[i] = sc and 1 or 0
  if out[i] == 1 then
    moved = moved + 1
    if with_state then
      local tkey, nkey = KEYS[3 + 2 * (i - 1)], KEYS[4 + 2 * (i - 1)]
      local rec = redis.pcall('LINDEX', nkey, 0)
      if type(rec) == 'table' then return refuse(rec, nkey) end
      local r = redis.pcall('HLEN', tkey)
      if type(r) == 'table' then return refuse(r, tkey) end
      at[i] = attempts_of(rec) or false
    end
  end
end
if moved > 0 then
  local r = redis.pcall('XLEN', KEYS[1])
  if type(r) == 'table' then return refuse(r, KEYS[1]) end
end
for i = 1, n do
  if out[i] == 1 then
    local b = 2 + 3 * (i - 1)
    local id = ARGV[b + 1]
    redis.call('XADD', KEYS[1], '*', 'i', id, 'm', ARGV[b + 3])
    redis.call('ZREM', KEYS[2], id .. ARGV[b + 2])
    if with_state then
      local tkey, nkey = KEYS[3 + 2 * (i - 1)], KEYS[4 + 2 * (i - 1)]
      redis.call('DEL', nkey, tkey)
      if at[i] then
        redis.call('HSET', tkey, 's', 'PENDING', 'a', at[i])
      else
        redis.call('HSET', tkey, 's', 'PENDING')
      end
      redis.call('PEXPIRE', tkey, ttl)
    end
  end
end
return out
