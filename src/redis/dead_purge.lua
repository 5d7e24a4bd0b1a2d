-- dead_purge.lua: empty a queue's dead set.
-- KEYS[1] dead
-- Returns the number of entries it held.
local n = redis.call('HLEN', KEYS[1])
redis.call('DEL', KEYS[1])
return n
