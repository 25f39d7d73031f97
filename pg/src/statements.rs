//! The statements: one method per operation, written so that Postgres
//! takes the locks the `mem` model takes (see the crate's documentation).
//! [`PgConn::perform`](cusim::backend::Backend::perform) routes each
//! [`Op`](cusim::backend::Op) here.

use std::collections::BTreeMap;

use cusim::backend::mem::database::advisory_key;
use cusim::backend::mem::{Cache, APPLIED_KEY_WINDOW_MS};
use cusim::backend::*;
use cusim::model::{Balance, CustomerProduct, CustomerRow, FullCustomer, Product, ProductStatus, Scope};
use sqlx::{AssertSqlSafe, PgConnection, Row};

use crate::cache::CacheStore;
use crate::rows::{
    customer_of, db_error, default_scope_text, kind_of, lock_clause, status_text, CUSTOMER_COLUMNS,
};
use crate::{PgConn, Services};

impl PgConn {
    pub(crate) async fn full(
        &self,
        conn: &mut PgConnection,
        row: CustomerRow,
    ) -> Result<FullCustomer, sqlx::Error> {
        let product_rows = sqlx::query(
            "SELECT id, internal_customer_id, product_id, \"group\", status, created_at FROM customer_products \
             WHERE internal_customer_id = $1 ORDER BY \"group\", product_id, id",
        )
        .bind(&row.internal_id)
        .fetch_all(&mut *conn)
        .await?;
        let mut products = Vec::new();
        for p in &product_rows {
            products.push(CustomerProduct {
                id: p.try_get("id")?,
                internal_customer_id: p.try_get("internal_customer_id")?,
                product_id: p.try_get("product_id")?,
                group: p.try_get("group")?,
                status: if p.try_get::<String, _>("status")? == "trialing" {
                    ProductStatus::Trialing
                } else {
                    ProductStatus::Active
                },
                created_at: p.try_get::<i64, _>("created_at")? as u64,
            });
        }
        let granted_rows = sqlx::query(
            "SELECT f.key AS feature, sum(f.value::bigint)::bigint AS granted FROM customer_products cp \
             JOIN products p ON p.id = cp.product_id, jsonb_each_text(p.features) f \
             WHERE cp.internal_customer_id = $1 GROUP BY f.key",
        )
        .bind(&row.internal_id)
        .fetch_all(&mut *conn)
        .await?;
        let mut balances: BTreeMap<String, Balance> = BTreeMap::new();
        for g in &granted_rows {
            balances.entry(g.try_get("feature")?).or_default().granted = g.try_get("granted")?;
        }
        let usage_rows =
            sqlx::query("SELECT feature_id, usage FROM balances WHERE internal_customer_id = $1")
                .bind(&row.internal_id)
                .fetch_all(&mut *conn)
                .await?;
        for u in &usage_rows {
            balances.entry(u.try_get("feature_id")?).or_default().usage += u.try_get::<i64, _>("usage")?;
        }
        Ok(FullCustomer { customer: row, products, balances })
    }

    /// Adds `value` unless the balance counted `key` less than the
    /// idempotency window before `now_ms`; a count forgets the keys whose
    /// window has passed. `ON CONFLICT DO UPDATE` locks the row even when
    /// its `WHERE` is false. (The model's `Database::upsert_usage`.)
    async fn keyed_add_usage(
        &self,
        internal_id: &str,
        feature_id: &str,
        value: i64,
        key: &str,
        now_ms: u64,
    ) -> Result<DeductOutcome, DbError> {
        // A key counted at `t` is applied while `now < t + window`.
        let add = "INSERT INTO balances (internal_customer_id, feature_id, usage, applied_keys) \
                   VALUES ($1, $2, $3, jsonb_build_object($4::text, $5::bigint)) \
                   ON CONFLICT (internal_customer_id, feature_id) DO UPDATE \
                   SET usage = balances.usage + EXCLUDED.usage, \
                       applied_keys = (SELECT coalesce(jsonb_object_agg(k, t), '{}'::jsonb) \
                                       FROM jsonb_each(balances.applied_keys) AS kept(k, t) \
                                       WHERE $5::bigint < t::bigint + $6::bigint) \
                                      || jsonb_build_object($4::text, $5::bigint) \
                   WHERE NOT coalesce($5::bigint < (balances.applied_keys ->> $4::text)::bigint + $6::bigint, false) \
                   RETURNING usage";
        let read = "SELECT usage FROM balances WHERE internal_customer_id = $1 AND feature_id = $2";
        let mut conn = self.link().await;
        let added = sqlx::query_scalar(add)
            .bind(internal_id)
            .bind(feature_id)
            .bind(value)
            .bind(key)
            .bind(now_ms as i64)
            .bind(APPLIED_KEY_WINDOW_MS as i64)
            .fetch_optional(&mut *conn)
            .await;
        match added {
            Ok(Some(usage)) => Ok(DeductOutcome::Applied { usage }),
            Ok(None) => {
                match sqlx::query_scalar(read).bind(internal_id).bind(feature_id).fetch_one(&mut *conn).await
                {
                    Ok(usage) => Ok(DeductOutcome::Duplicate { usage }),
                    Err(error) => Err(self.failed(&mut conn, error).await),
                }
            }
            Err(error) => Err(self.failed(&mut conn, error).await),
        }
    }

