-- dead_requeue.lua: move dead-lettered messages back to the stream, each only
-- if its dead-set entry still holds the body the caller read (compare-and-swap:
-- a concurrent requeue or purge wins, so no task is queued twice), optionally
-- resetting its state to PENDING (ARGV[1] == "1": broker and backend colocated).
-- KEYS[1] stream  KEYS[2] dead
-- KEYS[3+2(i-1)] state hash, KEYS[4+2(i-1)] notify list of task i (when state)
-- ARGV[1] "1" reset state, "0" not  ARGV[2] state ttl ms
-- ARGV[3+3(i-1)..] task id, body now in the dead set, body to queue
-- Returns one integer per task: 1 moved, 0 not (entry gone or changed).
--
-- All or nothing (issue 14): Redis does not undo the writes of a script that
-- fails half-way.  Every key is read before the first write (HGET of the dead
-- set, XLEN of the stream, LINDEX of a notify list, HLEN of a state hash: each
-- fails on a key of the wrong type).

-- @include attempts
local function refuse(r, key)
  return redis.error_reply(r.err .. ' (' .. key .. '; dead_requeue.lua changed nothing)')
end
local with_state = ARGV[1] == '1'
local ttl = ARGV[2] -- a string: PEXPIRE parses it (no float formatting)
local n = (#ARGV - 2) / 3
local out, at, moved = {}, {}, 0
for i = 1, n do
  local b = 2 + 3 * (i - 1)
  local cur = redis.pcall('HGET', KEYS[2], ARGV[b + 1])
  if type(cur) == 'table' then return refuse(cur, KEYS[2]) end
  out[i] = cur == ARGV[b + 2] and 1 or 0
  if out[i] == 1 then
    moved = moved + 1
    if with_state then
      local tkey, nkey = KEYS[3 + 2 * (i - 1)], KEYS[4 + 2 * (i - 1)]
      local rec = redis.pcall('LINDEX', nkey, 0)
      if type(rec) == 'table' then return refuse(rec, nkey) end
      local r = redis.pcall('HLEN', tkey)
      if type(r) == 'table' then return refuse(r, tkey) end
      -- The final record's attempt count carries over (its hash was deleted).
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
    redis.call('HDEL', KEYS[2], id)
    if with_state then
      local tkey, nkey = KEYS[3 + 2 * (i - 1)], KEYS[4 + 2 * (i - 1)]
      redis.call('DEL', nkey)
      redis.call('HDEL', tkey, 'r')
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
