-- Read records selected by index clauses (or explicit IDs) and the change-log
-- position, atomically: the result is one consistent view of the namespace.
-- KEYS[1]   change log (stream)     KEYS[2..] index keys used by the clauses
-- ARGV: ngroups, then per group:
--   record key prefix, mode ('ranges' or 'ids'), then
--   ranges: fallback (key index of the kind's id index), nclauses, per clause:
--           nranges, per range: key index (into KEYS), min, max
--   ids:    nids, ids...
-- For 'ranges' the clauses are ANDed and each is a superset of the answer, so
-- only the smallest clause (by ZLEXCOUNT) is read; the caller filters exactly.
-- A range '-' '+' is read by rank (every member, whatever the scores).
-- Returns {revision, per group: count, id1, raw1, id2, raw2, ..., then
-- key1, problem1, key2, problem2, ...}: the broken index keys the read worked
-- around.  A clause with a broken key (wrong type; a non-zero score, which
-- makes lex ranges unreliable) is left out; when none is left, the id index is
-- read whole; when that is broken too, count is -1 (the caller scans the records).
-- A member of a range that names no record is reported too.  A record key of
-- the wrong type gives raw = '\0WRONGTYPE'; a missing record is skipped.
-- Only a WRONGTYPE error means a corrupt key; any other is returned as it is (in
-- Redis Cluster, an undeclared record key of a slot being migrated: "non local key",
-- which the client retries like TRYAGAIN).
local function failed(err)
  local msg = type(err) == 'table' and err.err or tostring(err)
  if string.find(msg, 'WRONGTYPE', 1, true) then return nil end
  return redis.error_reply(msg)
end
local out = {}
local problems = {}
local reported = {}
local function report(key, problem)
  if not reported[key] then
    reported[key] = true
    problems[#problems + 1] = key
    problems[#problems + 1] = problem
  end
end
-- why an index key cannot be used: nil if it can (absent counts as empty).  The
-- scores of both ends (lowest and highest) are 0 only if every score is.
local health = {}
local function broken(key, lex)
  local h = health[key]
  if h == nil or (lex and h == 'whole') then
    local ok, lo = pcall(redis.call, 'ZRANGE', key, 0, 0, 'WITHSCORES')
    if not ok then
      if failed(lo) then error(lo) end  -- not a WRONGTYPE: returned as it is
      h = 'holds a ' .. redis.call('TYPE', key)['ok'] .. ', not a sorted set'
    elseif not lex then
      h = 'whole'  -- read by rank: the scores do not matter
    else
      local hi = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
      if (lo[2] and tonumber(lo[2]) ~= 0) or (hi[2] and tonumber(hi[2]) ~= 0) then
        h = 'has members with a non-zero score, so its ranges are unreliable'
      else
        h = 'ok'
      end
    end
    health[key] = h
  end
  if h == 'ok' or h == 'whole' then return nil end
  report(key, h)
  return h
end
local ok, last = pcall(redis.call, 'XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if not ok then
  out[1] = '\0WRONGTYPE'
elseif #last == 0 then
  out[1] = '0-0'
else
  out[1] = last[1][1]
end
local i = 2
local ngroups = tonumber(ARGV[1])
for _ = 1, ngroups do
  local prefix = ARGV[i]
  local mode = ARGV[i + 1]
  i = i + 2
  local ids = {}
  local source = nil   -- id -> the index key that named it ('ranges' only)
  local scan = false
  if mode == 'ranges' then
    local fallback = KEYS[tonumber(ARGV[i])]
    local nclauses = tonumber(ARGV[i + 1])
    i = i + 2
    local best, bestcount = nil, nil
    for _ = 1, nclauses do
      local nranges = tonumber(ARGV[i])
      local clause = {}
      local count = 0
      local usable = true
      i = i + 1
      for _ = 1, nranges do
        local key = KEYS[tonumber(ARGV[i])]
        local min, max = ARGV[i + 1], ARGV[i + 2]
        local whole = min == '-' and max == '+'
        clause[#clause + 1] = {key, min, max, whole}
        if usable and broken(key, not whole) then usable = false end
        if usable then
          count = count + redis.call('ZLEXCOUNT', key, min, max)  -- only to pick the smallest clause
        end
        i = i + 3
      end
      if usable and (bestcount == nil or count < bestcount) then
        best, bestcount = clause, count
      end
    end
    if best == nil then
      if broken(fallback, false) then
        scan = true
        best = {}
      else
        best = {{fallback, '-', '+', true}}
      end
    end
    source = {}
    for _, r in ipairs(best) do
      local members
      if r[4] then
        members = redis.call('ZRANGE', r[1], 0, -1)
      else
        members = redis.call('ZRANGE', r[1], r[2], r[3], 'BYLEX')
      end
      for _, m in ipairs(members) do
        local id = string.sub(m, -64)
        if not source[id] then
          source[id] = r[1]
          ids[#ids + 1] = id
        end
      end
    end
  else
    local n = tonumber(ARGV[i])
    for k = 1, n do ids[k] = ARGV[i + k] end
    i = i + n + 1
  end
  local countpos = #out + 1
  out[countpos] = 0
  local found = 0
  for _, id in ipairs(ids) do
    local gok, raw = pcall(redis.call, 'GET', prefix .. id)
    if not gok then
      local e = failed(raw)
      if e then return e end
      raw = '\0WRONGTYPE'
    end
    if raw then
      out[#out + 1] = id
      out[#out + 1] = raw
      found = found + 1
    elseif source then
      report(source[id], 'has members that name no record')
    end
  end
  out[countpos] = scan and -1 or found
end
for _, p in ipairs(problems) do out[#out + 1] = p end
return out