    pub(crate) async fn upsert_usage(
        &self,
        internal_id: &str,
        feature_id: &str,
        value: i64,
        absolute: bool,
    ) -> Result<i64, DbError> {
        let sql = if absolute {
            "INSERT INTO balances (internal_customer_id, feature_id, usage) VALUES ($1, $2, $3) \
             ON CONFLICT (internal_customer_id, feature_id) DO UPDATE SET usage = EXCLUDED.usage RETURNING usage"
        } else {
            "INSERT INTO balances (internal_customer_id, feature_id, usage) VALUES ($1, $2, $3) \
             ON CONFLICT (internal_customer_id, feature_id) DO UPDATE SET usage = balances.usage + EXCLUDED.usage \
             RETURNING usage"
        };
        let mut conn = self.link().await;
        match sqlx::query_scalar(sql)
            .bind(internal_id)
            .bind(feature_id)
            .bind(value)
            .fetch_one(&mut *conn)
            .await
        {
            Ok(usage) => Ok(usage),
            Err(error) => Err(self.failed(&mut conn, error).await),
        }
    }
}

impl PgConn {
    pub(crate) async fn begin(&self) -> Result<(), DbError> {
        // Every operation is one step of logical time, as in the model.
        self.tick();
        let mut conn = self.link().await;
        sqlx::query("BEGIN").execute(&mut *conn).await.map_err(db_error)?;
        self.in_txn.set(true);
        Ok(())
    }

    pub(crate) async fn lookup_id(
        &self,
        scope: &Scope,
        id: &str,
        lock: RowLock,
    ) -> Result<Option<CustomerRow>, DbError> {
        self.tick();
        let sql = format!(
            "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE org_id = $1 AND env = $2 AND id = $3{}",
            lock_clause(lock)
        );
        let mut conn = self.link().await;
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(&scope.org_id)
            .bind(scope.env.as_str())
            .bind(id)
            .fetch_optional(&mut *conn)
            .await;
        match row.and_then(|r| r.as_ref().map(customer_of).transpose()) {
            Ok(row) => Ok(row),
            Err(error) => Err(self.failed(&mut conn, error).await),
        }
    }

    pub(crate) async fn lookup_email(&self, scope: &Scope, email: &str) -> Result<Vec<CustomerRow>, DbError> {
        self.tick();
        let sql = format!(
            "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE org_id = $1 AND env = $2 AND id IS NULL \
             AND email <> '' AND lower(email) = lower($3) ORDER BY seq"
        );
        let mut conn = self.link().await;
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(&scope.org_id)
            .bind(scope.env.as_str())
            .bind(email)
            .fetch_all(&mut *conn)
            .await;
        match rows.and_then(|rows| rows.iter().map(customer_of).collect()) {
            Ok(rows) => Ok(rows),
            Err(error) => Err(self.failed(&mut conn, error).await),
        }
    }

