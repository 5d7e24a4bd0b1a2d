-- dead_purge.lua: empty a queue's dead set.
-- KEYS[1] dead
-- Returns the number of entries it held.  (HLEN fails on a key of the wrong
-- type before DEL changes anything.)
local n = redis.pcall('HLEN', KEYS[1])
if type(n) == 'table' then
  return redis.error_reply(n.err .. ' (' .. KEYS[1] .. '; dead_purge.lua changed nothing)')
end
redis.call('DEL', KEYS[1])
return n
