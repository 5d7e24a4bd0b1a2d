-- limit_admit.lua: admit a leased batch under the queue's limits, or make
-- each task over a limit wait (issue 19).  Run by the worker right after a
-- lease, only for a queue that has limits.
-- KEYS[1] stream  KEYS[2] sched  KEYS[3] the queue's limits hash, then per
--   target t (a task name's limit "t:<name>", or the whole queue's "q"):
--   rl:<t> (zset: admissions, score = time), cc:<t> (zset: slots, member =
--   holder, score = lease expiry), lw:<t> (list of tasks waiting for a slot:
--   id (36 bytes) .. message)
-- ARGV[1] now (unix ms)  ARGV[2] group  ARGV[3] slot lease ms
-- ARGV[4] number of targets T, then per target its name ("q", "t:<name>");
--   then per task: entry id, task id, target a, target b (1-based indexes,
--   0: none), message
-- The limits themselves are read here, from the hash: the worker's copy only
-- says which targets may have one, so a limit removed a moment ago defers
-- nothing (limit_remove.lua has moved its waiting tasks back already).
-- Returns per task 1 (admitted: an admission recorded for each rate, a slot
-- held under the entry id for each concurrency), 2 (over a rate: moved to
-- sched, due when the window has room), 3 (no free slot: moved to the end of
-- lw:<t>, which a released or expired slot wakes); then the earliest due
-- time given to a task moved to sched (0: none).
--
-- Rate: a sliding window log.  Each admission is recorded at its time, and a
-- task is admitted only while fewer than N lie in the last window: at most N
-- admissions in any window, exactly, which a token bucket does not give (it
-- lets a full bucket burst on top of the refill: up to 2N in a window).  The
-- window is the period plus a margin (a tenth, at most 250 ms), so that the
-- moments between admission and start cannot put N + 1 starts in one
-- period.  The cost is a zset of up to N members per limit.
-- Moving a task: XACK + XDEL of its entry (it leaves the stream and this
-- worker's leases; its state stays PENDING), then ZADD or RPUSH: the entry
-- was read in this very batch, so the XACK cannot fail, and the writes to
-- sched and lw were checked by the reads before.
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[3])
local nt = tonumber(ARGV[4])
local rate, win, conc, times, used, held, deferred = {}, {}, {}, {}, {}, {}, {}
local base = 5
for t = 1, nt do
  local f = ARGV[base]
  base = base + 1
  local v = redis.call('HMGET', KEYS[3], 'rate:' .. f, 'conc:' .. f)
  rate[t], win[t], conc[t] = 0, 0, 0
  if v[1] then
    local n, p = string.match(v[1], '^(%d+) (%d+)$')
    if n and tonumber(n) > 0 and tonumber(p) > 0 then
      rate[t] = tonumber(n)
      local period = tonumber(p)
      win[t] = period + math.max(1, math.min(250, math.floor(period / 10)))
    end
  end
  if v[2] and string.match(v[2], '^%d+$') then conc[t] = tonumber(v[2]) end
  local rl, cc = KEYS[3 * t + 1], KEYS[3 * t + 2]
  if rate[t] > 0 then
    redis.call('ZREMRANGEBYSCORE', rl, '-inf', '(' .. (now - win[t]))
    times[t] = redis.call('ZRANGE', rl, 0, -1, 'WITHSCORES')
    used[t] = #times[t] / 2
  end
  if conc[t] > 0 then
    redis.call('ZREMRANGEBYSCORE', cc, '-inf', now)
    held[t] = redis.call('ZCARD', cc)
  end
  redis.call('LLEN', KEYS[3 * t + 3])
  deferred[t] = 0
end
redis.call('ZCARD', KEYS[2])

local out, first_due = {}, 0
local i = 1
while base <= #ARGV do
  local eid, id, a, b, msg = ARGV[base], ARGV[base + 1], tonumber(ARGV[base + 2]),
    tonumber(ARGV[base + 3]), ARGV[base + 4]
  base = base + 5
  local over_rate, over_conc = nil, nil
  for _, t in ipairs({a, b}) do
    if t > 0 then
      if rate[t] > 0 and used[t] >= rate[t] then over_rate = t end
      if conc[t] > 0 and held[t] >= conc[t] then over_conc = t end
    end
  end
  if not over_rate and not over_conc then
    for _, t in ipairs({a, b}) do
      if t > 0 and rate[t] > 0 then
        redis.call('ZADD', KEYS[3 * t + 1], now, eid)
        used[t] = used[t] + 1
        times[t][#times[t] + 1] = eid
        times[t][#times[t] + 1] = tostring(now)
      end
      if t > 0 and conc[t] > 0 then
        redis.call('ZADD', KEYS[3 * t + 2], now + lease, eid)
        held[t] = held[t] + 1
      end
    end
    out[i] = 1
  else
    redis.call('XACK', KEYS[1], ARGV[2], eid)
    redis.call('XDEL', KEYS[1], eid)
    if over_rate then
      -- The k-th task deferred on this limit in this batch can start when
      -- the k-th oldest admission (of those the window holds, and then of
      -- those that will take their place) leaves the window.
      local t = over_rate
      local k = deferred[t]
      deferred[t] = k + 1
      local n = #times[t] / 2
      local due = tonumber(times[t][2 * (k % n) + 2]) + win[t] * (1 + math.floor(k / n))
      if due <= now then due = now + 1 end
      redis.call('ZADD', KEYS[2], due, id .. msg)
      if first_due == 0 or due < first_due then first_due = due end
      out[i] = 2
    else
      redis.call('RPUSH', KEYS[3 * over_conc + 3], id .. msg)
      out[i] = 3
    end
  end
  i = i + 1
end
out[i] = first_due
return out
