-- limit_slots.lua: concurrency slots of a queue's limits -- release, extend,
-- sweep (issue 19).
-- KEYS[1] stream, then per target: cc:<t> (zset: holder -> lease expiry ms),
--   lw:<t> (list of waiting tasks: id (36 bytes) .. message); then
--   (optional) the level 1 and 2 streams: a waiting task of priority level L
--   (its message's "pr") goes back to the stream of its level

-- ARGV[1] op: "release" (a holder's task ended), "extend" (heartbeat),
--   "sweep" (housekeeping)  ARGV[2] now (unix ms)  ARGV[3] slot lease ms
-- ARGV[4..] per target: its concurrency K, then (release, extend) the
--   holder (the delivery's entry id)
-- release: ZREM the holder; then, like sweep, wakes waiting tasks.
-- extend: the holder's expiry becomes now + lease (if it still holds one:
--   XX), so a slot outlives its lease only while its worker heartbeats.
-- sweep: drops slots past their expiry (their workers died: the slot comes
--   back within a lease time), then moves as many waiting tasks as there are
--   free slots back to the stream, oldest first.
-- Returns the number of tasks moved back to the stream.
-- @include level
local op, now, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local per = (op == 'sweep') and 1 or 2
local streams = {KEYS[1]}
if #KEYS == 1 + 2 * ((#ARGV - 3) / per) + 2 then streams = {KEYS[1], KEYS[#KEYS - 1], KEYS[#KEYS]} end
local moved = 0
local t = 0
for b = 4, #ARGV, per do
  t = t + 1
  local cc, lw, k = KEYS[2 * t], KEYS[2 * t + 1], tonumber(ARGV[b])
  if op == 'extend' then
    redis.call('ZADD', cc, 'XX', now + lease, ARGV[b + 1])
  else
    if op == 'release' then redis.call('ZREM', cc, ARGV[b + 1]) end
    redis.call('ZREMRANGEBYSCORE', cc, '-inf', now)
    local free = k - redis.call('ZCARD', cc)
    while free > 0 do
      local w = redis.call('LPOP', lw)
      if not w then break end
      local key = streams[1]
      if #streams == 3 then key = streams[level_of(w, 37) + 1] end
      redis.call('XADD', key, '*', 'i', string.sub(w, 1, 36), 'm', string.sub(w, 37))
      free = free - 1
      moved = moved + 1
    end
  end
end
return moved
