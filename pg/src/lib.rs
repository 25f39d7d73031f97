//! The `pg` backend: the flows' operations as SQL over sqlx, against a real
//! PostgreSQL server, one connection per request. The cache beside it is
//! the `mem` backend's in-memory model or a real Redis server (`cache`);
//! Stripe is the in-memory model.
//!
//! Every statement is written so that Postgres takes the locks the `mem`
//! model takes: `ON CONFLICT … DO UPDATE` sets a non-key column (so it locks
//! `FOR NO KEY UPDATE`, not `FOR UPDATE`), a locked full read first takes
//! the row lock and then reads in a fresh statement (so it sees what was
//! committed while it waited), and a failed statement inside a transaction
//! rolls the transaction back at once.

pub mod cache;
mod rows;
pub mod schema;
mod statements;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use cache::{CacheSnapshot, CacheStore, RedisCache, RedisError};
use cusim::backend::mem::ids::IdGen;
use cusim::backend::mem::{Fault, IsolationBreach, Stripe};
use cusim::backend::*;
use cusim::model::FullCustomer;
use cusim::model::Scope;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Postgres};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

/// What the connections of one run share: the cache, Stripe, the id
/// generator and the clocks.
#[derive(Debug)]
pub struct Services {
    pub cache: CacheStore,
    /// The first command the Redis cache failed that no fault explains (the
    /// server died, say): the flows saw the cache as down, and the run's
    /// driver must end the run with this error.
    pub cache_failure: Option<String>,
    pub stripe: Stripe,
    pub ids: IdGen,
    pub clock_ms: u64,
    /// Logical time: operations so far (stamps cache reads).
    pub seq: u64,
    /// Which request inserted each customer: `(internal_id, request)`.
    pub inserted: Vec<(String, usize)>,
    /// The schema's unique indexes (to name an `ON CONFLICT` target only
    /// where one exists).
    pub constraints: Constraints,
    /// Statements that touched a customer of another `(org, env)` than
    /// their request's, as Postgres's rows show them.
    pub breaches: Vec<IsolationBreach>,
}

pub type Shared = Rc<RefCell<Services>>;

/// The cache of `shared` as the model keeps it, at the shared clock.
pub async fn cache_snapshot(shared: &Shared) -> Result<CacheSnapshot, RedisError> {
    let (redis, now_ms) = {
        let services = shared.borrow();
        match &services.cache {
            CacheStore::Memory(cache) => return Ok(CacheSnapshot::of(cache, services.clock_ms)),
            CacheStore::Redis(redis) => (redis.clone(), services.clock_ms),
        }
    };
    redis.snapshot(now_ms).await
}

/// The live cache entries of `shared` at the shared clock, by key.
pub async fn cache_entries(shared: &Shared) -> Result<Vec<(CacheKey, FullCustomer)>, RedisError> {
    Ok(cache_snapshot(shared).await?.into_entries())
}

/// Evicts `key` from the cache of `shared` (a real `DEL` on Redis).
pub async fn cache_evict(shared: &Shared, key: &CacheKey) -> Result<(), RedisError> {
    let redis = match &mut shared.borrow_mut().cache {
        CacheStore::Memory(cache) => {
            cache.evict(key);
            return Ok(());
        }
        CacheStore::Redis(redis) => redis.clone(),
    };
    redis.evict(key).await
}

/// Fresh services for one run against a schema with `constraints`, with
/// the in-memory cache.
pub fn services(seed: u64, constraints: Constraints) -> Shared {
    services_with(seed, constraints, CacheStore::default())
}

/// Fresh services for one run, with the cache `cache`.
pub fn services_with(seed: u64, constraints: Constraints, cache: CacheStore) -> Shared {
    Rc::new(RefCell::new(Services {
        cache,
        cache_failure: None,
        stripe: Stripe::default(),
        ids: IdGen::new(seed),
        clock_ms: 0,
        seq: 0,
        inserted: Vec::new(),
        constraints,
        breaches: Vec::new(),
    }))
}

/// Sets a connection's cut cache for as long as it lives.
struct CutWhile<'c>(&'c RefCell<Option<RedisCache>>);

impl<'c> CutWhile<'c> {
    fn new(slot: &'c RefCell<Option<RedisCache>>, cut: RedisCache) -> CutWhile<'c> {
        *slot.borrow_mut() = Some(cut);
        CutWhile(slot)
    }
}

impl Drop for CutWhile<'_> {
    fn drop(&mut self) {
        self.0.borrow_mut().take();
    }
}

