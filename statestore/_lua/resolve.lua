-- Resolve a reference Docker's way and return the record, in one round trip.
-- KEYS[1]  id index (zset, lex)
-- ARGV[1]  record key prefix      ARGV[2] name key prefix ('' for execs)
-- ARGV[3]  bare reference         ARGV[4] '1' if it is a full 64-hex ID
-- ARGV[5]  '1' if it may be a name ARGV[6] '1' if it may be an ID prefix
-- Returns {status, id, raw}; status is 'ok', 'notfound', 'ambiguous', 'wrongtype'
-- (record key) or 'wrongname' (name key; id is then the name).
-- Every key touched shares the namespace's hash tag, so the script is single-slot.
-- Only a WRONGTYPE error means a corrupt key.  Any other error is returned as
-- it is: in Redis Cluster, a key this script did not declare whose slot is being
-- migrated fails with "non local key", which the client retries like TRYAGAIN.
local function failed(err)
  local msg = type(err) == 'table' and err.err or tostring(err)
  if string.find(msg, 'WRONGTYPE', 1, true) then return nil end
  return redis.error_reply(msg)
end
local function fetch(id)
  local ok, raw = pcall(redis.call, 'GET', ARGV[1] .. id)
  if not ok then return failed(raw) or {'wrongtype', id, ''} end
  if raw then return {'ok', id, raw} end
  return nil
end
local ref = ARGV[3]
if ARGV[4] == '1' then
  local r = fetch(ref)
  if r then return r end
end
if ARGV[5] == '1' then
  local ok, id = pcall(redis.call, 'GET', ARGV[2] .. ref)
  if not ok then return failed(id) or {'wrongname', ref, ''} end
  if id then
    local r = fetch(id)
    if r then return r end
  end
end
if ARGV[6] == '1' then
  local zok, hits = pcall(redis.call, 'ZRANGE', KEYS[1], '[' .. ref, '[' .. ref .. '\255', 'BYLEX', 'LIMIT', 0, 2)
  if not zok then return redis.error_reply('WRONGTYPE statestore index ' .. KEYS[1]) end
  if #hits > 1 then return {'ambiguous', '', ''} end
  if #hits == 1 then
    local r = fetch(hits[1])
    if r then return r end
  end
end
return {'notfound', '', ''}
