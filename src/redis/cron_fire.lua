-- cron_fire.lua: enqueue one tick of a periodic task, exactly once (issue 19).
-- KEYS[1] the entry's fire state P:{q}:cron:<name> (hash: last, id, at)
-- KEYS[2] stream  KEYS[3] pending set (used when ARGV[3] == "1")
-- ARGV[1] the tick (unix ms)  ARGV[2] "1": queue the task; "0": only mark the
--         tick done (a missed tick that the entry's policy skips)
-- ARGV[3] "1" to record PENDING, "0" not  ARGV[4] now (unix ms)
-- ARGV[5] the task id (derived from the entry's name and the tick, so every
--         scheduler computes the same one)  ARGV[6] the task message
-- Returns {1, tick} when this call did it, {0, last} when the entry's last
-- tick is this one or later already (another scheduler, or an earlier run of
-- this one, got there first): then nothing changed.
--
-- Why this is exactly once: the check and the writes are one script, so of
-- any number of schedulers calling it for the same tick, one queues the task
-- and the others see `last` >= tick.  A scheduler killed anywhere either ran
-- the script (the tick is done, durably as Redis is) or did not (the tick is
-- still due, and any scheduler fires it).
--
-- All or nothing: HGET checks the state key's type first; the pending set's
-- SADD checks its own, and is undone if the XADD after it fails; the HSET
-- cannot fail then (its key was read as a hash or is absent), and a skip's
-- HINCRBY, which fails on a field that is not an integer, comes first.
local tick = ARGV[1]
local last = redis.call('HGET', KEYS[1], 'last')
if last and tonumber(last) >= tonumber(tick) then return {0, tonumber(last)} end
local now = ARGV[4]
if ARGV[2] == '1' then
  local added = 0
  if ARGV[3] == '1' then
    added = redis.pcall('SADD', KEYS[3], ARGV[5])
    if type(added) == 'table' then
      return redis.error_reply(added.err .. ' (' .. KEYS[3] .. '; cron_fire.lua changed nothing)')
    end
  end
  local r = redis.pcall('XADD', KEYS[2], '*', 'i', ARGV[5], 'm', ARGV[6])
  if type(r) == 'table' then
    if added == 1 then redis.call('SREM', KEYS[3], ARGV[5]) end
    return redis.error_reply(r.err .. ' (' .. KEYS[2] .. '; cron_fire.lua changed nothing)')
  end
  redis.call('HSET', KEYS[1], 'last', tick, 'id', ARGV[5], 'at', now)
else
  redis.call('HINCRBY', KEYS[1], 'skipped', 1)
  redis.call('HSET', KEYS[1], 'last', tick)
end
return {1, tonumber(tick)}
