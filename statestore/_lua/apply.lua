-- Apply one commit's writes, all or nothing.  Runs inside the commit's
-- MULTI/EXEC (so the WATCH taken before still decides whether it runs at all).
-- KEYS   every key the commit writes
-- ARGV   a flat list of operations: name, key index (into KEYS), argument
--        count, arguments...  Names: SET, DEL, ZADD, ZREM, XADD.
-- Before writing anything it checks that every sorted set and stream it is
-- about to touch has the right type (Redis does not roll back a MULTI or a
-- script whose command fails half-way), so a key an operator replaced with
-- another type aborts the commit with nothing written.
-- Returns the IDs of the XADDs, in order: the commit's change-log revisions.
local want = {ZADD = 'zset', ZREM = 'zset', XADD = 'stream'}
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
  i = i + 3 + tonumber(ARGV[i + 2])
end
local out = {}
i = 1
while i <= #ARGV do
  local op = ARGV[i]
  local key = KEYS[tonumber(ARGV[i + 1])]
  local n = tonumber(ARGV[i + 2])
  local r = redis.call(op, key, unpack(ARGV, i + 3, i + 2 + n))
  if op == 'XADD' then
    out[#out + 1] = r
  end
  i = i + 3 + n
end
return out