    pub(crate) async fn insert(
        &self,
        customer: NewCustomer,
        on_conflict: OnConflict,
    ) -> Result<InsertOutcome, DbError> {
        self.tick();
        let (internal_id, created_at) = {
            let mut shared = self.shared.borrow_mut();
            let now = shared.clock_ms;
            (shared.ids.next_id(self.request, "cus"), now)
        };
        let conflict = match (on_conflict, &customer.id) {
            (OnConflict::Error, _) => String::new(),
            (OnConflict::DoNothing, _) => " ON CONFLICT DO NOTHING".into(),
            // A no-op update of a non-key column: locks FOR NO KEY UPDATE.
            (OnConflict::ReturnExisting, Some(_)) => {
                " ON CONFLICT (org_id, env, id) DO UPDATE SET name = customers.name".into()
            }
            // Without the id-less email index nothing can conflict.
            (OnConflict::ReturnExisting, None) if !self.shared.borrow().constraints.idless_email_unique => {
                String::new()
            }
            (OnConflict::ReturnExisting, None) => {
                " ON CONFLICT (org_id, env, lower(email)) WHERE id IS NULL AND email <> '' \
                 DO UPDATE SET name = customers.name"
                    .into()
            }
        };
        let sql = format!(
            "INSERT INTO customers ({CUSTOMER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12){conflict} \
             RETURNING {CUSTOMER_COLUMNS}, (xmax <> 0) AS existed"
        );
        let metadata = serde_json::to_value(&customer.metadata).expect("metadata serializes");
        let mut conn = self.link().await;
        let result = sqlx::query(AssertSqlSafe(sql))
            .bind(&internal_id)
            .bind(&customer.scope.org_id)
            .bind(customer.scope.env.as_str())
            .bind(&customer.id)
            .bind(&customer.name)
            .bind(&customer.email)
            .bind(&customer.fingerprint)
            .bind(metadata)
            .bind(&customer.processor)
            .bind(created_at as i64)
            .bind(default_scope_text(&customer.default_scope))
            .bind(customer.stripe_wanted)
            .fetch_optional(&mut *conn)
            .await;
        match result {
            Ok(None) => Ok(InsertOutcome::Skipped),
            Ok(Some(row)) => {
                let existed: bool = row.try_get("existed").map_err(db_error)?;
                let customer = customer_of(&row).map_err(db_error)?;
                if !existed {
                    self.shared.borrow_mut().inserted.push((customer.internal_id.clone(), self.request));
                }
                Ok(if existed {
                    InsertOutcome::Existing(customer)
                } else {
                    InsertOutcome::Inserted(customer)
                })
            }
            Err(error) => Err(self.failed(&mut conn, error).await),
        }
    }

    pub(crate) async fn claim(
        &self,
        scope: &Scope,
        target: ClaimTarget,
        new_id: &str,
    ) -> Result<Option<CustomerRow>, DbError> {
        self.tick();
        let (filter, value) = match &target {
            ClaimTarget::Row { internal_id } => ("internal_id = $4", internal_id.clone()),
            ClaimTarget::IdlessEmail { email } => {
                ("id IS NULL AND email <> '' AND lower(email) = lower($4)", email.clone())
            }
        };
        let sql = format!(
            "UPDATE customers SET id = $1 WHERE org_id = $2 AND env = $3 AND {filter} RETURNING {CUSTOMER_COLUMNS}"
        );
        let mut conn = self.link().await;
        let result = sqlx::query(AssertSqlSafe(sql))
            .bind(new_id)
            .bind(&scope.org_id)
            .bind(scope.env.as_str())
            .bind(value)
            .fetch_optional(&mut *conn)
            .await;
        match result.and_then(|r| r.as_ref().map(customer_of).transpose()) {
            Ok(row) => Ok(row),
            Err(error) => Err(self.failed(&mut conn, error).await),
        }
    }

