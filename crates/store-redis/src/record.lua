-- Opens the unit of work for one transaction, atomically: retention, idempotency, insert,
-- aggregation. See docs/redis.md for the key schema and the cost of each step.
--
-- KEYS: 1 events (zset: "amount|transaction id" scored by timestamp in µs)
--       2 transactions (hash: "t:<id>" -> "fingerprint|timestamp", "a:<id>" -> assessment JSON)
--       3 buckets (hash: "f<n>" five-minute and "h<n>" hour buckets since the epoch -> "count sum")
-- ARGV: 1 transaction id, 2 fingerprint, 3 timestamp µs, 4 amount, 5 now µs, 6 retention µs,
--       7 key TTL ms, 8..11 the window lengths in µs, shortest first
-- Returns {"conflict"} | {"replayed", assessment} | {"recorded", count, sum, ...per window}
--
-- Every redis.call costs a few µs of marshalling: the script makes as few as it can.

local events, transactions, buckets = KEYS[1], KEYS[2], KEYS[3]
local id, fingerprint = ARGV[1], ARGV[2]
local ts = tonumber(ARGV[3])
local amount_text = ARGV[4]
local horizon = tonumber(ARGV[5]) - tonumber(ARGV[6])
local ttl = ARGV[7]
local FIVE = 300000000   -- five minutes in µs
local HOUR = 3600000000
local FIVES_PER_HOUR = 12
-- Up to this many retained events, the windows are summed from the events themselves: one range
-- read beats the buckets for all but busy customers (measured break-even: about 250 events).
local SMALL = 200

local find, sub = string.find, string.sub
local function us(x) return string.format('%.0f', x) end
local function amount_of(member) return tonumber(sub(member, 1, find(member, '|', 1, true) - 1)) end
local function parse_bucket(value) -- "count sum"
  local space = find(value, ' ', 1, true)
  return tonumber(sub(value, 1, space - 1)), tonumber(sub(value, space + 1))
