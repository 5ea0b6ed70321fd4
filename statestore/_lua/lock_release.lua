-- Release a lock if (and only if) the caller's token still holds it, and wake
-- one waiter.  KEYS[1] lock key, KEYS[2] wake-up list; ARGV[1] token,
-- ARGV[2] wake-up list TTL in ms.
-- Returns 1 when released, 0 when the lock had expired or belongs to another holder.
local v = redis.call('GET', KEYS[1])
if not v then
  return 0
end
local ok, holder = pcall(cjson.decode, v)
if not ok or tostring(holder['token']) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
