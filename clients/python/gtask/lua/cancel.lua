-- cancel.lua: cancel a task (issue 18): its final state CANCELLED, and its
-- message out of the queue or the schedule unless a worker holds it.
-- KEYS[1] stream  KEYS[2] sched  KEYS[3] pending set  KEYS[4] state hash t:<id>
-- KEYS[5] notify list n:<id>  KEYS[6] the queue's stats hash (optional: a
-- caller that passes it has the cancel counted in its field `cancelled`)
-- ARGV[1] group  ARGV[2] task id  ARGV[3] the result record (status CANCELLED)
-- ARGV[4] state ttl ms  ARGV[5] the stream entry id the caller found for the
-- task, or ""  ARGV[6] the schedule member it found (id followed by the
-- message), or ""  ARGV[7] "1": record it even where the message was not
-- found (the caller's last try)
-- Returns 0 final already (nothing changed), -1 unknown (no state: never
-- sent, or expired), 1 cancelled and its message removed, 2 cancelled while
-- a worker holds it (its message stays until that worker's finish.lua, which
-- finds the task final), 3 the message is not where the caller found it (it
-- moved: nothing changed; find it again).
-- Every read comes before the first write, and no write can fail after it
-- (a key of the wrong type fails a read), so it changes all or nothing.
local group, id = ARGV[1], ARGV[2]
if redis.call('EXISTS', KEYS[5]) == 1 then return 0 end
local queued = redis.call('SISMEMBER', KEYS[3], id) == 1
if not queued and redis.call('EXISTS', KEYS[4]) == 0 then return -1 end
local remove -- 'sched', 'stream' or nil (held by a worker, or not found)
local held = false
if ARGV[6] ~= '' and redis.call('ZSCORE', KEYS[2], ARGV[6]) then
  remove = 'sched'
elseif ARGV[5] ~= '' then
  local e = redis.call('XRANGE', KEYS[1], ARGV[5], ARGV[5])
  local fields = e[1] and e[1][2] or {}
  local mine = false
  for k = 1, #fields, 2 do
    if fields[k] == 'i' and fields[k + 1] == id then mine = true end
  end
  if mine then
    -- (No group yet: no worker ever read the stream, so nobody holds it.)
    local p = redis.pcall('XPENDING', KEYS[1], group, ARGV[5], ARGV[5], 1)
    if p.err and not string.find(p.err, 'NOGROUP', 1, true) then return p end
    held = not p.err and #p == 1
    if not held then remove = 'stream' end
  end
end
if not remove and not held and ARGV[7] ~= '1' then return 3 end
-- The writes.  The count first: it is the one write that can fail (a stats
-- key or field of the wrong kind), and then nothing is written.
if KEYS[6] then redis.call('HINCRBY', KEYS[6], 'cancelled', 1) end
redis.call('RPUSH', KEYS[5], ARGV[3])
redis.call('PEXPIRE', KEYS[5], ARGV[4])
redis.call('DEL', KEYS[4])
if queued then redis.call('SREM', KEYS[3], id) end
if remove == 'sched' then
  redis.call('ZREM', KEYS[2], ARGV[6])
elseif remove == 'stream' then
  redis.call('XDEL', KEYS[1], ARGV[5])
end
if remove then return 1 end
return 2
