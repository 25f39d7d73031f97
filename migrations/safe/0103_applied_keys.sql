-- safe: the idempotency keys of the tracks a balance has counted, so that a
-- retried track with the same key is counted once (exactly-once usage).
ALTER TABLE balances
    ADD COLUMN applied_keys text[] NOT NULL DEFAULT '{}';
