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
-- takeover of a lease bumps it, in the same script -- and the fence is read
-- and checked first: a takeover whose INCR then failed (the fence of the
-- wrong type, or not a number) would have let the old holder's fins through
-- (issue 14).  A fence is a count: "0", or digits without a leading 0, fewer
-- than 19 (INCR cannot overflow it).
local fence = redis.pcall('GET', KEYS[2])
if type(fence) == 'table' then
  return redis.error_reply(fence.err .. ' (' .. KEYS[2] .. '; reclaim.lua changed nothing)')
end
fence = fence or '0'
if not (fence == '0' or (#fence <= 18 and string.match(fence, '^[1-9]%d*$'))) then
  return redis.error_reply('ERR ' .. KEYS[2] .. ' is "' .. string.sub(fence, 1, 40) ..
                           '", not a count of reclaims (reclaim.lua changed nothing)')
end
local r = redis.pcall('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
if r.err then
  return redis.error_reply(r.err .. ' (' .. KEYS[1] .. '; reclaim.lua changed nothing)')
end
if #r[2] > 0 then return {r[1], r[2], redis.call('INCR', KEYS[2])} end
return {r[1], r[2], tonumber(fence)}
