-- safe: a balance remembers each idempotency key it counted with the time
-- it counted it (the server's clock, in ms), and forgets it after the
-- idempotency window (24 h), as the API forgets a claimed key: the keys a
-- balance holds are those of the last day, not every key it ever counted.
-- Keys counted before this migration keep time 0: long expired.
ALTER TABLE balances
    ADD COLUMN applied_key_times jsonb NOT NULL DEFAULT '{}';
UPDATE balances
    SET applied_key_times = (SELECT coalesce(jsonb_object_agg(k, 0), '{}'::jsonb) FROM unnest(applied_keys) AS k);
ALTER TABLE balances
    DROP COLUMN applied_keys;
ALTER TABLE balances
    RENAME COLUMN applied_key_times TO applied_keys;
