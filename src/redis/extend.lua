-- extend.lua: heartbeat.  Renews the leases (PEL idle time) of entries still
-- held by the consumer; never takes an entry from another consumer.
-- KEYS[1] stream  ARGV[1] group  ARGV[2] consumer  ARGV[3..] entry ids
-- Returns one integer per entry: 1 renewed, 0 lost.
-- Every lease is read before any is renewed, so that a failure (the stream
-- of the wrong type, an entry id that is none) changes nothing (issue 14).
local out = {}
for i = 3, #ARGV do
  local eid = ARGV[i]
  local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], eid, eid, 1)
  if p.err then
    return redis.error_reply(p.err .. ' (' .. KEYS[1] .. '; extend.lua changed nothing)')
  end
  out[#out + 1] = #p == 1 and p[1][2] == ARGV[2] and 1 or 0
end
for i = 3, #ARGV do
  -- JUSTID: reset the idle time without counting a delivery.
  if out[i - 2] == 1 then redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID') end
end
return out
