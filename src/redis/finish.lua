-- finish.lua: end deliveries held by a consumer (ack), atomically with their
-- follow-up (retry, requeue, dead) and, when ARGV[3] == "1", their state.
-- KEYS[1] stream  KEYS[2] sched  KEYS[3] dead  KEYS[4] stats (finished counters)
-- KEYS[5] pending set  KEYS[6] fence (see reclaim.lua), then (used only when
-- state is recorded) per general fin its state hash and notify list, then per
-- short fin its notify list
-- ARGV[1] group  ARGV[2] consumer  ARGV[3] "1" record state  ARGV[4] state ttl ms
-- ARGV[5], ARGV[6] the lowest and the highest entry id of the batch
-- ARGV[7] g, the number of general fins  ARGV[8] the fence every lease of the
-- batch began under, or "" (unknown, or not all the same), then
-- ARGV[9+8(i-1)..] per general fin: entry id, kind (1 done 2 retry 3 requeue
--                  4 dead), status, result ("" none), next body ("" none),
--                  next due ms, task id, fresh ("1": no state hash can exist
--                  -- a first delivery without a STARTED mark -- so a final
--                  state needs no DEL and a requeue (hand-back) records no
--                  state: the task stays in the pending set, which says
--                  PENDING)
-- then per short fin (only when state is recorded): entry id, task id, result
--                  -- a fresh done fin with status SUCCESS, the common case,
--                  in three arguments and one key instead of eight and two
-- Returns one integer per fin, general fins first: 1 done, 0 fenced (lease not
-- held by consumer), 2 lease released but the task was already final (nothing
-- else changed).
-- Each applied done or dead fin with a final status counts once in the stats
-- hash (fields succeeded, failed).
--
-- A final state is its notify list: one element, the result record (which
-- carries status and attempts).  The state hash holds only the states before
-- it (STARTED, RETRY, PENDING after a requeue) and is deleted when the task
-- becomes final.  So a done task costs RPUSH and PEXPIRE here (and DEL when it
-- may have a hash), not a read, two hash writes and two expiries.

