-- Closes the unit of work: saves the assessment unless one is saved already (first wins).
-- KEYS: 1 transactions. ARGV: 1 transaction id, 2 assessment JSON, 3 key TTL ms.
-- Returns {"saved"} | {"already", assessment} | {"missing"}
if redis.call('HEXISTS', KEYS[1], 't:' .. ARGV[1]) == 0 then return {'missing'} end
if redis.call('HSETNX', KEYS[1], 'a:' .. ARGV[1], ARGV[2]) == 0 then
  return {'already', redis.call('HGET', KEYS[1], 'a:' .. ARGV[1])}
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {'saved'}