/// The database connection a [`PgConn`] runs on: its own, or one lent by
/// a pool (`cusim serve`).
enum Link {
    Own(PgConnection),
    Pooled(PoolConnection<Postgres>),
}

impl std::ops::Deref for Link {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            Link::Own(conn) => conn,
            Link::Pooled(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for Link {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Link::Own(conn) => conn,
            Link::Pooled(conn) => conn,
        }
    }
}

/// One request's connection.
pub struct PgConn {
    /// `None` only once [`PgConn::into_connection`] has taken it.
    conn: Mutex<Option<Link>>,
    in_txn: Cell<bool>,
    shared: Shared,
    /// The request this connection serves.
    request: usize,
    /// How far the clock of the app instance it serves is off.
    skew_ms: Cell<i64>,
    /// While a `cache_down` fault is applied on Redis: the cache reached
    /// through a connection the server has closed.
    cut: RefCell<Option<RedisCache>>,
}

use rows::db_error;
pub use rows::{customer_of, default_scope_text};

impl PgConn {
    /// A connection for request number `request`.
    pub async fn connect(
        options: &PgConnectOptions,
        shared: Shared,
        request: usize,
    ) -> Result<PgConn, sqlx::Error> {
        let conn = PgConnection::connect_with(options).await?;
        Ok(PgConn::over(conn, shared, request))
    }

    /// Request number `request` on `conn`, a connection of its own (one a
    /// replay kept from an earlier run, say).
    pub fn over(conn: PgConnection, shared: Shared, request: usize) -> PgConn {
        PgConn::on(Link::Own(conn), shared, request)
    }

    /// The connection back, to serve again: when it is its own (not a
    /// pool's) and has no transaction open, so it holds no lock (the flows
    /// take advisory locks for a transaction only).
    pub fn into_connection(mut self) -> Option<PgConnection> {
        if self.in_txn.get() {
            return None;
        }
        match self.conn.get_mut().take() {
            Some(Link::Own(conn)) => Some(conn),
            _ => None,
        }
    }

    /// Request number `request` on a connection lent by a pool. The
    /// connection goes back to the pool when this is dropped, unless a
    /// transaction is still open on it (the request was cut short): then
    /// it is closed, and the server rolls the transaction back.
    pub fn pooled(conn: PoolConnection<Postgres>, shared: Shared, request: usize) -> PgConn {
        PgConn::on(Link::Pooled(conn), shared, request)
    }

    fn on(link: Link, shared: Shared, request: usize) -> PgConn {
        PgConn {
            conn: Mutex::new(Some(link)),
            in_txn: Cell::new(false),
            shared,
            request,
            skew_ms: Cell::new(0),
            cut: RefCell::new(None),
        }
    }

