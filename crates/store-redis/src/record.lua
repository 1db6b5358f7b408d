-- Opens the unit of work for one transaction, atomically: retention, idempotency, insert,
-- aggregation. See docs/redis.md for the key schema and the cost of each step.
--
-- KEYS: 1 events (zset: "amount|transaction id" scored by timestamp in µs; the amount as the
--         shortest decimal text of its f64)
--       2 transactions (hash: "t:<id>" -> "fingerprint|timestamp", "a:<id>" -> assessment JSON,
--         "hz" -> the latest horizon pruned at, µs: it never moves backwards)
--       3 buckets (hash: "f<n>" five-minute and "h<n>" hour buckets since the epoch ->
--         "count hi lo", the sum in mills as two limbs, and "m" once they are kept: only for
--         customers with more than SMALL events. Versions before exact sums kept "count sum"
--         under the marker "on": each version rebuilds the buckets it does not recognise)
-- ARGV: 1 transaction id, 2 fingerprint, 3 timestamp µs, 4 amount, 5 retention horizon µs,
--       6 key TTL ms, 7 the transaction's five-minute bucket field, 8 its hour bucket field,
--       9..12 where the 24, 12, 6 and 3 h windows start (µs, clamped at the horizon),
--       13 "1" when a transaction not held yet may be recorded, "0" when it arrived too late,
--       14 the request's deadline on Redis's clock (µs since the epoch), "0" for none
-- Returns {"expired"} | {"conflict"} | {"replayed", assessment} | {"too_late"} |
--         {"recorded", count, sum in mills, ...per window}
--
-- Redis runs this once per transaction, so it is written for Redis's CPU: the caller computes
-- every number that does not depend on stored data and sends it as text, so that the common path
-- formats no number but the four sums; every redis.call costs about a microsecond of marshalling
-- on top of the command, so the script makes as few as it can.

-- 0. The deadline: a script that runs after it (it waited behind a pause, a slow command, a
-- reconnection) belongs to a request the service has already answered without it, so it must
-- not act. A script runs to its end once started, so the check holds for all that follows.
if ARGV[14] ~= '0' then
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000000 + tonumber(now[2]) > tonumber(ARGV[14]) then
    return {'expired'}
  end
end

local events, transactions, buckets = KEYS[1], KEYS[2], KEYS[3]
local id, fingerprint = ARGV[1], ARGV[2]
local ts_text, amount_text, horizon_text = ARGV[3], ARGV[4], ARGV[5]
local ts, horizon = tonumber(ts_text), tonumber(horizon_text)

-- What the store knows of this id, and the customer's horizon: one call.
local seen = redis.call('HMGET', transactions, 't:' .. id, 'a:' .. id, 'hz')
-- The horizon never moves backwards: an instance whose clock is behind another's prunes at the
-- later of the two, so that what one deleted another cannot bring back and count again.
if seen[3] and tonumber(seen[3]) > horizon then
  horizon_text, horizon = seen[3], tonumber(seen[3])
end
local ttl = ARGV[6]
local FIVE = 300000000   -- five minutes in µs
local HOUR = 3600000000
local FIVES_PER_HOUR = 12
-- Up to this many retained events, the windows are summed from the events themselves: one range
-- read beats the buckets for all but busy customers (measured break-even: about 250 events).
local SMALL = 200

local find, sub, format, floor = string.find, string.sub, string.format, math.floor

-- Sums are exact. An amount counts as whole mills (thousandths), by the domain's formula
-- (Mills::of: floor(x * 1000 + 0.5), exact in doubles for every valid amount), and a sum is kept
-- in two limbs, hi * LIMB + lo with lo < LIMB, each a whole number far below 2^53, so it stays
-- exact where one double would not (past about nine maximum-size amounts).
local LIMB = 1e9
local function mills(amount_text)
  return floor(tonumber(amount_text) * 1000 + 0.5)
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
local function add_event(acc, member)
  add(acc, 1, 0, mills(sub(member, 1, find(member, '|', 1, true) - 1)))
