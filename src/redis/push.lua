-- push.lua: queue task messages, optionally recording each as PENDING.
-- KEYS[1] stream  KEYS[2] sched  KEYS[3] pending set (used when ARGV[1] == "1")
-- A send of priority level L > 0 (schema 5) names two keys more, and KEYS[1]
-- is then the level's stream, P:{q}:stream:L:
-- KEYS[4] the queue's priority marker P:{q}:prio (set, so that its workers
-- read the level streams)  KEYS[5] the queue's workers hash (register.lua):
-- a live worker of key schema < 5 never reads a level stream, so then
-- nothing is written and the reply is {0, worker, schema}.
-- ARGV[1] "1" to record PENDING, "0" not   ARGV[2] now ms
-- ARGV[3] "2": every message is due now, each is id, body (ARGV[4..])
--         "3": each message is id, body, due ms (0 = now)
-- Returns the number of messages queued.
--
-- All or nothing.  Redis does not undo the writes of a script that fails
-- half-way (issue 14: with the pending set overwritten by a string, a send
-- failed but its task had been queued and ran), and a write here fails only on
-- a key of the wrong type (or on a stream whose ids ran out at 2^64-1, which
-- only a hand-made XADD reaches).  So the keys are written one after the other
-- -- pending set, schedule, stream -- and before any write:
--  - a batch checks every key it writes but the first, whose own write checks
--    it: a read that fails on a key of the wrong type (ZCARD, XLEN), one or
--    two per batch;
--  - a single message (a send) checks nothing: if its ZADD or XADD fails, the
--    SADD before it is undone, exactly (it added the one id, or nothing).  A
--    check costs about 4k instructions, a tenth of the script for one
--    message.
-- (Costs, in instructions of Redis: a table about 800, allocation and garbage
-- collection; a tonumber about 2k -- glibc's strtod.  So ARGV[3] is compared
-- as a string, and only a due time other than 0 is converted.)
local with_state = ARGV[1] == '1'
if #KEYS > 3 then
  local h = redis.call('HGETALL', KEYS[5])
  local now = tonumber(ARGV[2])
  for i = 1, #h, 2 do
    local s, exp = string.match(h[i + 1], '^(%d+) (%d+)$')
    if s and tonumber(s) < 5 and tonumber(exp) >= now then return {0, h[i], s} end
  end
end
local stride = ARGV[3] == '3' and 3 or 2
local n = (#ARGV - 3) / stride
if n == 0 then return 0 end

-- Messages due later go to the schedule: later[b] for the message at ARGV[b].
local later, nlater = nil, 0
if stride == 3 then
  later = {}
  local now = tonumber(ARGV[2])
  for b = 4, #ARGV, 3 do
    if ARGV[b + 2] ~= '0' and tonumber(ARGV[b + 2]) > now then
      later[b] = true
      nlater = nlater + 1
    end
  end
end

-- A batch: the schedule and the stream are checked unless written first.
local function refuse(r, key)
  return redis.error_reply(r.err .. ' (' .. key .. '; push.lua changed nothing)')
end
if n > 1 then
  local r
  if with_state and nlater > 0 then
    r = redis.pcall('ZCARD', KEYS[2])
    if type(r) == 'table' then return refuse(r, KEYS[2]) end
  end
  if (with_state or nlater > 0) and nlater < n then
    r = redis.pcall('XLEN', KEYS[1])
    if type(r) == 'table' then return refuse(r, KEYS[1]) end
  end
end

-- PENDING is membership of the pending set; finish.lua and store.lua take the
-- id out when they write the state that ends a delivery (a state hash, when
-- there is one, outranks the set).
local added = 0
if with_state then
  if n == 1 then
    added = redis.pcall('SADD', KEYS[3], ARGV[4])
  else
    local ids = {}
    for i = 1, n do ids[i] = ARGV[4 + stride * (i - 1)] end
    added = redis.pcall('SADD', KEYS[3], unpack(ids))
  end
  if type(added) == 'table' then return refuse(added, KEYS[3]) end
end

-- Then the messages, in order, but the first one due later (if any) ahead of
-- the others: that first write checks its key, and is the only one that can
-- fail (a batch checked the other keys).  If it fails, a single message's
-- SADD is undone.
local first = 4
if nlater > 0 then
  while not later[first] do first = first + 3 end
end
local key, r = KEYS[1], nil
if nlater > 0 then
  key = KEYS[2]
  r = redis.pcall('ZADD', key, ARGV[first + 2], ARGV[first] .. ARGV[first + 1])
else
  r = redis.pcall('XADD', key, '*', 'i', ARGV[first], 'm', ARGV[first + 1])
end
if type(r) == 'table' then
  if n == 1 and added == 1 then redis.call('SREM', KEYS[3], ARGV[4]) end
  return refuse(r, key)
end
for b = 4, #ARGV, stride do
  if b == first then
    -- (written)
  elseif later and later[b] then
    redis.call('ZADD', KEYS[2], ARGV[b + 2], ARGV[b] .. ARGV[b + 1])
  else
    redis.call('XADD', KEYS[1], '*', 'i', ARGV[b], 'm', ARGV[b + 1])
  end
end
if #KEYS > 3 then redis.call('SET', KEYS[4], '1') end
return n
