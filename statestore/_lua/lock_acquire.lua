-- Try to take a container's action lock.
-- KEYS[1] lock key (string: JSON holder record, with a TTL)
-- KEYS[2] fencing-token counter of the namespace (INCR, never reset)
-- KEYS[3] the container record (the lock is only for existing containers)
-- KEYS[4] the fence key: the current owner's token, changed only here, so a
--         fenced commit can WATCH it without being disturbed by renewals
-- KEYS[5] the waiters flag: set (with a TTL) while someone waits, so a release
--         only pushes a wake-up when there is a waiter to wake
-- ARGV[1] ttl in ms
-- ARGV[2] the rest of the holder JSON object after the token and acquisition
--         time: '"replica":...,"host":...,"pid":...,"ttl_ms":...}'
-- The stored value always starts with '{"token":<token>,' so release and
-- renewal can check the owner with a prefix comparison (no JSON parsing).
-- ARGV[3] how long (ms) the caller will block waiting if the lock is held
-- Returns {1, token} when taken, {0, pttl} when held by someone else,
-- {-1, 0} when the container does not exist.
if redis.call('EXISTS', KEYS[1]) == 1 then
  local want = tonumber(ARGV[3])
  if redis.call('PTTL', KEYS[5]) < want then
    redis.call('SET', KEYS[5], '1', 'PX', want)
  end
  return {0, redis.call('PTTL', KEYS[1])}
end
if redis.call('EXISTS', KEYS[3]) == 0 then
  return {-1, 0}
end
local token = string.format('%d', redis.call('INCR', KEYS[2]))
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], '{"token":' .. token .. ',"acquired_ms":' .. string.format('%d', now_ms) .. ','
  .. ARGV[2], 'PX', ARGV[1])
redis.call('SET', KEYS[4], token)
return {1, tonumber(token)}
