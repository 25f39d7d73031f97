-- Adds usage to the cached balance of one feature of one customer.
-- KEYS[1] entry hash
-- ARGV[1] now (virtual ms), ARGV[2] internal id, ARGV[3] feature, ARGV[4] value
-- Returns the usage after it, or nil when no live entry of that customer is there.
if not holds_live_customer(KEYS[1], tonumber(ARGV[1]), ARGV[2]) then
  return false
end
return redis.call('HINCRBY', KEYS[1], 'u:' .. ARGV[3], ARGV[4])
