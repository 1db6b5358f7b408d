-- Opens the unit of work for one transaction, atomically: retention, idempotency, insert,
-- aggregation. See docs/redis.md for the key schema and the cost of each step.
--
-- KEYS: 1 events (zset: "amount|transaction id" scored by timestamp in µs; the amount as the
--         shortest decimal text of its f64)
--       2 transactions (hash: "t:<id>" -> "fingerprint|timestamp", "a:<id>" -> assessment JSON,
--         "hz" -> the latest horizon pruned at, µs: it never moves backwards; and the index of
--         running sums, below)
--       3, 4 the events and buckets of an earlier version: its events move into KEYS[1], and
--         both go, whenever they exist (an instance of that version may write them during a
--         rolling upgrade)
-- ARGV: 1 transaction id, 2 fingerprint, 3 timestamp µs, 4 amount, 5 retention horizon µs,
--       6 key TTL ms, 7 and 8 the transaction's hour and five-minute fields ("p<hours since
--       the epoch>", "q<five minutes since the epoch>"),
--       9..12 where the 24, 12, 6 and 3 h windows start (µs, clamped at the horizon),
--       13 "1" when a transaction not held yet may be recorded, "0" when it arrived too late,
--       14 the request's deadline on Redis's clock (µs since the epoch), "0" for none,
--       15 from how many retained events the windows come from the index (below, from the
--          events themselves: cheaper for the many customers with a handful)
-- Returns {"expired"} | {"conflict"} | {"replayed", assessment} | {"too_late"} |
--         {"recorded", count, sum in mills, ...per window, 3 h first}
--
-- The index makes every window two lookups, however many events it holds. C(t) is the number and
-- the sum of the events the index counted at or before t; a window (s, t] is C(t) - C(s). For the
-- last event e at or before t (in the set's order: score, then member),
-- C(t) = p<hour of e> + q<five minutes of e> + r:<id of e>, where
--   p<h>    = C just before hour h: every event the index counted before that hour,
--   q<f>    = the events of f's hour before five-minute bucket f,
--   r:<id>  = the events of <id>'s bucket up to and including <id>,
--   b       = every event the index counted that retention has since removed (C(t) when no
--             retained event is at or before t),
--   n       = how many retained events the index accounts for,
-- all "count hi lo" (the sum in mills as two limbs, below) but n. An event that arrives last
-- (nearly all) writes its own r: and, when it opens a bucket or an hour, its q or p; one that
-- arrives late also adds itself to the later events of its bucket, the later buckets' q in its
-- hour and the later hours' p: at most a bucket of events, 11 q and the retention's hours,
-- however late it is and however many events the customer has.
--
-- The index is checked, not trusted: when n is not the set's size or an event it should know has
-- no entry (the hash was lost, or an earlier version's events just moved in), it is rebuilt from
-- every retained event, once.
--
-- Redis runs this once per transaction, so it is written for Redis's CPU: the caller computes
-- every number that does not depend on stored data and sends it as text, and every redis.call
-- costs about a microsecond of marshalling on top of the command, so the script makes as few as
-- it can.

-- 0. The deadline: a script that runs after it (it waited behind a pause, a slow command, a
-- reconnection) belongs to a request the service has already answered without it, so it must
-- not act. A script runs to its end once started, so the check holds for all that follows.
if ARGV[14] ~= '0' then
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000000 + tonumber(now[2]) > tonumber(ARGV[14]) then
    return {'expired'}
  end
end

local events, transactions, old_events, old_buckets = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, fingerprint = ARGV[1], ARGV[2]
local ts_text, amount_text, horizon_text = ARGV[3], ARGV[4], ARGV[5]
local ts, horizon = tonumber(ts_text), tonumber(horizon_text)
local ttl, hour_field, five_field = ARGV[6], ARGV[7], ARGV[8]
local HOUR, FIVE = 3600000000, 300000000

local find, sub, format, floor = string.find, string.sub, string.format, math.floor

-- Sums are exact. An amount counts as whole mills (thousandths), by the domain's formula
-- (Mills::of: floor(x * 1000 + 0.5), exact in doubles for every valid amount), and a sum is kept
-- in two limbs, hi * LIMB + lo with lo < LIMB, each a whole number far below 2^53, so it stays
-- exact where one double would not (past about nine maximum-size amounts).
local LIMB = 1e9
local function mills(member) -- of an event: "amount|id"
  return floor(tonumber(sub(member, 1, find(member, '|', 1, true) - 1)) * 1000 + 0.5)
end
local function id_of(member)
  return sub(member, find(member, '|', 1, true) + 1)
end
-- Lua writes a whole number below 1e14 without a fraction, as the caller names hours and buckets.
local function hour_of(score)
  return 'p' .. floor(score / HOUR)
end
local function five_of(score)
  return 'q' .. floor(score / FIVE)
end
-- Adds `count` transactions worth hi * LIMB + lo mills to acc = {count, hi, lo}.
local function add(acc, count, hi, lo)
  acc[1] = acc[1] + count
  acc[2] = acc[2] + hi
  local low = acc[3] + lo
  if low >= LIMB then
    -- low < 2^53 and its quotient by LIMB is at least 1e-9 from the next whole number above
    -- when not whole itself, far more than the division's error: the carry is exact.
    local carry = floor(low / LIMB)
    acc[2], low = acc[2] + carry, low - carry * LIMB
  end
  acc[3] = low
end
local function plus(a, b)
  local sum = {a[1], a[2], a[3]}
  add(sum, b[1], b[2], b[3])
  return sum
end
local function minus(a, b) -- a - b, for a >= b: both C of points, the later first
  local count, hi, lo = a[1] - b[1], a[2] - b[2], a[3] - b[3]
  if lo < 0 then lo, hi = lo + LIMB, hi - 1 end
  return {count, hi, lo}
end
local function parse(value) -- "count hi lo"
  local x = find(value, ' ', 1, true)
  local y = find(value, ' ', x + 1, true)
  return {tonumber(sub(value, 1, x - 1)), tonumber(sub(value, x + 1, y - 1)), tonumber(sub(value, y + 1))}
end
local function text(acc)
  return format('%d %.0f %.0f', acc[1], acc[2], acc[3])
end
local amount = floor(tonumber(amount_text) * 1000 + 0.5)

-- What the store knows of this id, the customer's horizon and the index's counters: one call.
local seen = redis.call('HMGET', transactions, 't:' .. id, 'a:' .. id, 'hz', 'n', 'b')
local indexed = tonumber(seen[4])
local base = seen[5] and parse(seen[5]) or {0, 0, 0}
-- Fields to write to the transactions hash, flushed in one HSET before the script returns.
local writes = {}
local function write(field, value)
  writes[#writes + 1] = field
  writes[#writes + 1] = value
end
local function flush()
  for i = 1, #writes, 1000 do
    redis.call('HSET', transactions, unpack(writes, i, math.min(i + 999, #writes)))
  end
end

-- An earlier version's events (a customer it served, or one of its instances during a rolling
-- upgrade) join the set. Their ids are in the same transactions hash, so none is in both sets:
-- the set grows past n, and the index is rebuilt below (until then it still prunes its own).
if redis.call('EXISTS', old_events) == 1 then
  local old = redis.call('ZRANGE', old_events, 0, -1, 'WITHSCORES')
  for i = 1, #old, 1000 do
    local slice = {}
    for j = i, math.min(i + 999, #old), 2 do
      slice[#slice + 1] = old[j + 1]
      slice[#slice + 1] = old[j]
    end
    redis.call('ZADD', events, unpack(slice))
  end
  redis.call('DEL', old_events, old_buckets)
  redis.call('PEXPIRE', events, ttl)
end

-- The horizon never moves backwards: an instance whose clock is behind another's prunes at the
-- later of the two, so that what one deleted another cannot bring back and count again.
if seen[3] and tonumber(seen[3]) > horizon then
  horizon_text, horizon = seen[3], tonumber(seen[3])
end

-- 1. Retention: everything at or before the horizon goes, and the index moves its sums into b.
-- O(log n + expired).
local expired = redis.call('ZRANGEBYSCORE', events, '-inf', horizon_text, 'WITHSCORES')
if #expired > 0 then
  local fields = {}
  -- The index's entries go with the events: their r, and the p and q of the hours and buckets
  -- now wholly before the horizon. Those are the expired events' own, and the previous
  -- horizon's (its partly expired hour and bucket, whose last events may have gone then): no
  -- other hour or bucket can hold entries, so the work is the expired events', however long the
  -- customer was idle. A customer without an index has none.
  local horizon_hour, horizon_five = hour_of(horizon), five_of(horizon)
  local gone = {}
  local function drop(field, horizon_field)
    if field ~= horizon_field and not gone[field] then
      gone[field] = true
      fields[#fields + 1] = field
    end
  end
  if indexed and seen[3] then
    drop(hour_of(tonumber(seen[3])), horizon_hour)
    drop(five_of(tonumber(seen[3])), horizon_five)
  end
  for i = 1, #expired, 2 do
    local member = expired[i]
    local expired_id = id_of(member)
    fields[#fields + 1] = 't:' .. expired_id
    fields[#fields + 1] = 'a:' .. expired_id
    if indexed then
      local at = tonumber(expired[i + 1])
      fields[#fields + 1] = 'r:' .. expired_id
      drop(hour_of(at), horizon_hour)
      drop(five_of(at), horizon_five)
    end
    add(base, 1, 0, mills(member))
  end
  redis.call('ZREMRANGEBYSCORE', events, '-inf', horizon_text)
  -- Variadic commands over long lists go in slices: Lua's stack limits unpack().
  for i = 1, #fields, 1000 do
    redis.call('HDEL', transactions, unpack(fields, i, math.min(i + 999, #fields)))
  end
  if indexed then
    indexed = indexed - #expired / 2
    write('n', indexed)
    write('b', text(base))
  end
  if not seen[3] or tonumber(seen[3]) < horizon then
    write('hz', horizon_text)
  end
end

-- 2. Idempotency: a known id is a replay, a resumed unit of work, or a conflict. (One read
-- before the pruning: an entry it just deleted is not known.)
if seen[1] and tonumber(sub(seen[1], find(seen[1], '|', 1, true) + 1)) <= horizon then
  seen[1], seen[2] = false, false
end
local insert = false
if seen[1] then
  if sub(seen[1], 1, find(seen[1], '|', 1, true) - 1) ~= fingerprint then
    flush()
    return {'conflict'}
  end
  if seen[2] then
    flush()
    return {'replayed', seen[2]}
  end
elseif ARGV[13] == '0' or ts <= horizon then
  -- Too late to be new, or at or before the horizon (one this store deleted), and not a retry:
  -- nothing is recorded.
  flush()
  return {'too_late'}
else
  insert = true
end

-- The windows start at these points; the caller clamped them at its own horizon, the
-- customer's may be later.
local points = {}
for k = 1, 4 do
  points[k] = math.max(tonumber(ARGV[8 + k]), horizon)
end

-- The windows (s, ts] from events (a customer's, in the set's order, from before the earliest
-- start), when there is no index to read.
local function walk(all)
  local windows = {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}}
  for i = 1, #all, 2 do
    local at = tonumber(all[i + 1])
    if at <= ts then
      local m = mills(all[i])
      for k = 1, 4 do
        if at > points[k] then add(windows[k], 1, 0, m) end
      end
    end
  end
  return windows
end

-- Rebuilds the index from every retained event (this one included once it is in the set), with
-- its origin at the oldest of them; returns them.
local function rebuild()
  local all = redis.call('ZRANGE', events, 0, -1, 'WITHSCORES')
  local hour, five, in_hour, run, total = nil, nil, nil, nil, {0, 0, 0}
  for i = 1, #all, 2 do
    local at = tonumber(all[i + 1])
    if hour_of(at) ~= hour then
      hour, in_hour = hour_of(at), {0, 0, 0}
      write(hour, text(total))
    end
    if five_of(at) ~= five then
      five, run = five_of(at), {0, 0, 0}
      write(five, text(in_hour))
    end
    local m = mills(all[i])
    add(run, 1, 0, m)
    add(in_hour, 1, 0, m)
    add(total, 1, 0, m)
    write('r:' .. id_of(all[i]), text(run))
  end
  -- Later writes of a field win: these replace any the pruning queued.
  write('n', #all / 2)
  write('b', '0 0 0')
  return all
end

-- The last event at or before each window's start, latest start first: a lookup each, skipped
-- where the answer is already known (nothing retained at or before a later start, or the last
-- event at or before it lies before this one too). `latest` is the last event before them all
-- when known ({score, member}), false when there is none.
local function last_before_starts(latest)
  local found = {}
  local next_found = latest
  for k = 4, 1, -1 do
    local s = points[k]
    if s <= horizon or next_found == false then
      found[k] = false
    elseif next_found and next_found[1] <= s then
      found[k] = next_found
    else
      -- Redis writes a number argument exactly (Lua's own `..` would keep 14 digits).
      local hit = redis.call('ZREVRANGEBYSCORE', events, s, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
      found[k] = hit[1] and {tonumber(hit[2]), hit[1]} or false
    end
    next_found = found[k]
  end
  return found
end

-- The index's entries for events ({score, member} or false), and any `extra` fields: one HMGET.
-- Returns a function from an event to C at it and the values by field, or nil when an event's
-- entry is missing (the index is stale). A missing extra field reads as nil.
local function reader(list, extra)
  local fields = {}
  for _, e in ipairs(list) do
    if e then
      fields[#fields + 1] = hour_of(e[1])
      fields[#fields + 1] = five_of(e[1])
      fields[#fields + 1] = 'r:' .. id_of(e[2])
    end
  end
  local required = #fields
  for _, field in ipairs(extra or {}) do fields[#fields + 1] = field end
  -- In slices, as everywhere: a late event ahead of a crowded bucket moves all its entries.
  local values = {}
  for i = 1, #fields, 1000 do
    local slice = redis.call('HMGET', transactions, unpack(fields, i, math.min(i + 999, #fields)))
    for j = 1, #slice do values[i + j - 1] = slice[j] end
  end
  local by_field = {}
  for i = 1, #fields do
    if not values[i] and i <= required then return nil end
    by_field[fields[i]] = values[i] or nil
  end
  return function(e)
    if not e then return base end
    local opening = plus(parse(by_field[hour_of(e[1])]), parse(by_field[five_of(e[1])]))
    return plus(opening, parse(by_field['r:' .. id_of(e[2])]))
  end, by_field
end

local member = amount_text .. '|' .. id
-- The population before this event: which way its windows are computed.
local size = redis.call('ZCARD', events)
local windows

-- 3. Record: the event and its entry, whichever way the windows go.
if insert then
  redis.call('ZADD', events, ts_text, member)
  write('t:' .. id, fingerprint .. '|' .. ts_text)
end

if size < tonumber(ARGV[15]) then
  -- Small: the windows from the events. The index is left alone: n no longer matches once
  -- this records, so it is rebuilt when next needed.
  windows = walk(redis.call('ZRANGEBYSCORE', events, '(' .. format('%.0f', points[1]), ts_text, 'WITHSCORES'))
elseif size > 0 and indexed ~= size then
  -- Stale or missing (an earlier version's customer): rebuilt, with this event in it.
  windows = walk(rebuild())
elseif insert then
  -- Indexed: what the event changes in the index.
  if size == 0 then
    -- The first retained event: the index starts over from it.
    base = {0, 0, 0}
    if seen[5] then write('b', '0 0 0') end
  end
  local top = size > 0 and redis.call('ZREVRANGE', events, 0, 1, 'WITHSCORES') or {member, ts_text}
  -- The event just before this one, the ones after it in its bucket, and the entries it moves:
  -- their r, then the later buckets' q in its hour, then the later hours' p.
  local previous, later, moved = false, {}, {}
  if top[1] == member then
    -- The last event (nearly always): it changes nothing but its own entries.
    previous = top[3] and {tonumber(top[4]), top[3]} or false
  else
    -- Late, or tied on its timestamp with a later member. Ties before it (smaller members) come
    -- first here.
    local five = floor(ts / FIVE)
    local rest = redis.call('ZRANGEBYSCORE', events, ts_text, '(' .. format('%.0f', (five + 1) * FIVE), 'WITHSCORES')
    local at = 1
    while rest[at] ~= member do
      -- ZADD put it there a moment ago, in this atomic script.
      if not rest[at] then return redis.error_reply('record.lua: the event is not where it was added') end
      at = at + 2
    end
    if at > 1 then
      previous = {tonumber(rest[at - 1]), rest[at - 2]}
    else
      local hit = redis.call('ZREVRANGEBYSCORE', events, '(' .. ts_text, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
      previous = hit[1] and {tonumber(hit[2]), hit[1]} or false
    end
    for i = at + 2, #rest, 2 do
      later[#later + 1] = {tonumber(rest[i + 1]), rest[i]}
      moved[#moved + 1] = 'r:' .. id_of(rest[i])
    end
    local hour, last = floor(ts / HOUR), tonumber(top[2])
    for f = five + 1, math.min(floor(last / FIVE), (hour + 1) * (HOUR / FIVE) - 1) do
      moved[#moved + 1] = 'q' .. f
    end
    for h = hour + 1, floor(last / HOUR) do
      moved[#moved + 1] = 'p' .. h
    end
  end
  local starts = last_before_starts(previous)
  local c, by_field = reader({previous, starts[1], starts[2], starts[3], starts[4]}, moved)
  for i = 1, #later do
    if c and not by_field[moved[i]] then c = nil end
  end
  if c then
    local before = c(previous)
    local at_x = plus(before, {1, 0, amount})
    local run = {1, 0, amount}
    if previous and five_of(previous[1]) == five_field then
      run = plus(parse(by_field['r:' .. id_of(previous[2])]), run)
    elseif previous and hour_of(previous[1]) == hour_field then
      -- It opens its bucket.
      write(five_field, text(minus(before, parse(by_field[hour_field]))))
    else
      -- It opens its hour.
      write(hour_field, text(before))
      write(five_field, '0 0 0')
    end
    write('r:' .. id, text(run))
    write('n', size + 1)
    -- The windows end at the last event at or before ts: this one, or a later tie.
    local at_end = at_x
    local opening = minus(at_x, run)
    for i, field in ipairs(moved) do
      -- Buckets and hours without events have no q or p: they are never read.
      local value = by_field[field]
      if value then
        local shifted = plus(parse(value), {1, 0, amount})
        write(field, text(shifted))
        if later[i] and later[i][1] == ts then at_end = plus(opening, shifted) end
      end
    end
    windows = {}
    for k = 1, 4 do windows[k] = minus(at_end, c(starts[k])) end
  else
    -- An entry was missing: the index is stale after all.
    windows = walk(rebuild())
  end
else
  -- A resumed unit of work: the event is recorded already; its windows are read.
  local hit = redis.call('ZREVRANGEBYSCORE', events, ts_text, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
  local at_end = hit[1] and {tonumber(hit[2]), hit[1]} or false
  local starts = last_before_starts(nil)
  local read = at_end and reader({at_end, starts[1], starts[2], starts[3], starts[4]})
  if read then
    windows = {}
    for k = 1, 4 do windows[k] = minus(read(at_end), read(starts[k])) end
  else
    windows = walk(rebuild())
  end
end

flush()
if insert then
  redis.call('PEXPIRE', events, ttl)
  redis.call('PEXPIRE', transactions, ttl)
end

-- Counts go back as integers; sums as the decimal text of the whole number of mills, every
-- digit. Window 3 h first.
local result = {'recorded'}
for k = 4, 1, -1 do
  local w = windows[k]
  result[#result + 1] = w[1]
  if w[2] > 0 then
    result[#result + 1] = format('%.0f%09.0f', w[2], w[3])
  else
    result[#result + 1] = format('%.0f', w[3])
  end
end
return result