end
local function add_bucket(acc, value) -- "count hi lo"
  local a = find(value, ' ', 1, true)
  local b = find(value, ' ', a + 1, true)
  add(acc, tonumber(sub(value, 1, a - 1)), tonumber(sub(value, a + 1, b - 1)), tonumber(sub(value, b + 1)))
end
local function bucket_text(acc)
  return format('%d %.0f %.0f', acc[1], acc[2], acc[3])
end

-- 1. Retention: everything at or before the horizon goes. O(log n + expired).
local expired = redis.call('ZRANGEBYSCORE', events, '-inf', horizon_text)
if #expired > 0 then
  local fields = {}
  for _, member in ipairs(expired) do
    local expired_id = sub(member, find(member, '|', 1, true) + 1)
    fields[#fields + 1] = 't:' .. expired_id
    fields[#fields + 1] = 'a:' .. expired_id
  end
  redis.call('ZREMRANGEBYSCORE', events, '-inf', horizon_text)
  if not seen[3] or tonumber(seen[3]) < horizon then
    redis.call('HSET', transactions, 'hz', horizon_text)
  end
  -- Variadic commands over long lists go in slices: Lua's stack limits unpack().
  for i = 1, #fields, 1000 do
    redis.call('HDEL', transactions, unpack(fields, i, math.min(i + 999, #fields)))
  end
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
    for i = 1, #stale, 1000 do
      redis.call('HDEL', buckets, unpack(stale, i, math.min(i + 999, #stale)))
    end
  end
end

-- The number of retained events, once known.
local size

-- 2. Idempotency: a known id is a replay, a resumed unit of work, or a conflict. (One read
-- before the pruning: an entry it just deleted is not known.)
if seen[1] and tonumber(sub(seen[1], find(seen[1], '|', 1, true) + 1)) <= horizon then
  seen[1], seen[2] = false, false
end
if seen[1] then
  if sub(seen[1], 1, find(seen[1], '|', 1, true) - 1) ~= fingerprint then
    return {'conflict'}
  end
  if seen[2] then return {'replayed', seen[2]} end
elseif ARGV[13] == '0' or ts <= horizon then
  -- Too late to be new, or at or before the horizon (one this store deleted), and not a retry:
  -- nothing is recorded.
  return {'too_late'}
else
  -- 3. Record: the exact event, and its five-minute and hour buckets when the customer has them
  -- (see below).
  local five, hour = ARGV[7], ARGV[8]
  local current = redis.call('HMGET', buckets, five, hour, 'm')
  redis.call('HSET', transactions, 't:' .. id, fingerprint .. '|' .. ts_text)
  redis.call('ZADD', events, ts_text, amount_text .. '|' .. id)
  redis.call('PEXPIRE', events, ttl)
  redis.call('PEXPIRE', transactions, ttl)
  if current[3] then
    local amount = mills(amount_text)
    local updated = {five, '', hour, ''}
    for i = 1, 2 do
      local acc = {0, 0, 0}
      if current[i] then add_bucket(acc, current[i]) end
      add(acc, 1, 0, amount)
      updated[2 * i] = bucket_text(acc)
    end
    redis.call('HSET', buckets, unpack(updated))
    redis.call('PEXPIRE', buckets, ttl)
  else
    size = redis.call('ZCARD', events)
  end
  if size and size > SMALL then
    -- Buckets are only kept for busy customers, the only ones who read them: most customers
    -- never pay for them. The first time a customer has more than SMALL events, they are built
    -- from every retained event (this one included), replacing any left by an older version,
    -- and marked `m`; from then on every event updates them, until the key expires.
    local all = redis.call('ZRANGE', events, 0, -1, 'WITHSCORES')
    local totals, fields = {}, {}
    for i = 1, #all, 2 do
      local at, member = tonumber(all[i + 1]), all[i]
      -- Lua writes a whole number below 1e14 without a fraction, as the caller names buckets.
      for _, field in ipairs({'f' .. math.floor(at / FIVE), 'h' .. math.floor(at / HOUR)}) do
        local total = totals[field]
        if not total then
          total = {0, 0, 0}
          totals[field] = total
          fields[#fields + 1] = field
        end
        add_event(total, member)
      end
    end
    local pairs_list = {'m', '1'}
    for _, field in ipairs(fields) do
      pairs_list[#pairs_list + 1] = field
      pairs_list[#pairs_list + 1] = bucket_text(totals[field])
    end
    redis.call('DEL', buckets)
    for i = 1, #pairs_list, 1000 do
      redis.call('HSET', buckets, unpack(pairs_list, i, math.min(i + 999, #pairs_list)))
    end
    redis.call('PEXPIRE', buckets, ttl)
  end
end

-- 4. Aggregate. The windows (ts - W, ts] share their end, so they are cut into four disjoint
-- segments between the points ts - 24h < ts - 12h < ts - 6h < ts - 3h < ts, each clamped at the
-- retention horizon; a window is the sum of the segments it spans.
-- The caller clamped the window starts at its own horizon; the customer's may be later.
local starts = {ARGV[9], ARGV[10], ARGV[11], ARGV[12]}
for k = 1, 4 do
  if tonumber(starts[k]) < horizon then starts[k] = horizon_text end
end
local points = {tonumber(starts[1]), tonumber(starts[2]), tonumber(starts[3]), tonumber(starts[4]), ts}
local segments = {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}}

if (size or redis.call('ZCARD', events)) <= SMALL then
  -- Small: one read of the events in the day, each counted in the latest segment it falls in.
  local flat = redis.call('ZRANGEBYSCORE', events, '(' .. starts[1], ts_text, 'WITHSCORES')
  for i = 1, #flat, 2 do
    local at = tonumber(flat[i + 1])
    for k = 4, 1, -1 do
      if at > points[k] then
        add_event(segments[k], flat[i])
        break
      end
    end
  end
else
  -- Busy: exact events in the partial five-minute buckets at both ends of each segment,
  -- five-minute buckets up to the hour boundaries, hour buckets in between. Bounded by the
  -- windows' length, not the customer's population.
  local function us(x) return format('%.0f', x) end
  local function add_events(low, high, acc) -- (low, high], exact
    if low >= high then return end
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', events, '(' .. us(low), us(high))) do
      add_event(acc, member)
    end
  end
  local function add_buckets(prefix, first, last, acc) -- [first, last]
    if first > last then return end
    local fields = {}
    -- Lua writes a whole number below 1e14 without a fraction, as the caller names buckets.
    for b = first, last do fields[#fields + 1] = prefix .. b end
    for _, value in ipairs(redis.call('HMGET', buckets, unpack(fields))) do
      if value then add_bucket(acc, value) end
    end
  end
  for k = 1, 4 do
    local low, high, acc = points[k], points[k + 1], segments[k]
    if low < high then
      local first = math.floor(low / FIVE) + 1         -- first bucket starting after low
      local last = math.floor((high + 1) / FIVE) - 1   -- last bucket ending at or before high
      if first > last then
        add_events(low, high, acc)
      else
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
    end
  end
end

-- Window 3 h is segment 4, 6 h segments 3..4, 12 h 2..4, 24 h 1..4. Counts go back as integers;
-- sums as the decimal text of the whole number of mills, every digit.
local result = {'recorded', 0, '', 0, '', 0, '', 0, ''}
local total = {0, 0, 0}
for k = 4, 1, -1 do
  local segment = segments[k]
  add(total, segment[1], segment[2], segment[3])
  local at = 2 * (5 - k)
  result[at] = total[1]
  if total[2] > 0 then
    result[at + 1] = format('%.0f%09.0f', total[2], total[3])
  else
    result[at + 1] = format('%.0f', total[3])
  end
end
return result
