-- read.lua: read records of one slot group, with its marker, atomically.
--
-- KEYS[1]  the group's marker (see apply.lua): missing means the server lost
--          its data or the generation was never built, which is not the
--          same as "no record", so it is an error
-- KEYS[2..] buckets of the group
-- ARGV     per bucket: index into KEYS, number of fields, the fields
-- returns  the values in ARGV's order, false (nil) where a field is absent
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('NOTBUILT marker ' .. KEYS[1] .. ' is missing')
end
local out = {}
local i = 1
while i <= #ARGV do
  local key = KEYS[tonumber(ARGV[i])]
  local n = tonumber(ARGV[i + 1])
  local vals = redis.call('HMGET', key, unpack(ARGV, i + 2, i + 1 + n))
  for j = 1, n do out[#out + 1] = vals[j] end
  i = i + 2 + n
end
return out
