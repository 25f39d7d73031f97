-- A read of one full customer, with the key's invalidation count.
-- KEYS[1] entry hash, KEYS[2] invalidation counter
-- ARGV[1] now: the reader's virtual clock (ms)
-- Returns {count} when no live entry is there, else
-- {count, customer json, "u:<feature>", usage, ...}.
local count = redis.call('GET', KEYS[2]) or '0'
local now = tonumber(ARGV[1])
local expires = tonumber(redis.call('HGET', KEYS[1], 'exp'))
if expires == nil or now >= expires then
  return {count}
end
local reply = {count, redis.call('HGET', KEYS[1], 'v')}
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 2) == 'u:' then
    reply[#reply + 1] = fields[i]
    reply[#reply + 1] = fields[i + 1]
  end
end
return reply
