-- Extend a lock's TTL if the caller's token still holds it.
-- KEYS[1] lock key; ARGV[1] token, ARGV[2] ttl in ms.
-- Returns 1 when renewed, 0 when the lock is gone or held by another token.
local v = redis.call('GET', KEYS[1])
local owner = '{"token":' .. ARGV[1] .. ','
if not v or string.sub(v, 1, #owner) ~= owner then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
