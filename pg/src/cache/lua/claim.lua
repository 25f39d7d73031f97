-- The idempotency middleware's claim of a key (SET NX, in virtual time).
-- KEYS[1] the key
-- ARGV[1] now (virtual ms), ARGV[2] when a claim made now expires (virtual
-- ms), ARGV[3] its real TTL (ms)
-- Returns CLAIMED or TAKEN.
local expires = redis.call('GET', KEYS[1])
if expires and tonumber(ARGV[1]) < tonumber(expires) then
  return 'TAKEN'
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 'CLAIMED'
