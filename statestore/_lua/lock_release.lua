-- Release a lock if (and only if) the caller's token still holds it, and wake
-- one waiter if any waits.  KEYS[1] lock key, KEYS[2] wake-up list, KEYS[3]
-- waiters flag (see lock_acquire.lua); ARGV[1] token, ARGV[2] wake-up list TTL in ms.
-- Returns 1 when released, 0 when the lock had expired or belongs to another holder.
local v = redis.call('GET', KEYS[1])
local owner = '{"token":' .. ARGV[1] .. ','
if not v or string.sub(v, 1, #owner) ~= owner then
  return 0
end
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('DEL', KEYS[2])
  redis.call('RPUSH', KEYS[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
