-- apply.lua: fold changes into the records of one slot group, atomically.
--
-- KEYS[1]  the group's marker: written when the generation was built; if it
--          is missing the server lost its data (or the generation was never
--          built), and nothing is written: a partial store must not pass
--          for a whole one
-- KEYS[2..] buckets of the group (hashes: field = the rest of a storage key,
--          value = the record)
-- ARGV     quadruples: index into KEYS, field, changes (a record in the
--          layout of codec.go: the format byte, then entries), number of
--          entries; a bucket's fields are neighbours
-- returns  the number of changes that altered a record
--
-- The merge rule is the domain's (suppression.ScopeState.Apply), written
-- again here so concurrent writers cannot interleave between read and write;
-- the Go tests run both on random event sets and require the same states.

-- Records are written in format 2 and read in format 1 or 2 (codec.go):
-- they differ only in how a source is written, which the rule never reads,
-- so an entry keeps its source as encoded (src), in format 2's form.
local FORMAT = 2
local LIFT = 128
local CODES = 240 -- format 2: a source byte from here on is a code, alone
-- reason codes that only an admin lift naming them can lift:
-- restriction 4, erasure 5, complaint 6, minor 9
local STICKY = {[4] = true, [5] = true, [6] = true, [9] = true}

-- Plain string.byte/char arithmetic rather than the struct library: the
-- same script then runs on Redis and on miniredis (suppressd dev). Numbers
-- are doubles, exact up to 2^53: occurred_at is 48 bits, tags two 32-bit words.
local byte, char, floor = string.byte, string.char, math.floor
local P32 = 4294967296

local function u32(s, p)
  local a, b, c, d = byte(s, p, p + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end

local function be32(n)
  return char(floor(n / 16777216) % 256, floor(n / 65536) % 256, floor(n / 256) % 256, n % 256)
end

local function decode(s, pos, out, format)
  local n = #s
  while pos <= n do
    local sl = byte(s, pos)
    local scope = string.sub(s, pos + 1, pos + sl)
    pos = pos + 1 + sl
    local kind, origin, a1, a2 = byte(s, pos, pos + 3)
    local at = (a1 * 256 + a2) * P32 + u32(s, pos + 4)
    local hi, lo = u32(s, pos + 8), u32(s, pos + 12)
    local srcl = byte(s, pos + 16)
    local src
    if format >= 2 and srcl >= CODES then
      src = char(srcl)
      pos = pos + 17
    elseif srcl >= CODES then
      -- format 1 kept up to 255 bytes; format 2 keeps 239, as codec.go cuts
      src = char(CODES - 1) .. string.sub(s, pos + 17, pos + 16 + CODES - 1)
      pos = pos + 17 + srcl
    else
      src = string.sub(s, pos + 16, pos + 16 + srcl)
      pos = pos + 17 + srcl
    end
    out[#out + 1] = {scope = scope, kind = kind, origin = origin, at = at, hi = hi, lo = lo, src = src}
  end
  return out
end

local function encode(entries)
  local parts = {char(FORMAT)}
  for i = 1, #entries do
    local e = entries[i]
    local ahi = floor(e.at / P32)
    parts[#parts + 1] = char(#e.scope) .. e.scope .. char(e.kind, e.origin, floor(ahi / 256), ahi % 256) ..
      be32(e.at - ahi * P32) .. be32(e.hi) .. be32(e.lo) .. e.src
  end
  return table.concat(parts)
end

-- cmp orders stamps: occurred_at, then the tag's high and low words.
local function cmp(a, b)
  if a.at ~= b.at then return a.at < b.at and -1 or 1 end
  if a.hi ~= b.hi then return a.hi < b.hi and -1 or 1 end
  if a.lo ~= b.lo then return a.lo < b.lo and -1 or 1 end
  return 0
end

local function find(entries, scope, kind)
  for i = 1, #entries do
    local e = entries[i]
    if e.scope == scope and e.kind == kind then return e end
  end
  return nil
end

-- dominates: does the lift c (reason lr, 0 for a plain lift) make register
-- e obsolete? A suppression it lifts that happened strictly before it (a
-- suppression in the same millisecond stays: the conservative answer), or,
-- for a plain lift, an admin lift of a non-sticky reason that is no newer.
local function dominates(c, lr, e)
  local r = e.kind % LIFT
  if e.kind < LIFT then
    local lifts = (lr == r) or (lr == 0 and not STICKY[r])
    return lifts and c.at > e.at
  end
  return lr == 0 and r ~= 0 and not STICKY[r] and c.at >= e.at
end

local function apply(entries, c)
  local cur = find(entries, c.scope, c.kind)
  if cur and cmp(cur, c) >= 0 then return entries, false end
  local lift = c.kind >= LIFT
  local r = c.kind % LIFT
  if not lift then
    -- lifted by a later event: an old opt-out arriving late
    local l = find(entries, c.scope, LIFT + r)
    if l and l.at > c.at then return entries, false end
    if not STICKY[r] then
      l = find(entries, c.scope, LIFT)
      if l and l.at > c.at then return entries, false end
    end
  elseif r ~= 0 and not STICKY[r] then
    -- the plain lift, no older, already covers this reason
    local l = find(entries, c.scope, LIFT)
    if l and l.at >= c.at then return entries, false end
  end
  local out = {}
  for i = 1, #entries do
    local e = entries[i]
    local same = e.scope == c.scope
    if not (same and e.kind == c.kind) and
       not (lift and same and dominates(c, r, e)) then
      out[#out + 1] = e
    end
  end
  out[#out + 1] = c
  return out, true
end

if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('NOTBUILT marker ' .. KEYS[1] .. ' is missing')
end

local changed = 0
for i = 1, #ARGV, 4 do
  local key = KEYS[tonumber(ARGV[i])]
  local field = ARGV[i + 1]
  -- The caller has already merged the batch's changes for this field into
  -- one reduced state (ARGV[i + 2], with ARGV[i + 3] entries), written as a
  -- record; a field seen for the first time, the common case, takes it as
  -- it is. (The caller ships with this script, whose SHA names it: its
  -- changes are in this script's format.)
  local changes = ARGV[i + 2]
  if redis.call('HSETNX', key, field, changes) == 1 then
    changed = changed + tonumber(ARGV[i + 3])
  else
    local cur = redis.call('HGET', key, field)
    local format = byte(cur, 1)
    if format ~= 1 and format ~= FORMAT then
      return redis.error_reply('record format ' .. format .. ' is not 1 or ' .. FORMAT)
    end
    local entries = decode(cur, 2, {}, format)
    changes = decode(changes, 2, {}, FORMAT)
    local dirty = false
    for j = 1, #changes do
      local ok
      entries, ok = apply(entries, changes[j])
      if ok then
        dirty = true
        changed = changed + 1
      end
    end
    if dirty then redis.call('HSET', key, field, encode(entries)) end
  end
end
return changed
