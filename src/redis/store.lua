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
--
-- All or nothing (issue 14), as in finish.lua: Redis does not undo the writes
-- of a script that fails half-way, and a write here fails on a key of the
-- wrong type.  So: 1. each final state's RPUSH is its check (for a final
-- state already, and for its list's type), and the only write before step 3,
-- undone exactly if the call fails (each list created here is deleted again);
-- 2. every state hash to write is checked (HLEN, which fails on a key of the
-- wrong type); 3. the pending set is checked by its own SREM, the first write
-- that cannot be undone; 4. the rest, which cannot fail.  A failure in steps
-- 1 to 3 returns an error naming the key, with nothing changed.  A batch of
-- final states pays nothing for this.
local ttl = ARGV[1] -- a string: PEXPIRE parses it (no float formatting)
local n = (#KEYS - 1) / 2
local out, ids = {}, {}
local dels, sets = nil, nil -- tasks whose hash step 4 deletes, or writes

-- The error for a failed command on key (r: its redis.pcall reply), after
-- deleting the notify lists step 1 created.
local function fail(r, key)
  for i = 1, n do
    local status = ARGV[4 * i - 2]
    if out[i] == 1 and (status == 'SUCCESS' or status == 'FAILURE') then
      redis.call('DEL', KEYS[2 * i + 1])
    end
  end
  return redis.error_reply(r.err .. ' (' .. key .. '; store.lua changed nothing)')
end

-- 1. Decide: out[i] = 1 to store, 0 final already.
for i = 1, n do
  local nkey = KEYS[2 * i + 1]
  local b = 4 * i - 2
  local status, fresh = ARGV[b], ARGV[b + 3] == '1'
  if status == 'SUCCESS' or status == 'FAILURE' then
    local len = redis.pcall('RPUSH', nkey, ARGV[b + 1])
    if type(len) == 'table' then return fail(len, nkey) end
    if len > 1 then
      redis.call('RPOP', nkey) -- final already: take ours back
      out[i] = 0
    else
      redis.call('PEXPIRE', nkey, ttl)
      ids[#ids + 1] = ARGV[b + 2]
      out[i] = 1
      if not fresh then
        dels = dels or {}
        dels[#dels + 1] = KEYS[2 * i]
      end
    end
  elseif redis.call('EXISTS', nkey) == 1 then
    out[i] = 0
  elseif fresh and status == 'PENDING' then
    out[i] = 1
  else
    ids[#ids + 1] = ARGV[b + 2]
    sets = sets or {}
    sets[#sets + 1] = i
    out[i] = 1
  end
end

-- 2. The state hashes to write.
for k = 1, sets and #sets or 0 do
  local i = sets[k]
  local r = redis.pcall('HLEN', KEYS[2 * i])
  if type(r) == 'table' then return fail(r, KEYS[2 * i]) end
end

-- 3. The pending set.
if #ids > 0 then
  local r = redis.pcall('SREM', KEYS[1], unpack(ids))
  if type(r) == 'table' then return fail(r, KEYS[1]) end
end

-- 4. A final state drops the hash (unless fresh: none can exist); any other
-- state is the hash.
for k = 1, dels and #dels or 0 do redis.call("DEL", dels[k]) end
for k = 1, sets and #sets or 0 do
  local i = sets[k]
  local tkey, status, result = KEYS[2 * i], ARGV[4 * i - 2], ARGV[4 * i - 1]
  if result ~= '' then
    redis.call('HSET', tkey, 's', status, 'r', result)
  else
    redis.call('HSET', tkey, 's', status)
  end
  redis.call('PEXPIRE', tkey, ttl)
end
return out