    /// The database connection, for one statement or a few.
    async fn link(&self) -> MappedMutexGuard<'_, PgConnection> {
        MutexGuard::map(self.conn.lock().await, |link| {
            &mut **link.as_mut().expect("a connection not given back")
        })
    }

    /// Serves an app instance whose clock is `skew_ms` off.
    pub fn set_skew(&self, skew_ms: i64) {
        self.skew_ms.set(skew_ms);
    }

    /// The connection itself (for reading back state outside the flows).
    pub async fn raw(&self) -> MappedMutexGuard<'_, PgConnection> {
        self.link().await
    }

    /// This connection's backend process id (to find it in `pg_stat_activity`).
    pub async fn backend_pid(&self) -> Result<i32, sqlx::Error> {
        let mut conn = self.link().await;
        sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *conn).await
    }

    /// Performs `op` with `fault` injected as the model injects it: a
    /// database fault fails the statement and rolls its transaction back,
    /// a cache fault answers `CACHE_DOWN` without touching the cache (on
    /// Redis: the operation is sent on a connection the server has
    /// closed), and a lost response performs the operation but answers a
    /// timeout (on Redis: the script ran, its reply is dropped).
    pub async fn apply(&self, op: &Op, fault: Option<Fault>) -> Outcome {
        match fault.filter(|f| f.applies_to_op(op)) {
            None => self.perform(op.clone()).await,
            Some(Fault::DbError) => {
                self.tick();
                self.roll_back_open(&mut *self.link().await).await;
                Outcome::DbError { error: DbError::Unavailable }
            }
            Some(Fault::CacheDown) => {
                let Some(redis) = self.shared.borrow().cache.redis() else {
                    self.tick();
                    return Outcome::CacheError { error: CacheError::Down };
                };
                let down = Outcome::CacheError { error: CacheError::Down };
                let cut = match redis.cut().await {
                    Ok(cut) => cut,
                    Err(error) => {
                        self.tick();
                        self.cache_failed(RedisError(format!(
                            "cannot cut a connection for cache_down: {error}"
                        )));
                        return down;
                    }
                };
                // Cleared when the operation ends, also if its future is dropped.
                let _cut = CutWhile::new(&self.cut, cut);
                let outcome = self.perform(op.clone()).await;
                drop(_cut);
                if outcome != down {
                    let what =
                        format!("{} on a closed connection answered {}", op.summary(), outcome.summary());
                    self.cache_failed(RedisError(what));
                }
                outcome
            }
            Some(Fault::LostResponse) => {
                self.perform(op.clone()).await;
                let timeout = op.timeout();
                if matches!(timeout, Outcome::DbError { .. }) {
                    self.roll_back_open(&mut *self.link().await).await;
                }
                timeout
            }
        }
    }

    /// The Redis cache this connection's next command goes to: the cut one
    /// while a `cache_down` fault is applied; `None` for the in-memory cache.
    fn redis(&self) -> Option<RedisCache> {
        match &*self.cut.borrow() {
            Some(cut) => Some(cut.clone()),
            None => self.shared.borrow().cache.redis(),
        }
    }

    /// A Redis command failed: the flows see the cache down. Unless a
    /// `cache_down` fault explains it, the run records the failure, and
    /// its driver ends the run with it.
    fn cache_failed(&self, error: RedisError) -> CacheError {
        if self.cut.borrow().is_none() {
            let mut shared = self.shared.borrow_mut();
            if shared.cache_failure.is_none() {
                shared.cache_failure = Some(format!("request {}: Redis failed: {error}", self.request));
            }
        }
        CacheError::Down
    }

    /// Whether this connection has a transaction open.
    pub fn in_transaction(&self) -> bool {
        self.in_txn.get()
    }

    fn tick(&self) -> u64 {
        let mut shared = self.shared.borrow_mut();
        let seq = shared.seq;
        shared.seq += 1;
        seq
    }

    /// A statement failed: wait until the server is ready for the next,
    /// and inside a transaction roll it back now. Postgres sends the error
    /// before it aborts the failed statement's transaction and lets go of
    /// its locks (`EmitErrorReport` comes before `AbortCurrentTransaction`
    /// in `PostgresMain`); answered at the error, a statement another
    /// session sends next could find the row still locked by it and wait,
    /// where the model, whose failure is one step, has it fail at once.
    /// The server is ready only once the abort is done.
    async fn failed(&self, conn: &mut PgConnection, error: sqlx::Error) -> DbError {
        let _ = conn.ping().await;
        self.roll_back_open(conn).await;
        db_error(error)
    }

    /// Ends the open transaction, if there is one, by rolling it back.
    async fn roll_back_open(&self, conn: &mut PgConnection) {
        if self.in_txn.replace(false) {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        }
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        if let (true, Some(Link::Pooled(conn))) = (self.in_txn.get(), self.conn.get_mut()) {
            conn.close_on_drop();
        }
    }
}

impl Backend for PgConn {
    async fn perform(&self, op: Op) -> Outcome {
        let touched = match &op {
            Op::Claim { scope, target: ClaimTarget::Row { internal_id }, .. } => {
                Some((scope.clone(), internal_id.clone(), Point::Claim))
            }
            Op::AttachDefault { scope, product, .. } => {
                Some((scope.clone(), product.internal_customer_id.clone(), Point::AttachDefault))
            }
            Op::Deduct { scope, internal_id, target: DeductTarget::Db, .. } => {
                Some((scope.clone(), internal_id.clone(), Point::Deduct))
            }
            Op::SyncUsage { key, internal_id, .. } => {
                Some((key.scope.clone(), internal_id.clone(), Point::Deduct))
            }
            _ => None,
        };
        let touched_scope = match &touched {
            Some((_, internal_id, _)) => self.scope_of(internal_id).await,
            None => None,
        };
        let outcome = self.perform_op(op).await;
        let reached_db = !matches!(
            outcome,
            Outcome::Sync { outcome: SyncOutcome::CacheMissing }
                | Outcome::DbError { .. }
                | Outcome::CacheError { .. }
        );
        if let (Some((scope, _, point)), Some(found), true) = (touched, touched_scope, reached_db) {
            if found != scope {
                let breach = IsolationBreach {
                    request: self.request,
                    request_scope: scope,
                    touched_scope: found,
                    point,
                };
                self.shared.borrow_mut().breaches.push(breach);
            }
        }
        outcome
    }