-- Stream entry ids "ms-seq" in order.
local function id_less(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, bm = tonumber(am), tonumber(bm)
  if am ~= bm then return am < bm end
  return tonumber(as) < tonumber(bs)
end

local group, consumer = ARGV[1], ARGV[2]
local with_state = ARGV[3] == '1'
local ttl = ARGV[4] -- a string: PEXPIRE parses it (no float formatting)
local g = tonumber(ARGV[7])
local n = g + (#ARGV - 8 - 8 * g) / 3 -- every fin, general and short
local out, ids, acked, ended = {}, {}, {}, {}
local succeeded, failed = 0, 0

-- Which entries does the consumer still hold?  One XPENDING over the batch's
-- id range (the caller computes it), filtered by consumer (not one per entry).
-- The range may hold other leases of the consumer too; if the reply is cut at
-- its count, the entries not in it are checked one by one.
--
-- A batch of short fins whose leases all began under the queue's current
-- fence skips it (about 0.7 us of Redis time per task): no reclaim has taken
-- a lease since, so each entry is held by the consumer or was already ended
-- by it -- a finish run again after a lost reply -- and a short fin of an
-- ended entry finds its task final (the RPUSH check) and changes nothing.
local held, complete = {}, true
local trusted = g == 0 and ARGV[8] ~= '' and (redis.call('GET', KEYS[6]) or '0') == ARGV[8]
if n > 0 and not trusted then
  local count = 4 * n + 256
  local p = redis.call('XPENDING', KEYS[1], group, ARGV[5], ARGV[6], count, consumer)
  for _, e in ipairs(p) do held[e[1]] = true end
  complete = #p < count
end
local function holds(eid)
  if trusted then return not ended[eid] end
  if held[eid] then
    held[eid] = nil -- an entry is ended once, even if listed twice
    return true
  end
  if complete then return false end
  local p = redis.call('XPENDING', KEYS[1], group, eid, eid, 1)
  return #p == 1 and p[1][2] == consumer and not ended[eid]
end

local function fin(i, eid, kind, status, result, nextb, due, id, fresh, tkey, nkey)
  if not holds(eid) then
    out[i] = 0
    return
  end
  acked[#acked + 1] = eid
  ended[eid] = true
  local to_final = status == 'SUCCESS' or status == 'FAILURE'
  -- Already final?  A final fin asks RPUSH itself (the list's new length; an
  -- element pushed onto a final task's list is popped straight back), any
  -- other fin asks EXISTS.  Either way before anything else changes.
  if with_state then
    local final
    if to_final then
      final = redis.call('RPUSH', nkey, result) > 1
      if final then redis.call('RPOP', nkey) end
    else
      final = redis.call('EXISTS', nkey) == 1
    end
    if final then
      out[i] = 2
      return
    end
  end
  if kind == '2' then
    redis.call('ZADD', KEYS[2], due, id .. nextb)
  elseif kind == '3' then
    redis.call('XADD', KEYS[1], '*', 'i', id, 'm', nextb)
  elseif kind == '4' then
    redis.call('HSET', KEYS[3], id, nextb)
  end
  if with_state and not (fresh and kind == '3') then
    if to_final then
      redis.call('PEXPIRE', nkey, ttl)
      if not fresh then redis.call('DEL', tkey) end
    else
      if result ~= '' then
        redis.call('HSET', tkey, 's', status, 'r', result)
      else
        redis.call('HSET', tkey, 's', status)
      end
      redis.call('PEXPIRE', tkey, ttl)
    end
    ids[#ids + 1] = id
  end
  if kind == '1' or kind == '4' then
    if status == 'SUCCESS' then
      succeeded = succeeded + 1
    elseif status == 'FAILURE' then
      failed = failed + 1
    end
  end
  out[i] = 1
end

for i = 1, g do
  local b = 8 + 8 * (i - 1)
  fin(i, ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6],
      ARGV[b + 7], ARGV[b + 8] == '1', KEYS[7 + 2 * (i - 1)], KEYS[8 + 2 * (i - 1)])
end
for i = g + 1, n do
  local b = 8 + 8 * g + 3 * (i - g - 1)
  fin(i, ARGV[b + 1], '1', 'SUCCESS', ARGV[b + 3], '', '0', ARGV[b + 2], true, nil,
      KEYS[7 + 2 * g + (i - g - 1)])
end
-- Release the leases, then drop the entries.  A few are XDELeted by id.  For
-- a batch: every entry below the oldest lease still held in the group was
-- delivered (XREADGROUP hands entries out in id order) and is no longer
-- leased, so it is finished, and one XTRIM MINID drops them all, a whole
-- stream node at a time, where XDEL seeks each id (about 1 us of Redis time per
-- task).  With no lease left, everything up to the batch's highest id is
-- finished.  Entries of the batch at or above the oldest lease (another
-- worker's, older than them) are XDELeted.
if #acked > 0 then
  redis.call('XACK', KEYS[1], group, unpack(acked))
  if #acked < 8 then
    redis.call('XDEL', KEYS[1], unpack(acked))
  else
    local oldest = redis.call('XPENDING', KEYS[1], group)[2]
    if not oldest then
      redis.call('XTRIM', KEYS[1], 'MINID', ARGV[6])
      redis.call('XDEL', KEYS[1], ARGV[6])
    else
      redis.call('XTRIM', KEYS[1], 'MINID', oldest)
      if not id_less(ARGV[6], oldest) then
        local rest = acked
        if id_less(ARGV[5], oldest) then
          rest = {}
          for _, eid in ipairs(acked) do
            if not id_less(eid, oldest) then rest[#rest + 1] = eid end
          end
        end
        if #rest > 0 then redis.call('XDEL', KEYS[1], unpack(rest)) end
      end
    end
  end
end
-- A task whose state was just written leaves the pending set (it may have a
-- STARTED hash already: a state hash, and a notify list above it, outrank the
-- set when read).
if #ids > 0 then redis.call('SREM', KEYS[5], unpack(ids)) end
if succeeded > 0 then redis.call('HINCRBY', KEYS[4], 'succeeded', succeeded) end
if failed > 0 then redis.call('HINCRBY', KEYS[4], 'failed', failed) end
return out
