-- extend.lua: heartbeat.  Renews the leases (PEL idle time) of entries still
-- held by the consumer; never takes an entry from another consumer.
-- KEYS[1] stream  ARGV[1] group  ARGV[2] consumer  ARGV[3..] entry ids
-- Returns one integer per entry: 1 renewed, 0 lost.
local out = {}
for i = 3, #ARGV do
  local eid = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], eid, eid, 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    -- JUSTID: reset the idle time without counting a delivery.
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, eid, 'JUSTID')
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
