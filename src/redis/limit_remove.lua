-- limit_remove.lua: remove the limits of one target, losing no task waiting
-- under them (issue 19).
-- KEYS[1] the queue's limits hash  KEYS[2] stream  KEYS[3] rl:<t>
-- KEYS[4] cc:<t>  KEYS[5] lw:<t>  KEYS[6], KEYS[7] (optional) the level 1 and
-- 2 streams: a waiting task of priority level L (its message's "pr") goes
-- back to its level's stream
-- ARGV[1] the target ("q" or "t:<task name>")
-- Effect: HDEL of rate:<t> and conc:<t>; every task waiting for a slot goes
-- back to the stream (oldest first); the admissions and slots are deleted.
-- limit_admit.lua reads the hash itself, so from here on no worker defers a
-- task under this target, whatever its copy of the limits says.  Tasks over
-- the rate wait in the schedule and come back by promote.lua as usual.
-- Returns the number of fields removed (0: there was no limit; then nothing
-- else changed either).
-- @include level
redis.call('LLEN', KEYS[5])
redis.call('XLEN', KEYS[2])
local streams = {KEYS[2]}
if #KEYS >= 7 then
  redis.call('XLEN', KEYS[6])
  redis.call('XLEN', KEYS[7])
  streams = {KEYS[2], KEYS[6], KEYS[7]}
end
local n = redis.call('HDEL', KEYS[1], 'rate:' .. ARGV[1], 'conc:' .. ARGV[1])
if n == 0 then return 0 end
while true do
  local w = redis.call('LPOP', KEYS[5])
  if not w then break end
  local key = streams[1]
  if #streams == 3 then key = streams[level_of(w, 37) + 1] end
  redis.call('XADD', key, '*', 'i', string.sub(w, 1, 36), 'm', string.sub(w, 37))
end
redis.call('DEL', KEYS[3], KEYS[4])
return n
