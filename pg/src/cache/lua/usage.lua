-- The cached usage of one feature of one customer.
-- KEYS[1] entry hash
-- ARGV[1] now (virtual ms), ARGV[2] internal id, ARGV[3] feature
-- Returns the usage (0 when the entry has no balance for the feature), or
-- nil when no live entry of that customer is there.
if not holds_live_customer(KEYS[1], tonumber(ARGV[1]), ARGV[2]) then
  return false
end
-- (As the stored string: a Lua number would round usage beyond 2^53.)
return redis.call('HGET', KEYS[1], 'u:' .. ARGV[3]) or '0'
