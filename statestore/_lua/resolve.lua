-- Resolve a reference Docker's way and return the record, in one round trip.
-- KEYS[1]  id index (zset, lex)
-- ARGV[1]  record key prefix      ARGV[2] name key prefix ('' for execs)
-- ARGV[3]  bare reference         ARGV[4] '1' if it is a full 64-hex ID
-- ARGV[5]  '1' if it may be a name ARGV[6] '1' if it may be an ID prefix
-- Returns {status, id, raw, key1, problem1, ...}; status is 'ok', 'name' (found
-- through the name key: the caller checks that the record has that name),
-- 'notfound', 'ambiguous', 'wrongtype' (record key) or 'scan' (the id index is
-- unusable: the caller looks the prefix up in the record keys).  The pairs after
-- raw are the broken keys the lookup went past: a name key of the wrong type, an
-- id index of the wrong type or with non-zero scores (lex ranges are then unreliable).
-- Every key touched shares the namespace's hash tag, so the script is single-slot.
-- Only a WRONGTYPE error means a corrupt key.  Any other error is returned as
-- it is: in Redis Cluster, a key this script did not declare whose slot is being
-- migrated fails with "non local key", which the client retries like TRYAGAIN.
local function failed(err)
  local msg = type(err) == 'table' and err.err or tostring(err)
  if string.find(msg, 'WRONGTYPE', 1, true) then return nil end
  return redis.error_reply(msg)
end
local problems = {}
local function answer(status, id, raw)
  local out = {status, id, raw}
  for _, p in ipairs(problems) do out[#out + 1] = p end
  return out
end
local function fetch(id, status)
  local ok, raw = pcall(redis.call, 'GET', ARGV[1] .. id)
  if not ok then return failed(raw) or answer('wrongtype', id, '') end
  if raw then return answer(status, id, raw) end
  return nil
end
local ref = ARGV[3]
if ARGV[4] == '1' then
  local r = fetch(ref, 'ok')
  if r then return r end
end
if ARGV[5] == '1' then
  local nkey = ARGV[2] .. ref
  local ok, id = pcall(redis.call, 'GET', nkey)
  if not ok then
    local e = failed(id)
    if e then return e end
    problems[#problems + 1] = nkey
    problems[#problems + 1] = 'holds a ' .. redis.call('TYPE', nkey)['ok'] .. ', not a container ID'
  elseif id then
    local r = fetch(id, 'name')
    if r then return r end
  end
end
if ARGV[6] == '1' then
  local zok, lo = pcall(redis.call, 'ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if not zok then
    local e = failed(lo)
    if e then return e end
    problems[#problems + 1] = KEYS[1]
    problems[#problems + 1] = 'holds a ' .. redis.call('TYPE', KEYS[1])['ok'] .. ', not a sorted set'
    return answer('scan', '', '')
  end
  -- the scores of both ends are 0 only if every score is (else lex ranges are unreliable)
  local hi = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if (lo[2] and tonumber(lo[2]) ~= 0) or (hi[2] and tonumber(hi[2]) ~= 0) then
    problems[#problems + 1] = KEYS[1]
    problems[#problems + 1] = 'has members with a non-zero score, so its ranges are unreliable'
    return answer('scan', '', '')
  end
  local hits = redis.call('ZRANGE', KEYS[1], '[' .. ref, '[' .. ref .. '\255', 'BYLEX', 'LIMIT', 0, 2)
  if #hits == 1 then
    local r = fetch(hits[1], 'ok')
    if r then return r end
  elseif #hits > 1 and redis.call('EXISTS', ARGV[1] .. hits[1], ARGV[1] .. hits[2]) == 2 then
    return answer('ambiguous', '', '')
  end
  if #hits > 0 then  -- a member that names no record: it may hide or fake a match
    problems[#problems + 1] = KEYS[1]
    problems[#problems + 1] = 'has members that name no record'
    return answer('scan', '', '')
  end
end
return answer('notfound', '', '')
