-- Append chunks of a container's output to its log stream, only while the container exists.
-- KEYS[1]  the log stream (ss:{ns}:logs:<id>)
-- KEYS[2]  the container record (ss:{ns}:c:<id>)
-- ARGV     MAXLEN, then stream/data pairs ("stdout" or "stderr", the bytes), one pair per entry
-- Returns the new entries' IDs, in order, or -1 (nothing written) when the container record does
-- not exist: checking and appending in one script means no append can recreate the log of a
-- container deleted (with its log, in the delete's commit) a moment before.
-- A log key of another type is refused before anything is written.
if redis.call('EXISTS', KEYS[2]) == 0 then
  return -1
end
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'stream' then
  return redis.error_reply('WRONGTYPE statestore key ' .. KEYS[1] .. ' holds a ' .. t .. ', expected a stream')
end
local out = {}
for i = 2, #ARGV, 2 do
  out[#out + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 's', ARGV[i], 'd', ARGV[i + 1])
end
return out
