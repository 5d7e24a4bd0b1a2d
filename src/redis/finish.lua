-- finish.lua: end deliveries held by a consumer (ack), atomically with their
-- follow-up (retry, requeue, dead) and, when ARGV[3] == "1", their state.
-- KEYS[1] stream  KEYS[2] sched  KEYS[3] dead  KEYS[4] stats (finished counters)
-- KEYS[5] pending set  KEYS[6] fence (see reclaim.lua), then (used only when
-- state is recorded) per general fin its state hash and notify list, then per
-- short fin its notify list, then, optionally, the failed set (a zset: kept
-- until ms -> task id and message), when a fin keeps a failed task (ARGV then
-- ends with the time now, ms)
-- ARGV[1] group  ARGV[2] consumer  ARGV[3] "1" record state  ARGV[4] state ttl ms
-- ARGV[5], ARGV[6] the lowest and the highest entry id of the batch
-- ARGV[7] g, the number of general fins  ARGV[8] the fence every lease of the
-- batch began under, or "" (unknown, or not all the same), then
-- ARGV[9+8(i-1)..] per general fin: entry id, kind (1 done 2 retry 3 requeue
--                  4 dead), status, result ("" none), next body ("" none),
--                  next due ms (a done fin with status FAILURE and a next
--                  body: kept in the failed set until then), task id, fresh
--                  ("1": no state hash can exist
--                  -- a first delivery without a STARTED mark -- so a final
--                  state needs no DEL and a requeue (hand-back) records no
--                  state: the task stays in the pending set, which says
--                  PENDING)
-- then per short fin (only when state is recorded): entry id, task id, result
--                  -- a fresh done fin with status SUCCESS, the common case,
--                  in three arguments and one key instead of eight and two
-- Returns one integer per fin, general fins first: 1 done, 0 fenced (lease not
-- held by consumer), 2 lease released but the task was already final (nothing
-- else changed), 3 done already by this very fin: the task's final record is
-- the one this fin carries (a finish run again after its reply was lost --
-- GTASK_EINDOUBT -- found its own earlier run's work; with state, final fins
-- only; nothing changed).
-- Each applied done or dead fin with a final status counts once in the stats
-- hash (fields succeeded, failed).
--
-- A final state is its notify list: one element, the result record (which
-- carries status and attempts).  The state hash holds only the states before
-- it (STARTED, RETRY, PENDING after a requeue) and is deleted when the task
-- becomes final.  So a done task costs RPUSH and PEXPIRE here (and DEL when it
-- may have a hash), not a read, two hash writes and two expiries.
--
-- All or nothing (issue 14).  Redis does not undo the writes of a script that
-- fails half-way, and a write here fails on a key of the wrong type, or on a
-- counter HINCRBY cannot add to.  So, in this order:
--  1. the lease check reads the stream (XPENDING) or, for a trusted batch, the
--     fence (GET): each fails before anything is written;
--  2. each fin is decided (fenced, final already, or applied); a final fin's
--     RPUSH is its check for a final state and for its notify list's type,
--     and its PEXPIRE follows.  These are the only writes before step 4, and
--     are undone exactly if the call fails: each list created here is
--     deleted again (one found final got its element popped straight back);
--  3. every key written after the first write of step 4 is checked, with a
--     read that fails on a key of the wrong type: the pending set (SCARD)
--     when a counter comes first, the stream (XLEN) for a trusted batch (step
--     1 did not read it), the schedule (ZCARD), the dead set and the state
--     hashes to write (HLEN), and the second counter when both change (HGET:
--     an integer HINCRBY takes, of at most 18 digits);
--  4. the first counter's HINCRBY, else the pending set's SREM, checks its own
--     key: the first write that cannot be undone;
--  5. then the rest, which cannot fail.
-- A failure in steps 2 to 4 undoes step 2 and returns an error naming the
-- key.  A batch of short fins pays one check (about 4k instructions of Redis)
-- and, trusted, two; g is compared as a string when 0 (tonumber costs about
-- 2k: glibc's strtod).

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
local g = ARGV[7] == '0' and 0 or tonumber(ARGV[7])
-- A caller that keeps failed tasks appends the failed set to KEYS and the
-- time now (ms) to ARGV: one argument past the fins' multiples of 3.
local keeps = (#ARGV - 8 - 8 * g) % 3 == 1
local n = g + (#ARGV - 8 - 8 * g - (keeps and 1 or 0)) / 3 -- every fin, general and short
local out, ids, acked, ended = {}, {}, {}, {}
local succeeded, failed = 0, 0
local fkey = keeps and KEYS[#KEYS] or nil

-- An error reply for a command on key that failed (r: its redis.pcall reply).
local function refuse(r, key)
  return redis.error_reply(r.err .. ' (' .. key .. '; finish.lua changed nothing)')
end

-- 1. Which entries does the consumer still hold?  One XPENDING over the
-- batch's id range (the caller computes it), filtered by consumer (not one per
-- entry).  The range may hold other leases of the consumer too; if the reply
-- is cut at its count, the entries not in it are checked one by one.
--
-- A batch of short fins whose leases all began under the queue's current
-- fence skips it (about 0.7 us of Redis time per task): no reclaim has taken
-- a lease since, so each entry is held by the consumer or was already ended
-- by it -- a finish run again after a lost reply -- and a short fin of an
-- ended entry finds its task final (the RPUSH check) and changes nothing.
local held, complete, trusted = {}, true, false
if g == 0 and ARGV[8] ~= '' then
  local f = redis.pcall('GET', KEYS[6])
  if type(f) == 'table' then return refuse(f, KEYS[6]) end
  trusted = (f or '0') == ARGV[8]
end
if n > 0 and not trusted then
  local count = 4 * n + 256
  local p = redis.pcall('XPENDING', KEYS[1], group, ARGV[5], ARGV[6], count, consumer)
  if p.err then return refuse(p, KEYS[1]) end
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

-- Whether the final record of a task (its notify list's element) is rec: a
-- fin not held, or found final, that this fin itself ended in an earlier run
-- whose reply was lost.  Read only off the common path (a key of the wrong
-- type: not ours).
local function mine(nkey, rec)
  return redis.pcall('LINDEX', nkey, 0) == rec
end

-- Deletes the notify lists step 2 created (applied fins with a final status).
local function undo()
  for i = 1, n do
    if out[i] == 1 and with_state then
      if i > g then
        redis.call('DEL', KEYS[7 + g + i - 1])
      else
        local status = ARGV[8 + 8 * (i - 1) + 3]
        if status == 'SUCCESS' or status == 'FAILURE' then redis.call('DEL', KEYS[8 + 2 * (i - 1)]) end
      end
    end
  end
end

-- 2. Decide each fin: out[i] = 0 fenced, 2 final already, 1 applied.  Already
-- final?  A final fin asks RPUSH itself (the list's new length; an element
-- pushed onto a final task's list is popped straight back), any other fin
-- asks EXISTS.  An applied fin's new list gets its TTL here (DEL undoes both);
-- its other writes wait for step 5.  A task whose state is written leaves the
-- pending set in step 4 (it may have a STARTED hash already: a state hash,
-- and a notify list above it, outrank the set when read).
local sched, dead, hashes, kept = false, false, nil, false -- what the applied fins write
for i = 1, g do
  -- ARGV from b + 1: entry id, kind, status, result, next body, next due ms,
  -- task id, fresh; KEYS: state hash, notify list (with state)
  local b = 8 + 8 * (i - 1)
  local eid, kind, status = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local to_final = status == 'SUCCESS' or status == 'FAILURE'
  if not holds(eid) then
    out[i] = (with_state and to_final and mine(KEYS[8 + 2 * (i - 1)], ARGV[b + 4])) and 3 or 0
  else
    acked[#acked + 1] = eid
    ended[eid] = true
    local final = false
    local nkey = KEYS[8 + 2 * (i - 1)]
    if with_state and to_final then
      local len = redis.pcall('RPUSH', nkey, ARGV[b + 4])
      if type(len) == 'table' then
        undo()
        return refuse(len, nkey)
      end
      final = len > 1
      if final then
        redis.call('RPOP', nkey)
        if mine(nkey, ARGV[b + 4]) then final = 3 end
      else
        redis.call('PEXPIRE', nkey, ttl)
      end
    elseif with_state then
      final = redis.call('EXISTS', nkey) == 1
    end
    if final then
      out[i] = final == 3 and 3 or 2
    else
      out[i] = 1
      if kind == '2' then sched = true end
      if kind == '4' then dead = true end
      if kind == '1' and fkey and status == 'FAILURE' and ARGV[b + 5] ~= '' then kept = true end
      if with_state and not (kind == '3' and ARGV[b + 8] == '1') then -- (a fresh requeue: none)
        ids[#ids + 1] = ARGV[b + 7]
        if not to_final then
          hashes = hashes or {}
          hashes[#hashes + 1] = KEYS[7 + 2 * (i - 1)]
        end
      end
      if kind == '1' or kind == '4' then
        if status == 'SUCCESS' then
          succeeded = succeeded + 1
        elseif status == 'FAILURE' then
          failed = failed + 1
        end
      end
    end
  end
end
for i = g + 1, n do
  local b = 8 + 8 * g + 3 * (i - g - 1)
  local eid = ARGV[b + 1]
  if not holds(eid) then
    out[i] = mine(KEYS[7 + g + i - 1], ARGV[b + 3]) and 3 or 0
  else
    acked[#acked + 1] = eid
    ended[eid] = true
    local nkey = KEYS[7 + g + i - 1]
    local len = redis.pcall('RPUSH', nkey, ARGV[b + 3])
    if type(len) == 'table' then
      undo()
      return refuse(len, nkey)
    end
    if len > 1 then
      redis.call('RPOP', nkey)
      out[i] = mine(nkey, ARGV[b + 3]) and 3 or 2
    else
      redis.call('PEXPIRE', nkey, ttl)
      out[i] = 1
      ids[#ids + 1] = ARGV[b + 2]
      succeeded = succeeded + 1
    end
  end
end

-- 3. Check the keys written after the first write that cannot be undone.
-- That first write checks its own key (step 4): the counters' HINCRBY, else
-- the pending set's SREM.  A check is a read that fails on a key of the
-- wrong type (about 4k instructions each: one per batch).
local function check(cmd, key)
  local r = redis.pcall(cmd, key)
  if type(r) == 'table' and r.err then
    undo()
    return refuse(r, key)
  end
end
local err
if succeeded > 0 and failed > 0 then
  -- The second counter: HINCRBY takes a decimal integer as Redis writes one
  -- ("0", else no sign "+" and no leading 0); below 10^18 no increment here
  -- can overflow it (no queue finishes 10^18 tasks).
  local v = redis.pcall('HGET', KEYS[4], 'failed')
  if type(v) == 'table' then
    undo()
    return refuse(v, KEYS[4])
  end
  local digits = v and v ~= '0' and string.match(v, '^%-?([1-9]%d*)$')
  if v and v ~= '0' and not (digits and #digits <= 18) then
    undo()
    return redis.error_reply('ERR ' .. KEYS[4] .. ' field failed is "' .. string.sub(v, 1, 40) ..
                             '", not a counter (finish.lua changed nothing)')
  end
end
if #ids > 0 and (succeeded > 0 or failed > 0) then err = check('SCARD', KEYS[5]) end
if not err and trusted and #acked > 0 then err = check('XLEN', KEYS[1]) end
if not err and sched then err = check('ZCARD', KEYS[2]) end
if not err and dead then err = check('HLEN', KEYS[3]) end
if not err and kept then err = check('ZCARD', fkey) end
for k = 1, hashes and #hashes or 0 do
  if not err then err = check('HLEN', hashes[k]) end
end
if err then return err end

-- 4. The counters (each applied done or dead fin with a final status counts
-- once), then the pending set: a task whose state is written leaves it (it
-- may have a STARTED hash already: a state hash, and a notify list above it,
-- outrank the set when read).  The first of these writes is checked by its
-- own failure.
local first = succeeded > 0 and 'succeeded' or failed > 0 and 'failed' or nil
if first then
  local r = redis.pcall('HINCRBY', KEYS[4], first, first == 'succeeded' and succeeded or failed)
  if type(r) == 'table' then
    undo()
    return refuse(r, KEYS[4])
  end
  if first == 'succeeded' and failed > 0 then redis.call('HINCRBY', KEYS[4], 'failed', failed) end
end
if #ids > 0 then
  if first then
    redis.call('SREM', KEYS[5], unpack(ids))
  else
    local r = redis.pcall('SREM', KEYS[5], unpack(ids))
    if type(r) == 'table' then
      undo()
      return refuse(r, KEYS[5])
    end
  end
end

-- 5. The rest of the general fins applied: follow-ups and states.
for i = 1, g do
  if out[i] == 1 then
    local b = 8 + 8 * (i - 1)
    local kind, status, fresh = ARGV[b + 2], ARGV[b + 3], ARGV[b + 8] == '1'
    if kind ~= '1' then
      local id, nextb = ARGV[b + 7], ARGV[b + 5]
      if kind == '2' then
        redis.call('ZADD', KEYS[2], ARGV[b + 6], id .. nextb)
      elseif kind == '3' then
        redis.call('XADD', KEYS[1], '*', 'i', id, 'm', nextb)
      elseif kind == '4' then
        redis.call('HSET', KEYS[3], id, nextb)
      end
    elseif fkey and status == 'FAILURE' and ARGV[b + 5] ~= '' then
      redis.call('ZADD', fkey, ARGV[b + 6], ARGV[b + 7] .. ARGV[b + 5])
    end
    if with_state and not (fresh and kind == '3') then
      local tkey = KEYS[7 + 2 * (i - 1)]
      if status == 'SUCCESS' or status == 'FAILURE' then
        if not fresh then redis.call('DEL', tkey) end
      else
        local result = ARGV[b + 4]
        if result ~= '' then
          redis.call('HSET', tkey, 's', status, 'r', result)
        else
          redis.call('HSET', tkey, 's', status)
        end
        redis.call('PEXPIRE', tkey, ttl)
      end
    end
  end
end
-- The failed set keeps what is not past its time, and at most 10000 tasks
-- (the oldest go first): one trim per batch that added to it.
if kept then
  redis.call('ZREMRANGEBYSCORE', fkey, '-inf', '(' .. ARGV[#ARGV])
  local over = redis.call('ZCARD', fkey) - 10000
  if over > 0 then redis.call('ZREMRANGEBYRANK', fkey, 0, over - 1) end
end
-- Release the leases, then drop the entries.  A few are XDELeted by id.  For
-- a batch: every entry below the oldest lease still held in the group was
-- delivered (XREADGROUP hands entries out in id order) and is no longer
-- leased, so it is finished, and one XTRIM MINID drops them all, a whole
-- stream node at a time, where XDEL seeks each id (about 1 us of Redis time per
-- task).  With no lease left, everything up to the batch's highest id is
-- finished.  Entries of the batch at or above the oldest lease (another
-- worker's, older than them) are XDELeted.  A trusted batch's stream may have
-- been deleted by hand, and its group with it: then XACK and XDEL find
-- nothing, and there is no oldest lease to ask for (NOGROUP).
if #acked > 0 then
  redis.call('XACK', KEYS[1], group, unpack(acked))
  local summary = #acked >= 8 and redis.pcall('XPENDING', KEYS[1], group)
  if not summary or summary.err then
    redis.call('XDEL', KEYS[1], unpack(acked))
  else
    local oldest = summary[2]
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
return out
