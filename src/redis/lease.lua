-- lease.lua: one lease from a queue that uses priority levels (its marker
-- P:{q}:prio is set): up to max new entries, from the highest level first.
-- KEYS[1] P:{q}:stream:2  KEYS[2] P:{q}:stream:1  KEYS[3] P:{q}:stream (level 0)
-- KEYS[4] the queue's fence
-- ARGV[1] group  ARGV[2] consumer  ARGV[3] max (>= 1)
-- Returns {fence, level, entries, level, entries, ...}: the fence as read
-- before the reads (as read_group's GET; nil: none yet), then per level that
-- gave any, from 2 down, its entries as XREADGROUP gives them ([id, [field,
-- value, ...]]).  Each entry is leased in its stream's PEL, as by a plain
-- XREADGROUP, in the same script: nothing is fetched without being leased.
--
-- XREADGROUP without BLOCK runs in a script (Redis 7: a blocking command
-- never blocks there).  A level's group is created when missing (NOGROUP),
-- with MKSTREAM: the group's start is "0", so nothing queued before is
-- skipped.  One round trip for the whole lease, however many levels it takes
-- from; a queue without the marker is leased with a plain XREADGROUP.
local fence = redis.call('GET', KEYS[4])
local out = {fence}
local left = tonumber(ARGV[3])
for i = 1, 3 do
  if left <= 0 then break end
  local r = redis.pcall('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', left, 'STREAMS',
                        KEYS[i], '>')
  if type(r) == 'table' and r.err then
    if not string.find(r.err, 'NOGROUP', 1, true) then
      return redis.error_reply(r.err .. ' (' .. KEYS[i] .. '; lease.lua)')
    end
    redis.call('XGROUP', 'CREATE', KEYS[i], ARGV[1], '0', 'MKSTREAM')
    r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', left, 'STREAMS', KEYS[i], '>')
  end
  if r and r[1] and #r[1][2] > 0 then
    out[#out + 1] = 3 - i
    out[#out + 1] = r[1][2]
    left = left - #r[1][2]
  end
end
return out
