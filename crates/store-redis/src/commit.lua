-- Closes the unit of work: saves the assessment unless one is saved already (first wins).
-- KEYS: 1 transactions. ARGV: 1 transaction id, 2 assessment JSON, 3 the request's deadline on
-- Redis's clock (µs since the epoch), "0" for none.
-- Returns {"expired"} | {"saved"} | {"already", assessment} | {"missing"}
-- The hash's time to live was set by record.lua a moment ago, when the transaction went in; the
-- assessment lives as long as the transaction, so it is not set again here.
-- Run after the deadline, the service has answered without this commit (degraded, or 503): saving
-- now would contradict that answer.
if ARGV[3] ~= '0' then
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000000 + tonumber(now[2]) > tonumber(ARGV[3]) then
    return {'expired'}
  end
end
if redis.call('HEXISTS', KEYS[1], 't:' .. ARGV[1]) == 0 then return {'missing'} end
if redis.call('HSETNX', KEYS[1], 'a:' .. ARGV[1], ARGV[2]) == 0 then
  return {'already', redis.call('HGET', KEYS[1], 'a:' .. ARGV[1])}
end
return {'saved'}
