-- The schema of SPEC §1, shared by every strategy. Constraint names match
-- the in-memory model's, so both report the same 23505s.

CREATE TABLE products (
    id          text PRIMARY KEY,
    "group"     text NOT NULL,
    is_default  boolean NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('free', 'paid', 'trial')),
    features    jsonb NOT NULL DEFAULT '{}',
    position    integer NOT NULL
);

CREATE TABLE customers (
    internal_id   text PRIMARY KEY,
    org_id        text NOT NULL,
    env           text NOT NULL CHECK (env IN ('live', 'sandbox')),
    id            text,
    name          text,
    email         text,
    fingerprint   text,
    metadata      jsonb NOT NULL DEFAULT '{}',
    processor     text,
    created_at    bigint NOT NULL,
    -- Additions to SPEC §1 (see README): which defaults the customer is
    -- owed ('none', 'all' or 'group:<name>'), and whether a Stripe
    -- customer was asked for.
    default_scope text NOT NULL,
    stripe_wanted boolean NOT NULL DEFAULT false,
    -- Insertion order, for listings in a stable order.
    seq           bigserial NOT NULL,
    CONSTRAINT customers_org_env_id_key UNIQUE (org_id, env, id)
);

CREATE TABLE customer_products (
    id                   text PRIMARY KEY,
    internal_customer_id text NOT NULL,
    product_id           text NOT NULL,
    "group"              text NOT NULL,
    status               text NOT NULL CHECK (status IN ('active', 'trialing')),
    created_at           bigint NOT NULL,
    seq                  bigserial NOT NULL,
    CONSTRAINT customer_products_internal_customer_id_fkey
        FOREIGN KEY (internal_customer_id) REFERENCES customers (internal_id) ON DELETE CASCADE
);

CREATE TABLE balances (
    internal_customer_id text NOT NULL,
    feature_id           text NOT NULL,
    usage                bigint NOT NULL,
    PRIMARY KEY (internal_customer_id, feature_id),
    CONSTRAINT balances_internal_customer_id_fkey
        FOREIGN KEY (internal_customer_id) REFERENCES customers (internal_id) ON DELETE CASCADE
);

-- The catalog's one switch: whether paid products count as defaults.
CREATE TABLE catalog (
    force_paid_default boolean NOT NULL
);
