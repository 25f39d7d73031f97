//! The boundary between the flows and the world: one [`Backend`] method per
//! named point of SPEC §5 (plus `begin`, which touches nothing shared).
//!
//! A backend value is one request's connection: it carries that request's
//! open transaction. The flows touch shared state only through it, so a
//! driver that controls the backend controls every interleaving.

pub mod dispatch;
pub mod mem;
pub mod ops;

use serde::Serialize;

use crate::model::{CustomerRow, FullCustomer, Product, Scope};
pub use dispatch::dispatch;
pub use ops::*;

/// A database statement's failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DbError {
    /// 23505 on the named constraint.
    #[error("23505 unique violation on {constraint}")]
    UniqueViolation { constraint: String },
    /// 23503: the referenced customer is not visible.
    #[error("23503 foreign key violation on {constraint}")]
    ForeignKeyViolation { constraint: String },
    /// 40P01: this transaction was chosen as a deadlock victim.
    #[error("40P01 deadlock detected")]
    Deadlock,
    /// An injected fault: the database did not answer.
    #[error("database unavailable")]
    Unavailable,
    /// Any other failure a real server reports (never produced by the model).
    #[error("database error {code}: {message}")]
    Failed { code: String, message: String },
}

impl DbError {
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::UniqueViolation { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StripeError {
    /// The call timed out; it may have succeeded.
    #[error("stripe request timed out")]
    Timeout,
    /// The idempotency key was used before with other parameters.
    #[error("idempotency key {key} was used with other parameters")]
    IdempotencyMismatch { key: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CacheError {
    #[error("cache unavailable")]
    Down,
}

/// One request's connection to the database, the cache and Stripe.
///
/// Errors inside an open transaction roll it back before they are
/// returned (the flows never continue an aborted transaction).
// The flows run on one thread per driver (the stepper, madsim's and tokio's
// current-thread runtimes), so the futures need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Backend {
    /// `BEGIN`: the statements that follow, up to `commit`, form one transaction.
    async fn begin(&self) -> Result<(), DbError>;
    /// `SELECT … FROM customers WHERE org, env, id` (optionally `FOR SHARE`/`FOR UPDATE`).
    async fn lookup_id(&self, scope: &Scope, id: &str, lock: RowLock)
        -> Result<Option<CustomerRow>, DbError>;
    /// The id-less customers whose email matches, case-insensitively.
    async fn lookup_email(&self, scope: &Scope, email: &str) -> Result<Vec<CustomerRow>, DbError>;
    async fn insert(&self, customer: NewCustomer, on_conflict: OnConflict) -> Result<InsertOutcome, DbError>;
    /// Sets the external id of an existing row; `None` when no row matched.
    async fn claim(
        &self,
        scope: &Scope,
        target: ClaimTarget,
        new_id: &str,
    ) -> Result<Option<CustomerRow>, DbError>;
    /// Fills the name and email where they are empty (and raises
    /// `stripe_wanted`); `None` when nothing changed.
    async fn fill_fields(
        &self,
        scope: &Scope,
        internal_id: &str,
        fill: Fill,
    ) -> Result<Option<CustomerRow>, DbError>;
    /// The catalog's default candidates (paid ones only with `force_paid_default`).
    async fn list_defaults(&self, scope: &Scope) -> Result<Vec<Product>, DbError>;
    /// Creates a Stripe customer; returns its id.
    async fn stripe_create(&self, idempotency_key: &str, params: StripeParams)
        -> Result<String, StripeError>;
    /// `UPDATE customers SET processor` (with `AND processor IS NULL` when
    /// `only_if_null`); whether a row changed.
    async fn set_processor(
        &self,
        scope: &Scope,
        internal_id: &str,
        stripe_id: &str,
        only_if_null: bool,
    ) -> Result<bool, DbError>;
    async fn attach_default(
        &self,
        scope: &Scope,
        product: NewCustomerProduct,
        on_conflict: OnConflict,
    ) -> Result<AttachOutcome, DbError>;
    async fn commit(&self) -> Result<(), DbError>;
    async fn rollback(&self) -> Result<(), DbError>;
    /// The full customer (row, products, balances) as the DB has it.
    async fn db_read(
        &self,
        scope: &Scope,
        key: CustomerKey,
        lock: RowLock,
    ) -> Result<Option<FullCustomer>, DbError>;
    async fn cache_read(&self, key: &CacheKey) -> Result<CacheRead, CacheError>;
    async fn cache_write(
        &self,
        key: &CacheKey,
        value: &FullCustomer,
        stamp: CacheStamp,
        mode: CacheWriteMode,
    ) -> Result<CacheWriteOutcome, CacheError>;
    async fn cache_invalidate(&self, key: &CacheKey) -> Result<(), CacheError>;
    async fn deduct(
        &self,
        scope: &Scope,
        internal_id: &str,
        feature_id: &str,
        value: i64,
        target: DeductTarget,
    ) -> Result<DeductOutcome, BackendError>;
    /// Writes the cached absolute usage of one feature to the DB.
    async fn sync_usage(
        &self,
        key: &CacheKey,
        internal_id: &str,
        feature_id: &str,
    ) -> Result<SyncOutcome, BackendError>;
    /// The virtual clock, in milliseconds.
    fn now_ms(&self) -> u64;
    /// A stamp taken just before a read whose result may be cached: the
    /// stale-write guard refuses the write if an invalidation came after it
    /// (the modelled server's `fetchTimeMs`).
    fn read_stamp(&self) -> CacheStamp;
}

/// Any backend failure, for the calls that span stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(untagged)]
pub enum BackendError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}
