-- An invalidation: deletes the entry, counts it, and sets the guard.
-- KEYS[1] entry hash, KEYS[2] invalidation counter, KEYS[3] stale-write guard
-- ARGV[1] the invalidation's seq, ARGV[2] the invalidating instance's clock
-- (ms), ARGV[3] when the guard expires (virtual ms), ARGV[4] its real TTL (ms)
-- The counter has no TTL: it must outlive every read that could be
-- compared with it.
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[3], ARGV[1] .. ':' .. ARGV[2] .. ':' .. ARGV[3], 'PX', ARGV[4])
return redis.call('INCR', KEYS[2])
