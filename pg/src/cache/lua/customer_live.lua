-- Prepended to the scripts that work on one customer's live entry.
-- Whether the entry hash `key` holds a live entry (virtual time `now`)
-- of the customer `internal_id`.
local function holds_live_customer(key, now, internal_id)
  local expires = tonumber(redis.call('HGET', key, 'exp'))
  if expires == nil or now >= expires then
    return false
  end
  return redis.call('HGET', key, 'iid') == internal_id
end
