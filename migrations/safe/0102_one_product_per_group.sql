-- safe: one product per group per customer, so that concurrent default
-- attachment (ON CONFLICT DO NOTHING) can never attach a group twice.
ALTER TABLE customer_products
    ADD CONSTRAINT customer_products_customer_group_key UNIQUE (internal_customer_id, "group");