end
-- Runs a variadic command over a long list in slices: Lua's stack limits unpack().
local function in_slices(command, key, list)
  for i = 1, #list, 1000 do
    redis.call(command, key, unpack(list, i, math.min(i + 999, #list)))
  end
end

-- 1. Retention: everything at or before the horizon goes. O(log n + expired).
local expired = redis.call('ZRANGEBYSCORE', events, '-inf', us(horizon))
if #expired > 0 then
  local fields = {}
  for _, member in ipairs(expired) do
    local expired_id = sub(member, find(member, '|', 1, true) + 1)
    fields[#fields + 1] = 't:' .. expired_id
    fields[#fields + 1] = 'a:' .. expired_id
  end
  redis.call('ZREMRANGEBYSCORE', events, '-inf', us(horizon))
  in_slices('HDEL', transactions, fields)
  -- Buckets go stale as their events expire; they are never read past the horizon, so they are
  -- dropped only once more than 26 h of them have piled up.
  if redis.call('HLEN', buckets) > 26 * (FIVES_PER_HOUR + 1) then
    local stale = {}
    local first_five, first_hour = math.floor(horizon / FIVE), math.floor(horizon / HOUR)
    for _, field in ipairs(redis.call('HKEYS', buckets)) do
      local n = tonumber(sub(field, 2))
      if (sub(field, 1, 1) == 'f' and n < first_five) or (sub(field, 1, 1) == 'h' and n < first_hour) then
        stale[#stale + 1] = field
      end
    end
    if #stale > 0 then in_slices('HDEL', buckets, stale) end
  end
end

-- 2. Idempotency: a known id is a replay, a resumed unit of work, or a conflict.
local seen = redis.call('HMGET', transactions, 't:' .. id, 'a:' .. id)
if seen[1] then
  if sub(seen[1], 1, find(seen[1], '|', 1, true) - 1) ~= fingerprint then
    return {'conflict'}
  end
  if seen[2] then return {'replayed', seen[2]} end
else
  -- 3. Record: the exact event and its five-minute and hour buckets.
  local amount = tonumber(amount_text)
  local five, hour = 'f' .. us(math.floor(ts / FIVE)), 'h' .. us(math.floor(ts / HOUR))
  local current = redis.call('HMGET', buckets, five, hour)
  local updated = {}
  for i, field in ipairs({five, hour}) do
    local count, sum = 0, 0
    if current[i] then count, sum = parse_bucket(current[i]) end
    updated[#updated + 1] = field
    updated[#updated + 1] = string.format('%d %.17g', count + 1, sum + amount)
  end
  redis.call('HSET', buckets, unpack(updated))
  redis.call('HSET', transactions, 't:' .. id, fingerprint .. '|' .. ARGV[3])
  redis.call('ZADD', events, ts, amount_text .. '|' .. id)
end

-- 4. Aggregate. The windows (ts - W, ts] share their end, so they are cut into four disjoint
-- segments between the points ts - 24h < ts - 12h < ts - 6h < ts - 3h < ts, each clamped at the
-- retention horizon; a window is the sum of the segments it spans.
local points = {}
for i = 1, 4 do points[i] = math.max(ts - tonumber(ARGV[12 - i]), horizon) end
points[5] = ts
local segments = {{0, 0}, {0, 0}, {0, 0}, {0, 0}}

local function add_events(low, high, acc) -- (low, high], exact
  if low >= high then return end
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', events, '(' .. us(low), us(high))) do
    acc[1] = acc[1] + 1
    acc[2] = acc[2] + amount_of(member)
  end
end
local function add_buckets(prefix, first, last, acc) -- [first, last]
  if first > last then return end
  local fields = {}
  -- Lua writes a whole number below 1e14 without a fraction, as us() does when buckets are bumped.
  for b = first, last do fields[#fields + 1] = prefix .. b end
  for _, value in ipairs(redis.call('HMGET', buckets, unpack(fields))) do
    if value then
      local count, sum = parse_bucket(value)
      acc[1] = acc[1] + count
      acc[2] = acc[2] + sum
    end
  end
end
-- (low, high]: exact events in the partial five-minute buckets at both ends, five-minute buckets
-- up to the hour boundaries, hour buckets in between. Bounded by the length, not the population.
local function add_segment(low, high, acc)
  if low >= high then return end
  local first = math.floor(low / FIVE) + 1         -- first bucket starting after low
  local last = math.floor((high + 1) / FIVE) - 1   -- last bucket ending at or before high
  if first > last then
    add_events(low, high, acc)
    return
  end
  add_events(low, first * FIVE - 1, acc)
  add_events((last + 1) * FIVE - 1, high, acc)
  local first_hour = math.floor((first + FIVES_PER_HOUR - 1) / FIVES_PER_HOUR)
  local last_hour = math.floor((last + 1) / FIVES_PER_HOUR) - 1
  if first_hour > last_hour then
    add_buckets('f', first, last, acc)
  else
    add_buckets('f', first, first_hour * FIVES_PER_HOUR - 1, acc)
    add_buckets('h', first_hour, last_hour, acc)
    add_buckets('f', (last_hour + 1) * FIVES_PER_HOUR, last, acc)
  end
end

if redis.call('ZCARD', events) <= SMALL then
  local flat = redis.call('ZRANGEBYSCORE', events, '(' .. us(points[1]), us(ts), 'WITHSCORES')
  for i = 1, #flat, 2 do
    local at = tonumber(flat[i + 1])
    for k = 4, 1, -1 do
      if at > points[k] then
        segments[k][1] = segments[k][1] + 1
        segments[k][2] = segments[k][2] + amount_of(flat[i])
        break
      end
    end
  end
else
  for k = 1, 4 do add_segment(points[k], points[k + 1], segments[k]) end
end

-- Window 3 h is segment 4, 6 h segments 3..4, 12 h 2..4, 24 h 1..4.
local result = {'recorded'}
local count, sum = 0, 0
for k = 4, 1, -1 do
  count = count + segments[k][1]
  sum = sum + segments[k][2]
  result[#result + 1] = string.format('%d', count)
  result[#result + 1] = string.format('%.17g', sum)
end
for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ttl) end
return result
