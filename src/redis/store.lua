-- store.lua: record states and results (backend on its own server), never
-- overwriting a final state; a final state notifies waiters.  Every task
-- stored leaves the pending set (its state now says what it is).
-- KEYS[1] pending set  KEYS[2i] state hash, KEYS[2i+1] notify list of task i
-- ARGV[1] ttl ms  ARGV[4i-2..4i+1] status, result ("" none), id and fresh of
-- task i (fresh "1": no state hash can exist -- a first delivery without a
-- STARTED mark -- so a final state needs no DEL, and a hand-back (PENDING)
-- records nothing: the task stays in the pending set, which says PENDING)
-- Returns one integer per task: 1 stored, 0 already final.
-- As in finish.lua: a final state is the notify list's one element (the
-- result record); the state hash holds the states before it and is deleted
-- when the task becomes final.
local ttl = ARGV[1] -- a string: PEXPIRE parses it (no float formatting)
local out, ids = {}, {}
for i = 1, (#KEYS - 1) / 2 do
  local tkey, nkey = KEYS[2 * i], KEYS[2 * i + 1]
  local b = 4 * i - 2
  local status, result, id, fresh = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3] == '1'
  if status == 'SUCCESS' or status == 'FAILURE' then
    if redis.call('RPUSH', nkey, result) > 1 then
      redis.call('RPOP', nkey) -- final already: take ours back
      out[i] = 0
    else
      redis.call('PEXPIRE', nkey, ttl)
      if not fresh then redis.call('DEL', tkey) end
      ids[#ids + 1] = id
      out[i] = 1
    end
  elseif redis.call('EXISTS', nkey) == 1 then
    out[i] = 0
  elseif fresh and status == 'PENDING' then
    out[i] = 1
  else
    if result ~= '' then
      redis.call('HSET', tkey, 's', status, 'r', result)
    else
      redis.call('HSET', tkey, 's', status)
    end
    redis.call('PEXPIRE', tkey, ttl)
    ids[#ids + 1] = id
    out[i] = 1
  end
end
if #ids > 0 then redis.call('SREM', KEYS[1], unpack(ids)) end
return out
