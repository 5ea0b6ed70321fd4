-- Read records selected by index clauses (or explicit IDs) and the change-log
-- position, atomically: the result is one consistent view of the namespace.
-- KEYS[1]   change log (stream)     KEYS[2..] index keys used by the clauses
-- ARGV: ngroups, then per group:
--   record key prefix, mode ('ranges' or 'ids'), then
--   ranges: nclauses, per clause: nranges, per range: key index (into KEYS), min, max
--   ids:    nids, ids...
-- For 'ranges' the clauses are ANDed and each is a superset of the answer, so
-- only the smallest clause (by ZLEXCOUNT) is read; the caller filters exactly.
-- Returns {revision, per group: count, id1, raw1, id2, raw2, ...}.  A record
-- key of the wrong type gives raw = '\0WRONGTYPE'; a missing record is skipped.
-- Only a WRONGTYPE error means a corrupt key; any other is returned as it is (in
-- Redis Cluster, an undeclared record key of a slot being migrated: "non local key",
-- which the client retries like TRYAGAIN).
local function failed(err)
  local msg = type(err) == 'table' and err.err or tostring(err)
  if string.find(msg, 'WRONGTYPE', 1, true) then return nil end
  return redis.error_reply(msg)
end
local out = {}
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
  if mode == 'ranges' then
    local nclauses = tonumber(ARGV[i])
    i = i + 1
    local best, bestcount = nil, nil
    for _ = 1, nclauses do
      local nranges = tonumber(ARGV[i])
      local clause = {}
      local count = 0
      i = i + 1
      for _ = 1, nranges do
        local key = KEYS[tonumber(ARGV[i])]
        clause[#clause + 1] = {key, ARGV[i + 1], ARGV[i + 2]}
        local cok, c = pcall(redis.call, 'ZLEXCOUNT', key, ARGV[i + 1], ARGV[i + 2])
        if not cok then return redis.error_reply('WRONGTYPE statestore index ' .. key) end
        count = count + c
        i = i + 3
      end
      if bestcount == nil or count < bestcount then
        best, bestcount = clause, count
      end
    end
    local seen = {}
    for _, r in ipairs(best) do
      for _, m in ipairs(redis.call('ZRANGE', r[1], r[2], r[3], 'BYLEX')) do
        local id = string.sub(m, -64)
        if not seen[id] then
          seen[id] = true
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
    end
  end
  out[countpos] = found
end
return out
