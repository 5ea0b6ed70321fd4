-- Apply one commit's writes, all or nothing.  Runs inside the commit's
-- MULTI/EXEC (so the WATCH taken before still decides whether it runs at all).
-- KEYS   every key the commit writes
-- ARGV   a flat list of operations: name, key index (into KEYS), argument
--        count, arguments...  Names: SET, DEL, ZADD, ZREM, and EVENT.
-- EVENT appends one change event: key = the change log (stream); arguments =
--        sequence-counter key index, MAXLEN, channel, payload head, then the
--        stream entry's field/value pairs.  It takes the next sequence number
--        (reserved for all events at once with INCRBY before any write),
--        XADDs the entry with a "seq" field first, and PUBLISHes
--        payload head .. '"seq":N,"revision":"<entry id>"}' on the channel, so
--        the notification carries the revision a watcher resumes from.
-- Before writing anything it checks that every sorted set and stream it is
-- about to touch has the right type (Redis does not roll back a MULTI or a
-- script whose command fails half-way), so a key an operator replaced with
-- another type aborts the commit with nothing written.
-- Likewise, with an ACL user (Redis 7+), it checks that the user may run every
-- command it is about to call and publish on every channel: Redis checks the
-- declared KEYS when EVALSHA is called, but commands and channels only when the
-- script reaches them, which would be half-way through the writes.
-- Returns the IDs of the change-log entries, in order: the commit's revisions.
local want = {ZADD = 'zset', ZREM = 'zset', EVENT = 'stream'}
local probe = {SET = {'x'}, DEL = {}, ZADD = {'0', 'x'}, ZREM = {'x'}}  -- arguments after the key
local acl = redis.acl_check_cmd
local checked = {}
local function allowed(...)
  if acl and not acl(...) then
    local args = {...}
    return redis.error_reply('NOPERM statestore: this user has no permissions to run ' .. args[1]
      .. ' on ' .. args[2] .. ' (see docs/operations.md, Access control)')
  end
end
local i = 1
local events, seqkey = 0, nil
while i <= #ARGV do
  local op = ARGV[i]
  local key = KEYS[tonumber(ARGV[i + 1])]
  local w = want[op]
  if w then
    local t = redis.call('TYPE', key)['ok']
    if t ~= 'none' and t ~= w then
      return redis.error_reply('WRONGTYPE statestore key ' .. key .. ' holds a ' .. t .. ', expected a ' .. w)
    end
  end
  if op == 'EVENT' then
    seqkey = KEYS[tonumber(ARGV[i + 3])]
    events = events + 1
    local err = (not checked.XADD and allowed('xadd', key, '*', 'seq', '1'))
      or allowed('publish', ARGV[i + 5], 'x')
    if err then return err end
    checked.XADD = true
  elseif acl and not checked[op] then
    local err = allowed(string.lower(op), key, unpack(probe[op]))
    if err then return err end
    checked[op] = true
  end
  i = i + 3 + tonumber(ARGV[i + 2])
end
-- Take every sequence number this commit needs at once, after the type checks and
-- before any write: if the counter is not an integer INCRBY fails and nothing is
-- written (and a successful INCRBY is always followed by exactly that many entries).
local seq = 0
if events > 0 then
  local ok, last = pcall(redis.call, 'INCRBY', seqkey, events)
  if not ok then
    local msg = type(last) == 'table' and last.err or tostring(last)
    if not (string.find(msg, 'WRONGTYPE', 1, true) or string.find(msg, 'not an integer', 1, true)
        or string.find(msg, 'overflow', 1, true)) then
      -- refused for another reason (NOREPLICAS under min-replicas-to-write, NOPERM, ...):
      -- nothing was written; report the server's own error
      return redis.error_reply(msg)
    end
    return redis.error_reply('WRONGTYPE statestore key ' .. seqkey .. ' holds a value that is not an'
      .. ' integer counter, expected a string')
  end
  seq = last - events
end
local out = {}
i = 1
while i <= #ARGV do
  local op = ARGV[i]
  local key = KEYS[tonumber(ARGV[i + 1])]
  local n = tonumber(ARGV[i + 2])
  if op == 'EVENT' then
    local a = i + 3
    seq = seq + 1
    local seqtext = string.format('%d', seq)
    local id = redis.call('XADD', key, 'MAXLEN', '~', ARGV[a + 1], '*', 'seq', seqtext,
      unpack(ARGV, a + 4, i + 2 + n))
    redis.call('PUBLISH', ARGV[a + 2], ARGV[a + 3] .. '"seq":' .. seqtext .. ',"revision":"' .. id .. '"}')
    out[#out + 1] = id
  else
    redis.call(op, key, unpack(ARGV, i + 3, i + 2 + n))
  end
  i = i + 3 + n
end
return out
