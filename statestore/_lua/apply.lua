-- Apply one commit's writes, all or nothing.  Runs inside the commit's
-- MULTI/EXEC (so the WATCH taken before still decides whether it runs at all).
-- KEYS   every key the commit writes
-- ARGV   a flat list of operations: name, key index (into KEYS), argument
--        count, arguments...  Names: SET, DEL, ZADD, ZREM, and EVENT.
-- EVENT appends one change event: key = the change log (stream); arguments =
--        sequence-counter key index, MAXLEN, channel, payload head, then the
--        stream entry's field/value pairs.  It takes the next sequence number
--        (INCR), XADDs the entry with a "seq" field first, and PUBLISHes
--        payload head .. '"seq":N,"revision":"<entry id>"}' on the channel, so
--        the notification carries the revision a watcher resumes from.
-- Before writing anything it checks that every sorted set and stream it is
-- about to touch has the right type (Redis does not roll back a MULTI or a
-- script whose command fails half-way), so a key an operator replaced with
-- another type aborts the commit with nothing written.
-- Returns the IDs of the change-log entries, in order: the commit's revisions.
local want = {ZADD = 'zset', ZREM = 'zset', EVENT = 'stream'}
local i = 1
while i <= #ARGV do
  local w = want[ARGV[i]]
  if w then
    local key = KEYS[tonumber(ARGV[i + 1])]
    local t = redis.call('TYPE', key)['ok']
    if t ~= 'none' and t ~= w then
      return redis.error_reply('WRONGTYPE statestore key ' .. key .. ' holds a ' .. t .. ', expected a ' .. w)
    end
  end
  if ARGV[i] == 'EVENT' then
    -- the sequence counter must be an integer string, or INCR would fail half-way
    local seqkey = KEYS[tonumber(ARGV[i + 3])]
    local t = redis.call('TYPE', seqkey)['ok']
    local ok = t == 'none'
    if t == 'string' then
      -- what INCR accepts: a canonical decimal integer (no sign games, no leading zeros);
      -- at most 18 digits, so INCR can never overflow
      local v = redis.call('GET', seqkey)
      ok = #v <= 18 and (v == '0' or string.match(v, '^%-?[1-9]%d*$') ~= nil)
    end
    if not ok then
      return redis.error_reply('WRONGTYPE statestore key ' .. seqkey .. ' holds a ' .. t
        .. ' that is not an integer counter, expected a string')
    end
  end
  i = i + 3 + tonumber(ARGV[i + 2])
end
local out = {}
i = 1
while i <= #ARGV do
  local op = ARGV[i]
  local key = KEYS[tonumber(ARGV[i + 1])]
  local n = tonumber(ARGV[i + 2])
  if op == 'EVENT' then
    local a = i + 3
    local seq = redis.call('INCR', KEYS[tonumber(ARGV[a])])
    local id = redis.call('XADD', key, 'MAXLEN', '~', ARGV[a + 1], '*', 'seq', seq,
      unpack(ARGV, a + 4, i + 2 + n))
    redis.call('PUBLISH', ARGV[a + 2], ARGV[a + 3] .. '"seq":' .. seq .. ',"revision":"' .. id .. '"}')
    out[#out + 1] = id
  else
    redis.call(op, key, unpack(ARGV, i + 3, i + 2 + n))
  end
  i = i + 3 + n
end
return out
