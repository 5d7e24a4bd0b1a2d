-- dead_requeue.lua: move dead-lettered messages back to the stream, each only
-- if its dead-set entry still holds the body the caller read (compare-and-swap:
-- a concurrent requeue or purge wins, so no task is queued twice), optionally
-- resetting its state to PENDING (ARGV[1] == "1": broker and backend colocated).
-- KEYS[1] stream  KEYS[2] dead
-- KEYS[3+2(i-1)] state hash, KEYS[4+2(i-1)] notify list of task i (when state)
-- ARGV[1] "1" reset state, "0" not  ARGV[2] state ttl ms
-- ARGV[3+3(i-1)..] task id, body now in the dead set, body to queue
-- Returns one integer per task: 1 moved, 0 not (entry gone or changed).
-- The attempt count of a result record (JSON), or nil.
local function attempts_of(rec)
  if not rec then return nil end
  local ok, r = pcall(cjson.decode, rec)
  if ok and type(r) == 'table' and type(r.at) == 'number' then return r.at end
  return nil
end
local with_state = ARGV[1] == '1'
local ttl = ARGV[2] -- a string: PEXPIRE parses it (no float formatting)
local n = (#ARGV - 2) / 3
local out = {}
for i = 1, n do
  local b = 2 + 3 * (i - 1)
  local id, old, new = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  if redis.call('HGET', KEYS[2], id) == old then
    redis.call('XADD', KEYS[1], '*', 'i', id, 'm', new)
    redis.call('HDEL', KEYS[2], id)
    if with_state then
      local tkey, nkey = KEYS[3 + 2 * (i - 1)], KEYS[4 + 2 * (i - 1)]
      -- The final record's attempt count carries over (its hash was deleted).
      local at = attempts_of(redis.call('LINDEX', nkey, 0))
      redis.call('DEL', nkey)
      redis.call('HDEL', tkey, 'r')
      if at then
        redis.call('HSET', tkey, 's', 'PENDING', 'a', at)
      else
        redis.call('HSET', tkey, 's', 'PENDING')
      end
      redis.call('PEXPIRE', tkey, ttl)
    end
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
