-- claim.lua: sends that must not duplicate a task (a chosen id, a unique
-- key): each claim whose id is new and whose key is free is recorded PENDING,
-- takes its key and, when queueing too, is queued; a duplicate changes
-- nothing and is answered with the id of the task that exists.
-- KEYS[1] stream  KEYS[2] sched  KEYS[3] pending set, then per claim:
--   t:<id>, n:<id>, and with a unique key u:<digest>, and when the key was
--   seen held (until-done mode) t:<holder>, n:<holder>
-- ARGV[1] "1" to queue too (broker and backend colocated), "0" to claim only
-- (the caller then queues the claimed ones with push.lua), "2" to queue at a
-- priority level above 0: KEYS[1] is then that level's stream, and the last
-- two KEYS are the queue's priority marker and its workers hash, as in
-- push.lua (a live worker of key schema < 5: nothing written, the reply is
-- {0, worker, schema})
-- ARGV[2] now ms  ARGV[3] state TTL ms (an until-done key's lifetime)
-- ARGV[4..] per claim: id, body, due ms (0 = now), key TTL ("" no key, "0"
--   until the task is final, else ms), the holder of an until-done key as the
--   caller read it with GET ("" none; not read for a TTL key, which is held
--   while it exists)
-- Returns, per claim, 1 (claimed) or the id of the task that exists; or the
-- integer -1 when a key's holder is not the one the caller read (it changed
-- meanwhile: nothing was written, read it again and retry).
--
-- Why the caller reads the holder first: an until-done key stays held while
-- its task is not final, which is told by the holder's own keys (t:, n: and
-- the pending set); a script is given every key it touches, so the holder's
-- keys must be named before the script runs.  The compare makes the pair
-- atomic.
--
-- All or nothing (issue 14): every read (SISMEMBER, EXISTS, GET: a key of
-- the wrong type fails it) and a check of the stream (XLEN) and the schedule
-- (ZCARD) come before the first write; the first write (SADD) checks its own
-- key; SET cannot fail on a key GET read.
local queue = ARGV[1] ~= '0'
local now = tonumber(ARGV[2])
if ARGV[1] == '2' then
  local h = redis.call('HGETALL', KEYS[#KEYS])
  for i = 1, #h, 2 do
    local s, exp = string.match(h[i + 1], '^(%d+) (%d+)$')
    if s and tonumber(s) < 5 and tonumber(exp) >= now then return {0, h[i], s} end
  end
end
local function refuse(r, key)
  return redis.error_reply(r.err .. ' (' .. key .. '; claim.lua changed nothing)')
end
local function rd(cmd, key, ...)
  local r = redis.pcall(cmd, key, ...)
  if type(r) == 'table' and r.err then return nil, refuse(r, key) end
  return r
end

local out, claims, taken = {}, {}, {}
local k, nready, nlater = 4, 0, 0
for b = 4, #ARGV, 5 do
  local id, uttl, holder = ARGV[b], ARGV[b + 3], ARGV[b + 4]
  local tkey, nkey = KEYS[k], KEYS[k + 1]
  k = k + 2
  local ukey, th, tn
  if uttl ~= '' then
    ukey = KEYS[k]
    k = k + 1
    if holder ~= '' then
      th, tn = KEYS[k], KEYS[k + 1]
      k = k + 2
    end
  end
  local dup
  local r, e = rd('SISMEMBER', KEYS[3], id)
  if e then return e end
  if r == 1 or redis.call('EXISTS', tkey) == 1 or redis.call('EXISTS', nkey) == 1 then
    dup = id
  end
  if not dup and ukey then
    if taken[ukey] then
      dup = taken[ukey]
    else
      local cur
      cur, e = rd('GET', ukey)
      if e then return e end
      if cur == false then cur = '' end
      if uttl ~= '0' then
        if cur ~= '' then dup = cur end -- a TTL key is held until it expires
      elseif cur ~= holder then
        return -1
      elseif cur ~= '' and redis.call('EXISTS', tn) == 0 then
        local live
        live, e = rd('SISMEMBER', KEYS[3], cur)
        if e then return e end
        if live == 1 or redis.call('EXISTS', th) == 1 then dup = cur end
      end
    end
  end
  if dup then
    out[#out + 1] = dup
  else
    out[#out + 1] = 1
    if ukey then taken[ukey] = id end
    local due = ARGV[b + 2]
    local later = due ~= '0' and tonumber(due) > now
    if later then nlater = nlater + 1 else nready = nready + 1 end
    claims[#claims + 1] = {id = id, body = ARGV[b + 1], due = due, later = later,
                           ukey = ukey, uttl = uttl}
  end
end
if #claims == 0 then return out end

if queue then
  local r
  if nlater > 0 then
    r = redis.pcall('ZCARD', KEYS[2])
    if type(r) == 'table' then return refuse(r, KEYS[2]) end
  end
  if nready > 0 then
    r = redis.pcall('XLEN', KEYS[1])
    if type(r) == 'table' then return refuse(r, KEYS[1]) end
  end
end

local ids = {}
for i, c in ipairs(claims) do ids[i] = c.id end
local r = redis.pcall('SADD', KEYS[3], unpack(ids))
if type(r) == 'table' then return refuse(r, KEYS[3]) end
for _, c in ipairs(claims) do
  if c.ukey then
    redis.call('SET', c.ukey, c.id, 'PX', c.uttl == '0' and ARGV[3] or c.uttl)
  end
  if queue then
    if c.later then
      redis.call('ZADD', KEYS[2], c.due, c.id .. c.body)
    else
      redis.call('XADD', KEYS[1], '*', 'i', c.id, 'm', c.body)
    end
  end
end
if ARGV[1] == '2' then redis.call('SET', KEYS[#KEYS - 1], '1') end
return out