    /// The shared clock, skewed as this connection's app instance is.
    fn now_ms(&self) -> u64 {
        self.shared.borrow().clock_ms.saturating_add_signed(self.skew_ms.get())
    }

    fn read_stamp(&self) -> CacheStamp {
        CacheStamp { seq: self.shared.borrow().seq, epoch: 0, time_ms: self.now_ms() }
    }
}

impl PgConn {
    /// The `(org, env)` of customer `internal_id`, as this connection sees it.
    async fn scope_of(&self, internal_id: &str) -> Option<Scope> {
        let mut conn = self.link().await;
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT org_id, env FROM customers WHERE internal_id = $1")
                .bind(internal_id)
                .fetch_optional(&mut *conn)
                .await
                .ok()
                .flatten();
        row.map(|(org_id, env)| Scope { org_id, env: rows::env_of(&env) })
    }

    async fn perform_op(&self, op: Op) -> Outcome {
        match op {
            Op::Begin => self.begin().await.into_outcome(),
            Op::LookupId { scope, id, lock } => self.lookup_id(&scope, &id, lock).await.into_outcome(),
            Op::LookupEmail { scope, email } => self.lookup_email(&scope, &email).await.into_outcome(),
            Op::Insert { customer, on_conflict } => self.insert(customer, on_conflict).await.into_outcome(),
            Op::Claim { scope, target, new_id } => self.claim(&scope, target, &new_id).await.into_outcome(),
            Op::FillFields { scope, internal_id, fill } => {
                self.fill_fields(&scope, &internal_id, fill).await.into_outcome()
            }
            Op::ListDefaults { scope } => self.list_defaults(&scope).await.into_outcome(),
            Op::StripeCreate { idempotency_key, params } => {
                self.stripe_create(&idempotency_key, params).await.into_outcome()
            }
            Op::StripeSearch { internal_id } => {
                self.tick();
                let shared = self.shared.borrow();
                Outcome::StripeFound { stripe_id: shared.stripe.search(&internal_id, shared.clock_ms) }
            }
            Op::SetProcessor { scope, internal_id, stripe_id, only_if_null } => {
                self.set_processor(&scope, &internal_id, &stripe_id, only_if_null).await.into_outcome()
            }
            Op::AttachDefault { scope, product, on_conflict } => {
                self.attach_default(&scope, product, on_conflict).await.into_outcome()
            }
            Op::AdvisoryLock { scope, key } => self.advisory_lock(&scope, &key).await.into_outcome(),
            Op::Commit => self.commit().await.into_outcome(),
            Op::Rollback => self.rollback().await.into_outcome(),
            Op::DbRead { scope, key, lock } => self.db_read(&scope, key, lock).await.into_outcome(),
            Op::CacheRead { key } => self.cache_read(&key).await.into_outcome(),
            Op::CacheWrite { key, value, stamp, mode } => {
                self.cache_write(&key, &value, stamp, mode).await.into_outcome()
            }
            Op::CacheInvalidate { key, at_ms } => self.cache_invalidate(&key, at_ms).await.into_outcome(),
            Op::Deduct { scope, internal_id, feature_id, value, target, key } => self
                .deduct(&scope, &internal_id, &feature_id, value, target, key.as_deref())
                .await
                .into_outcome(),
            Op::IdempotencyClaim { scope, key } => self.claim_key(&scope, &key).await.into_outcome(),
            Op::IdempotencyRelease { scope, key } => self.release_key(&scope, &key).await.into_outcome(),
            Op::SyncUsage { key, internal_id, feature_id } => {
                self.sync_usage(&key, &internal_id, &feature_id).await.into_outcome()
            }
        }
    }
}
