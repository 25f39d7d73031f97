-- A write of one full customer.
-- KEYS[1] entry hash, KEYS[2] invalidation counter, KEYS[3] stale-write guard
-- ARGV[1] mode: overwrite | set_if_absent | versioned
-- ARGV[2..4] the stamp of the read the value came from: seq, count, time (ms)
-- ARGV[5] now (virtual ms), ARGV[6] when the entry expires (virtual ms),
-- ARGV[7] its real TTL (ms), ARGV[8] customer json, ARGV[9] internal id,
-- ARGV[10..] "u:<feature>", usage, ... (the usage of each balance)
-- Returns STALE_WRITE, CACHE_EXISTS or OK.
local mode = ARGV[1]
local now = tonumber(ARGV[5])
if mode == 'versioned' then
  -- Refused if any invalidation came after the read, however long ago.
  local count = tonumber(redis.call('GET', KEYS[2]) or '0')
  if count ~= tonumber(ARGV[3]) then
    return 'STALE_WRITE'
  end
else
  -- The guard is "seq:set_at:expires": an invalidation at or after the
  -- read, while the guard lives, makes the write stale.
  local guard = redis.call('GET', KEYS[3])
  if guard then
    local seq, set_at, expires = string.match(guard, '^(%d+):(%d+):(%d+)$')
    seq, set_at, expires = tonumber(seq), tonumber(set_at), tonumber(expires)
    local read_seq, read_at = tonumber(ARGV[2]), tonumber(ARGV[4])
    if now < expires and (set_at > read_at or (set_at == read_at and seq >= read_seq)) then
      return 'STALE_WRITE'
    end
  end
end
if mode ~= 'overwrite' then
  local expires = tonumber(redis.call('HGET', KEYS[1], 'exp'))
  if expires ~= nil and now < expires then
    return 'CACHE_EXISTS'
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[8], 'iid', ARGV[9], 'exp', ARGV[6])
for i = 10, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return 'OK'
