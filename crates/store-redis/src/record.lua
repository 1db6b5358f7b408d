-- Opens the unit of work for one transaction, atomically: retention, idempotency, insert,
-- aggregation. See docs/redis.md for the key schema and the cost of each step.
--
-- KEYS: 1 events (zset: "amount|transaction id" scored by timestamp in µs)
--       2 transactions (hash: transaction id -> "fingerprint|timestamp")
--       3 assessments (hash: transaction id -> assessment JSON)
--       4 minute buckets (hash: minute number -> "count sum")
--       5 hour buckets (hash: hour number -> "count sum")
-- ARGV: 1 transaction id, 2 fingerprint, 3 timestamp µs, 4 amount, 5 now µs, 6 retention µs,
--       7 key TTL ms, 8..11 the window lengths in µs
-- Returns {"conflict"} | {"replayed", assessment} | {"recorded", count, sum, ...per window}

local events, transactions, assessments, minutes, hours = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, fingerprint = ARGV[1], ARGV[2]
local ts = tonumber(ARGV[3])
local amount_text = ARGV[4]
local amount = tonumber(amount_text)
local now = tonumber(ARGV[5])
local horizon = now - tonumber(ARGV[6])
local ttl = ARGV[7]
local MINUTE = 60000000
local HOUR = 3600000000

local function us(x) return string.format('%.0f', x) end

-- Runs a variadic command over a long list in slices: Lua's stack limits unpack().
local function in_slices(command, key, list)
  for i = 1, #list, 1000 do
    redis.call(command, key, unpack(list, i, math.min(i + 999, #list)))
  end
end

local function id_of(member) return string.sub(member, string.find(member, '|', 1, true) + 1) end
local function amount_of(member) return tonumber(string.sub(member, 1, string.find(member, '|', 1, true) - 1)) end

-- 1. Retention: everything at or before the horizon goes. O(log n + expired).
local expired = redis.call('ZRANGEBYSCORE', events, '-inf', us(horizon))
if #expired > 0 then
  local ids = {}
  for i, member in ipairs(expired) do ids[i] = id_of(member) end
  redis.call('ZREMRANGEBYSCORE', events, '-inf', us(horizon))
  in_slices('HDEL', transactions, ids)
  in_slices('HDEL', assessments, ids)
end
-- Buckets are never read before the horizon, so stale ones are dropped only once they pile up.
local function prune(key, size, limit)
  if redis.call('HLEN', key) > limit then
    local first_live = math.floor(horizon / size)
    local stale = {}
    for _, field in ipairs(redis.call('HKEYS', key)) do
      if tonumber(field) < first_live then stale[#stale + 1] = field end
    end
    if #stale > 0 then in_slices('HDEL', key, stale) end
  end
end
prune(minutes, MINUTE, 1600)
prune(hours, HOUR, 30)

-- 2. Idempotency: a known id is a replay, a resumed unit of work, or a conflict.
local seen = redis.call('HGET', transactions, id)
if seen then
  if string.sub(seen, 1, string.find(seen, '|', 1, true) - 1) ~= fingerprint then
    return {'conflict'}
  end
  local assessment = redis.call('HGET', assessments, id)
  if assessment then return {'replayed', assessment} end
else
  -- 3. Record: the exact event and its minute and hour buckets.
  redis.call('HSET', transactions, id, fingerprint .. '|' .. ARGV[3])
  redis.call('ZADD', events, ts, amount_text .. '|' .. id)
  for _, bucket in ipairs({{minutes, math.floor(ts / MINUTE)}, {hours, math.floor(ts / HOUR)}}) do
    local field = us(bucket[2])
    local current = redis.call('HGET', bucket[1], field)
    local count, sum = 0, 0
    if current then
      local space = string.find(current, ' ', 1, true)
      count = tonumber(string.sub(current, 1, space - 1))
      sum = tonumber(string.sub(current, space + 1))
    end
    redis.call('HSET', bucket[1], field, string.format('%d %.17g', count + 1, sum + amount))
  end
end

-- 4. Aggregate each window (ts - W, ts]: exact events for the partial minutes at both ends,
-- minute buckets up to the hour boundaries, hour buckets in between. Bounded by the window's
-- length, not by how many transactions it holds.
local function add_events(low, high, acc) -- (low, high]
  if low >= high then return end
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', events, '(' .. us(low), us(high))) do
    acc[1] = acc[1] + 1
    acc[2] = acc[2] + amount_of(member)
  end
end
local function add_buckets(key, first, last, acc) -- [first, last]
  if first > last then return end
  local fields = {}
  for b = first, last do fields[#fields + 1] = us(b) end
  for _, value in ipairs(redis.call('HMGET', key, unpack(fields))) do
    if value then
      local space = string.find(value, ' ', 1, true)
      acc[1] = acc[1] + tonumber(string.sub(value, 1, space - 1))
      acc[2] = acc[2] + tonumber(string.sub(value, space + 1))
    end
  end
end
local function window(low, high)
  if low < horizon then low = horizon end -- deleted, whether or not a bucket still says so
  local acc = {0, 0}
  local first_minute = math.floor(low / MINUTE) + 1         -- first minute starting after low
  local last_minute = math.floor((high + 1) / MINUTE) - 1   -- last minute ending at or before high
  if first_minute > last_minute then
    add_events(low, high, acc)
    return acc
  end
  add_events(low, first_minute * MINUTE - 1, acc)
  add_events((last_minute + 1) * MINUTE - 1, high, acc)
  local first_hour = math.floor((first_minute + 59) / 60)
  local last_hour = math.floor((last_minute + 1) / 60) - 1
  if first_hour > last_hour then
    add_buckets(minutes, first_minute, last_minute, acc)
  else
    add_buckets(minutes, first_minute, first_hour * 60 - 1, acc)
    add_buckets(hours, first_hour, last_hour, acc)
    add_buckets(minutes, (last_hour + 1) * 60, last_minute, acc)
  end
  return acc
end

local result = {'recorded'}
for i = 8, 11 do
  local acc = window(ts - tonumber(ARGV[i]), ts)
  result[#result + 1] = string.format('%d', acc[1])
  result[#result + 1] = string.format('%.17g', acc[2])
end
for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ttl) end
return result
