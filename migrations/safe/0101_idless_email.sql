-- safe: at most one id-less customer per email (case-insensitive).
CREATE UNIQUE INDEX customers_org_env_lower_email_idless_key
    ON customers (org_id, env, lower(email)) WHERE id IS NULL AND email <> '';
