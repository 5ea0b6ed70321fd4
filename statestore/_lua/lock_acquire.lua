-- Try to take a container's action lock.
-- KEYS[1] lock key (string: JSON holder record, with a TTL)
-- KEYS[2] fencing-token counter of the namespace (INCR, never reset)
-- KEYS[3] the container record (the lock is only for existing containers)
-- KEYS[4] the fence key: the current owner's token, changed only here, so a
--         fenced commit can WATCH it without being disturbed by renewals
-- ARGV[1] ttl in ms   ARGV[2] holder JSON without token/acquired (an object)
-- Returns {1, token} when taken, {0, pttl} when held by someone else,
-- {-1, 0} when the container does not exist.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('PTTL', KEYS[1])}
end
if redis.call('EXISTS', KEYS[3]) == 0 then
  return {-1, 0}
end
local token = redis.call('INCR', KEYS[2])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holder = cjson.decode(ARGV[2])
holder['token'] = token
holder['acquired_ms'] = now_ms
holder['ttl_ms'] = tonumber(ARGV[1])
redis.call('SET', KEYS[1], cjson.encode(holder), 'PX', ARGV[1])
redis.call('SET', KEYS[4], token)
return {1, token}
