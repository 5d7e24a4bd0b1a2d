-- reclaim.lua: take over deliveries whose lease expired, and count the
-- takeover in the queue's fence.
-- KEYS[1] stream  KEYS[2] fence
-- ARGV[1] group  ARGV[2] consumer  ARGV[3] min idle ms  ARGV[4] cursor
-- ARGV[5] count
-- Returns {next cursor, entries claimed (as XAUTOCLAIM), fence after}.
--
-- The fence is the number of reclaims that took at least one lease in the
-- queue.  A worker reads it before each lease; while it is unchanged, no lease
-- taken since can have been taken away, and finish.lua may skip its lease
-- check for fins that cannot overwrite anything (see there).  So every
-- takeover of a lease bumps it, in the same script.
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
                     'COUNT', ARGV[5])
local fence
if #r[2] > 0 then
  fence = redis.call('INCR', KEYS[2])
else
  fence = tonumber(redis.call('GET', KEYS[2]) or '0')
end
return {r[1], r[2], fence}