    pub(crate) async fn fill_fields(
        &self,
        scope: &Scope,
        internal_id: &str,
        fill: Fill,
    ) -> Result<Option<CustomerRow>, DbError> {
        self.tick();
        let sql = format!(
            "UPDATE customers SET \
               name = CASE WHEN coalesce(name, '') = '' AND $4::text IS NOT NULL THEN $4 ELSE name END, \
               email = CASE WHEN coalesce(email, '') = '' AND $5::text IS NOT NULL THEN $5 ELSE email END, \
               stripe_wanted = stripe_wanted OR $6 \
             WHERE org_id = $1 AND env = $2 AND internal_id = $3 AND ( \
               (coalesce(name, '') = '' AND $4::text IS NOT NULL) OR \
               (coalesce(email, '') = '' AND $5::text IS NOT NULL) OR ($6 AND NOT stripe_wanted)) \
             RETURNING {CUSTOMER_COLUMNS}"
        );
        let mut conn = self.link().await;
        let result = sqlx::query(AssertSqlSafe(sql))
            .bind(&scope.org_id)
            .bind(scope.env.as_str())
            .bind(internal_id)
            .bind(&fill.name)
            .bind(&fill.email)
            .bind(fill.stripe_wanted)
            .fetch_optional(&mut *conn)
            .await;
        match result.and_then(|r| r.as_ref().map(customer_of).transpose()) {
            Ok(row) => Ok(row),
            Err(error) => Err(self.failed(&mut conn, error).await),
        }
    }

    pub(crate) async fn list_defaults(&self, _scope: &Scope) -> Result<Vec<Product>, DbError> {
        self.tick();
        let mut conn = self.link().await;
        let result = sqlx::query(
            "SELECT id, \"group\", is_default, kind, features FROM products WHERE is_default AND \
             (kind <> 'paid' OR (SELECT coalesce(bool_or(force_paid_default), false) FROM catalog)) \
             ORDER BY position",
        )
        .fetch_all(&mut *conn)
        .await;
        let rows = match result {
            Ok(rows) => rows,
            Err(error) => return Err(self.failed(&mut conn, error).await),
        };
        rows.iter()
            .map(|row| {
                let features: serde_json::Value = row.try_get("features")?;
                Ok(Product {
                    id: row.try_get("id")?,
                    group: row.try_get("group")?,
                    is_default: row.try_get("is_default")?,
                    kind: kind_of(row.try_get::<String, _>("kind")?.as_str()),
                    features: serde_json::from_value(features).unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(db_error)
    }

    pub(crate) async fn stripe_create(
        &self,
        idempotency_key: &str,
        params: StripeParams,
    ) -> Result<String, StripeError> {
        self.tick();
        let mut shared = self.shared.borrow_mut();
        let now = shared.clock_ms;
        let Services { stripe, ids, .. } = &mut *shared;
        stripe.create_customer(idempotency_key, &params, now, ids, self.request)
    }

    pub(crate) async fn set_processor(
        &self,
        scope: &Scope,
        internal_id: &str,
        stripe_id: &str,
        only_if_null: bool,
    ) -> Result<bool, DbError> {
        self.tick();
        let sql = format!(
            "UPDATE customers SET processor = $4 WHERE org_id = $1 AND env = $2 AND internal_id = $3{}",
            if only_if_null { " AND processor IS NULL" } else { "" }
        );
        let mut conn = self.link().await;
        let result = sqlx::query(AssertSqlSafe(sql))
            .bind(&scope.org_id)
            .bind(scope.env.as_str())
            .bind(internal_id)
            .bind(stripe_id)
            .execute(&mut *conn)
            .await;
        match result {
            Ok(done) => Ok(done.rows_affected() > 0),
            Err(error) => Err(self.failed(&mut conn, error).await),
        }
    }

    pub(crate) async fn attach_default(
        &self,
        _scope: &Scope,
        product: NewCustomerProduct,
        on_conflict: OnConflict,
    ) -> Result<AttachOutcome, DbError> {
        self.tick();
        let (id, now) = {
            let mut shared = self.shared.borrow_mut();
            let now = shared.clock_ms;
            (shared.ids.next_id(self.request, "cus_prod"), now)
        };
        let conflict = if on_conflict == OnConflict::Error { "" } else { " ON CONFLICT DO NOTHING" };
        let sql = format!(
            "INSERT INTO customer_products (id, internal_customer_id, product_id, \"group\", status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6){conflict} RETURNING id"
        );
        let mut conn = self.link().await;
        let result = sqlx::query(AssertSqlSafe(sql))
            .bind(&id)
            .bind(&product.internal_customer_id)
            .bind(&product.product_id)
            .bind(&product.group)
            .bind(status_text(product.status))
            .bind(now as i64)
            .fetch_optional(&mut *conn)
            .await;
        match result {
            Ok(None) => Ok(AttachOutcome::Skipped),
            Ok(Some(_)) => Ok(AttachOutcome::Attached(CustomerProduct {
                id,
                internal_customer_id: product.internal_customer_id,
                product_id: product.product_id,
                group: product.group,
                status: product.status,
                created_at: now,
            })),
            Err(error) => Err(self.failed(&mut conn, error).await),
        }
    }

    /// `pg_advisory_xact_lock` on the key's 64-bit hash (`hashtextextended`
    /// of the schema and the model's key text): in a transaction, held
    /// until it ends; outside one, taken and released by the statement.
    /// Advisory locks belong to the whole database, so the schema is part
    /// of the key: runs in schemas of their own never share one.
    pub(crate) async fn advisory_lock(&self, scope: &Scope, key: &str) -> Result<(), DbError> {
        self.tick();
        let mut conn = self.link().await;
        let result =
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || '/' || $1, 0))")
                .bind(advisory_key(scope, key))
                .execute(&mut *conn)
                .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) => Err(self.failed(&mut conn, error).await),
        }
    }

