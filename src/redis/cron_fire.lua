-- cron_fire.lua: enqueue one tick of a periodic task, exactly once (issue 19).
-- KEYS[1] the entry's fire state P:{q}:cron:<name> (hash: last, id, at)
-- KEYS[2] stream  KEYS[3] pending set (used when ARGV[3] == "1")
-- KEYS[4] sched (used when the task is due later, ARGV[7])
-- KEYS[5] the task's unique key u:<digest> (when ARGV[8] ~= ""), and, when
--         the caller read a holder of an until-done key (ARGV[9] ~= ""),
--         KEYS[6] t:<holder>, KEYS[7] n:<holder>
-- ARGV[1] the tick (unix ms)  ARGV[2] "1": queue the task; "0": only mark the
--         tick done (a missed tick that the entry's policy skips)
-- ARGV[3] "1" to record PENDING, "0" not  ARGV[4] now (unix ms)
-- ARGV[5] the task id (derived from the entry's name and the tick, so every
--         scheduler computes the same one)  ARGV[6] the task message
-- ARGV[7] when it is due (unix ms; "0": now, into the stream; later: into
--         the schedule, as a delayed send)
-- ARGV[8] the unique key's TTL: "" none, "0" held until the task is final,
--         else ms (as claim.lua)  ARGV[9] the holder of an until-done key as
--         the caller read it with GET ("" none)  ARGV[10] state TTL ms (an
--         until-done key's lifetime)
-- Returns {1, tick} when this call queued (or skipped) the tick, {2, tick}
-- when it marked the tick done without queueing because another task holds
-- the unique key (counted in `skipped`), {0, last} when the entry's last tick
-- is this one or later already (another scheduler, or an earlier run of this
-- one, got there first): then nothing changed; {-1, 0} when the key's holder
-- is not the one the caller read (nothing changed: read it again, retry).
--
-- Why this is exactly once: the check and the writes are one script, so of
-- any number of schedulers calling it for the same tick, one queues the task
-- and the others see `last` >= tick.  A scheduler killed anywhere either ran
-- the script (the tick is done, durably as Redis is) or did not (the tick is
-- still due, and any scheduler fires it).
--
-- The unique key is claim.lua's: held for its TTL, or, until done, while its
-- holder is in the pending set or has a t: hash and no n: list.
--
-- All or nothing: HGET checks the state key's type first, GET the unique
-- key's and SISMEMBER the pending set's; the pending set's SADD checks its
-- own, and is undone if the XADD or ZADD after it fails; the HSET and the SET
-- cannot fail then (their keys were read as a hash and a string, or are
-- absent), and a skip's HINCRBY, which fails on a field that is not an
-- integer, comes first.
local tick = ARGV[1]
local last = redis.call('HGET', KEYS[1], 'last')
if last and tonumber(last) >= tonumber(tick) then return {0, tonumber(last)} end
local now = ARGV[4]
local function refuse(r, key)
  return redis.error_reply(r.err .. ' (' .. key .. '; cron_fire.lua changed nothing)')
end
local function skip()
  redis.call('HINCRBY', KEYS[1], 'skipped', 1)
  redis.call('HSET', KEYS[1], 'last', tick)
end
if ARGV[2] ~= '1' then
  skip()
  return {1, tonumber(tick)}
end
local uttl = ARGV[8]
if uttl ~= '' then
  local cur = redis.pcall('GET', KEYS[5])
  if type(cur) == 'table' then return refuse(cur, KEYS[5]) end
  if cur == false then cur = '' end
  local held = false
  if uttl ~= '0' then
    held = cur ~= '' -- a TTL key is held until it expires
  elseif cur ~= ARGV[9] then
    return {-1, 0}
  elseif cur ~= '' and redis.call('EXISTS', KEYS[7]) == 0 then
    local live = redis.pcall('SISMEMBER', KEYS[3], cur)
    if type(live) == 'table' then return refuse(live, KEYS[3]) end
    held = live == 1 or redis.call('EXISTS', KEYS[6]) == 1
  end
  if held then
    skip()
    return {2, tonumber(tick)}
  end
end
local later = ARGV[7] ~= '0' and tonumber(ARGV[7]) > tonumber(now)
local added = 0
if ARGV[3] == '1' then
  added = redis.pcall('SADD', KEYS[3], ARGV[5])
  if type(added) == 'table' then return refuse(added, KEYS[3]) end
end
local r, key
if later then
  r, key = redis.pcall('ZADD', KEYS[4], ARGV[7], ARGV[5] .. ARGV[6]), KEYS[4]
else
  r, key = redis.pcall('XADD', KEYS[2], '*', 'i', ARGV[5], 'm', ARGV[6]), KEYS[2]
end
if type(r) == 'table' then
  if added == 1 then redis.call('SREM', KEYS[3], ARGV[5]) end
  return refuse(r, key)
end
if uttl ~= '' then
  redis.call('SET', KEYS[5], ARGV[5], 'PX', uttl == '0' and ARGV[10] or uttl)
end
redis.call('HSET', KEYS[1], 'last', tick, 'id', ARGV[5], 'at', now)
return {1, tonumber(tick)}