    pub(crate) async fn commit(&self) -> Result<(), DbError> {
        self.tick();
        if !self.in_txn.replace(false) {
            return Ok(());
        }
        let mut conn = self.link().await;
        match sqlx::query("COMMIT").execute(&mut *conn).await {
            Ok(_) => Ok(()),
            Err(error) => Err(self.failed(&mut conn, error).await),
        }
    }

    pub(crate) async fn rollback(&self) -> Result<(), DbError> {
        self.tick();
        if !self.in_txn.replace(false) {
            return Ok(());
        }
        let mut conn = self.link().await;
        sqlx::query("ROLLBACK").execute(&mut *conn).await.map(|_| ()).map_err(db_error)
    }

    pub(crate) async fn db_read(
        &self,
        scope: &Scope,
        key: CustomerKey,
        lock: RowLock,
    ) -> Result<Option<FullCustomer>, DbError> {
        self.tick();
        let (column, value) = match key {
            CustomerKey::Id(id) => ("id", id),
            CustomerKey::InternalId(internal) => ("internal_id", internal),
        };
        let select = format!(
            "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE org_id = $1 AND env = $2 AND {column} = $3"
        );
        let mut conn = self.link().await;
        let own_txn = lock != RowLock::None && !self.in_txn.get();
        let result: Result<Option<FullCustomer>, sqlx::Error> = async {
            if own_txn {
                sqlx::query("BEGIN").execute(&mut *conn).await?;
            }
            if lock != RowLock::None {
                // Wait for the lock first; then read in a fresh statement, which
                // sees what was committed while this one waited.
                let locking = format!(
                    "SELECT 1 FROM customers WHERE org_id = $1 AND env = $2 AND {column} = $3{}",
                    lock_clause(lock)
                );
                sqlx::query(AssertSqlSafe(locking))
                    .bind(&scope.org_id)
                    .bind(scope.env.as_str())
                    .bind(&value)
                    .fetch_optional(&mut *conn)
                    .await?;
            }
            let row = sqlx::query(AssertSqlSafe(select))
                .bind(&scope.org_id)
                .bind(scope.env.as_str())
                .bind(&value)
                .fetch_optional(&mut *conn)
                .await?;
            let full = match row {
                Some(row) => Some(self.full(&mut conn, customer_of(&row)?).await?),
                None => None,
            };
            if own_txn {
                sqlx::query("COMMIT").execute(&mut *conn).await?;
            }
            Ok(full)
        }
        .await;
        match result {
            Ok(full) => Ok(full),
            Err(error) => {
                if own_txn {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                }
                Err(self.failed(&mut conn, error).await)
            }
        }
    }

    pub(crate) async fn cache_read(&self, key: &CacheKey) -> Result<CacheRead, CacheError> {
        let seq = self.tick();
        let now = self.shared.borrow().clock_ms;
        match self.redis() {
            Some(redis) => redis.read(key, seq, now).await.map_err(|e| self.cache_failed(e)),
            None => Ok(self.memory(|cache| cache.read(key, seq, now))),
        }
    }

    pub(crate) async fn cache_write(
        &self,
        key: &CacheKey,
        value: &FullCustomer,
        stamp: CacheStamp,
        mode: CacheWriteMode,
    ) -> Result<CacheWriteOutcome, CacheError> {
        self.tick();
        let now = self.shared.borrow().clock_ms;
        match self.redis() {
            Some(redis) => redis.write(key, value, stamp, mode, now).await.map_err(|e| self.cache_failed(e)),
            None => Ok(self.memory(|cache| cache.write(key, value, stamp, mode, now))),
        }
    }

    pub(crate) async fn cache_invalidate(&self, key: &CacheKey, at_ms: u64) -> Result<(), CacheError> {
        let seq = self.tick();
        let now = self.shared.borrow().clock_ms;
        match self.redis() {
            Some(redis) => redis.invalidate(key, seq, at_ms, now).await.map_err(|e| self.cache_failed(e)),
            None => {
                self.memory(|cache| cache.invalidate(key, seq, at_ms, now));
                Ok(())
            }
        }
    }

    pub(crate) async fn claim_key(&self, scope: &Scope, key: &str) -> Result<KeyClaim, CacheError> {
        self.tick();
        let now = self.shared.borrow().clock_ms;
        match self.redis() {
            Some(redis) => redis.claim_key(scope, key, now).await.map_err(|e| self.cache_failed(e)),
            None => Ok(self.memory(|cache| cache.claim_key(scope, key, now))),
        }
    }

    pub(crate) async fn release_key(&self, scope: &Scope, key: &str) -> Result<(), CacheError> {
        self.tick();
        match self.redis() {
            Some(redis) => redis.release_key(scope, key).await.map_err(|e| self.cache_failed(e)),
            None => {
                self.memory(|cache| cache.release_key(scope, key));
                Ok(())
            }
        }
    }

    /// `f` on the in-memory cache.
    fn memory<T>(&self, f: impl FnOnce(&mut Cache) -> T) -> T {
        match &mut self.shared.borrow_mut().cache {
            CacheStore::Memory(cache) => f(cache),
            CacheStore::Redis(_) => unreachable!("the cache is on Redis"),
        }
    }

    pub(crate) async fn deduct(
        &self,
        _scope: &Scope,
        internal_id: &str,
        feature_id: &str,
        value: i64,
        target: DeductTarget,
        key: Option<&str>,
    ) -> Result<DeductOutcome, BackendError> {
        match target {
            DeductTarget::Cache(key) => {
                self.tick();
                let now = self.shared.borrow().clock_ms;
                match self.redis() {
                    Some(redis) => Ok(redis
                        .deduct(&key, internal_id, feature_id, value, now)
                        .await
                        .map_err(|e| self.cache_failed(e))?),
                    None => Ok(self.memory(|cache| cache.deduct(&key, internal_id, feature_id, value, now))),
                }
            }
            DeductTarget::Db => {
                self.tick();
                Ok(match key {
                    None => DeductOutcome::Applied {
                        usage: self.upsert_usage(internal_id, feature_id, value, false).await?,
                    },
                    Some(key) => {
                        let now = self.shared.borrow().clock_ms;
                        self.keyed_add_usage(internal_id, feature_id, value, key, now).await?
                    }
                })
            }
        }
    }

    pub(crate) async fn sync_usage(
        &self,
        key: &CacheKey,
        internal_id: &str,
        feature_id: &str,
    ) -> Result<SyncOutcome, BackendError> {
        self.tick();
        let now = self.shared.borrow().clock_ms;
        let cached = match self.redis() {
            Some(redis) => {
                redis.usage(key, internal_id, feature_id, now).await.map_err(|e| self.cache_failed(e))?
            }
            None => self.memory(|cache| cache.usage(key, internal_id, feature_id, now)),
        };
        match cached {
            None => Ok(SyncOutcome::CacheMissing),
            Some(absolute) => {
                let usage = self.upsert_usage(internal_id, feature_id, absolute, true).await?;
                Ok(SyncOutcome::Written { usage })
            }
        }
    }
}
