//! The operations of SPEC §5 as data: one [`Op`] per backend call, one
//! [`Outcome`] per answer. Drivers that park a request at its named point
//! (the stepper) carry these between the request and the model; traces
//! print them.

use serde::Serialize;

use crate::model::{
    CustomerProduct, CustomerRow, DefaultScope, FullCustomer, Metadata, Product, ProductStatus, Scope,
};

use super::{CacheError, DbError, StripeError};

/// A named point of SPEC §5: the place a request stops before it touches
/// shared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Point {
    LookupId,
    LookupEmail,
    Insert,
    Claim,
    /// Not in SPEC §5's list: the `UPDATE` that fills a customer's empty
    /// name or email. It touches shared state, so it gets a point of its own
    /// rather than hiding inside another.
    FillFields,
    ListDefaults,
    StripeCreate,
    SetProcessor,
    AttachDefault,
    Commit,
    DbRead,
    CacheRead,
    CacheWrite,
    CacheInvalidate,
    Deduct,
    SyncUsage,
}

impl Point {
    pub const ALL: [Point; 16] = [
        Point::LookupId,
        Point::LookupEmail,
        Point::Insert,
        Point::Claim,
        Point::FillFields,
        Point::ListDefaults,
        Point::StripeCreate,
        Point::SetProcessor,
        Point::AttachDefault,
        Point::Commit,
        Point::DbRead,
        Point::CacheRead,
        Point::CacheWrite,
        Point::CacheInvalidate,
        Point::Deduct,
        Point::SyncUsage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Point::LookupId => "lookup_id",
            Point::LookupEmail => "lookup_email",
            Point::Insert => "insert",
            Point::Claim => "claim",
            Point::FillFields => "fill_fields",
            Point::ListDefaults => "list_defaults",
            Point::StripeCreate => "stripe_create",
            Point::SetProcessor => "set_processor",
            Point::AttachDefault => "attach_default",
            Point::Commit => "commit",
            Point::DbRead => "db_read",
            Point::CacheRead => "cache_read",
            Point::CacheWrite => "cache_write",
            Point::CacheInvalidate => "cache_invalidate",
            Point::Deduct => "deduct",
            Point::SyncUsage => "sync_usage",
        }
    }

    pub fn parse(s: &str) -> Option<Point> {
        Point::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn is_db(self) -> bool {
        !matches!(self, Point::StripeCreate | Point::CacheRead | Point::CacheWrite | Point::CacheInvalidate)
    }

    pub fn is_cache(self) -> bool {
        matches!(self, Point::CacheRead | Point::CacheWrite | Point::CacheInvalidate)
    }
}

impl std::fmt::Display for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Row lock a `SELECT` takes (`FOR SHARE`, `FOR UPDATE`), or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowLock {
    None,
    ForShare,
    ForUpdate,
}

/// What an `INSERT` does when it meets a unique key that is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// Plain `INSERT`: 23505.
    Error,
    /// `ON CONFLICT DO NOTHING`.
    DoNothing,
    /// `ON CONFLICT … DO UPDATE` that changes nothing: returns (and locks) the existing row.
    ReturnExisting,
}

/// A customer about to be inserted; the model assigns `internal_id` and `created_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewCustomer {
    pub scope: Scope,
    pub id: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub fingerprint: Option<String>,
    pub metadata: Metadata,
    pub processor: Option<String>,
    pub default_scope: DefaultScope,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InsertOutcome {
    Inserted(CustomerRow),
    /// `ON CONFLICT DO NOTHING` met a taken key.
    Skipped,
    /// `ON CONFLICT … DO UPDATE` met this row (now locked by the caller).
    Existing(CustomerRow),
}

/// Which rows a claim `UPDATE` targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimTarget {
    /// `WHERE internal_id = $1`: the row read earlier, whatever it holds now.
    Row { internal_id: String },
    /// `WHERE id IS NULL AND lower(email) = lower($1)`: re-checked after any wait.
    IdlessEmail { email: String },
}

/// How a customer is looked up for a full read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerKey {
    Id(String),
    InternalId(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewCustomerProduct {
    pub internal_customer_id: String,
    pub product_id: String,
    pub group: String,
    pub status: ProductStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachOutcome {
    Attached(CustomerProduct),
    /// `ON CONFLICT DO NOTHING`: the group already has its product.
    Skipped,
}

/// The full-customer cache key: `(org, env, id)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct CacheKey {
    pub scope: Scope,
    pub id: String,
}

/// When a cache read happened, for the writes that follow it: `seq` is the
/// logical time of the read (the stale-write guard compares it), `epoch` the
/// key's invalidation count (versioned writes compare it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CacheStamp {
    pub seq: u64,
    pub epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheRead {
    pub entry: Option<FullCustomer>,
    pub stamp: CacheStamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheWriteMode {
    /// Set whatever is there (legacy's second half of check-then-set).
    Overwrite,
    /// Atomic set-if-absent (`CACHE_EXISTS` when present).
    SetIfAbsent,
    /// Set-if-absent, refused unless no invalidation happened since the
    /// stamp's read (an invalidation counter that never expires).
    Versioned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheWriteOutcome {
    Written,
    /// `CACHE_EXISTS`: the key was present; nothing written.
    Exists,
    /// `STALE_WRITE`: the key was invalidated after the stamp's read.
    Stale,
}

/// Where usage is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeductTarget {
    /// In the cached customer, to be synced to the DB later.
    Cache(CacheKey),
    /// Atomically at the source of truth: `usage = usage + $value`.
    Db,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeductOutcome {
    /// The usage after the deduction.
    Applied { usage: i64 },
    /// The cache held no entry for the customer.
    CacheMissing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncOutcome {
    /// The cached absolute usage written to the DB.
    Written { usage: i64 },
    /// The cache entry was gone: the sync is skipped.
    CacheMissing,
}

/// The Stripe customer create parameters that idempotency compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StripeParams {
    pub internal_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
}

/// One backend call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// `BEGIN`. Not a named point: it touches nothing shared.
    Begin,
    LookupId {
        scope: Scope,
        id: String,
        lock: RowLock,
    },
    LookupEmail {
        scope: Scope,
        email: String,
    },
    Insert {
        customer: NewCustomer,
        on_conflict: OnConflict,
    },
    Claim {
        scope: Scope,
        target: ClaimTarget,
        new_id: String,
    },
    FillFields {
        scope: Scope,
        internal_id: String,
        name: Option<String>,
        email: Option<String>,
    },
    ListDefaults {
        scope: Scope,
    },
    StripeCreate {
        idempotency_key: String,
        params: StripeParams,
    },
    SetProcessor {
        scope: Scope,
        internal_id: String,
        stripe_id: String,
        only_if_null: bool,
    },
    AttachDefault {
        scope: Scope,
        product: NewCustomerProduct,
        on_conflict: OnConflict,
    },
    Commit,
    /// `ROLLBACK`: ends the transaction at the `commit` point, undoing it.
    Rollback,
    DbRead {
        scope: Scope,
        key: CustomerKey,
        lock: RowLock,
    },
    CacheRead {
        key: CacheKey,
    },
    CacheWrite {
        key: CacheKey,
        value: Box<FullCustomer>,
        stamp: CacheStamp,
        mode: CacheWriteMode,
    },
    CacheInvalidate {
        key: CacheKey,
    },
    Deduct {
        scope: Scope,
        internal_id: String,
        feature_id: String,
        value: i64,
        target: DeductTarget,
    },
    SyncUsage {
        key: CacheKey,
        internal_id: String,
        feature_id: String,
    },
}

impl Op {
    /// The named point this call stops at; `None` for `BEGIN`. `ROLLBACK`
    /// ends a transaction as `COMMIT` does, so it shares `commit`'s point.
    pub fn point(&self) -> Option<Point> {
        Some(match self {
            Op::Begin => return None,
            Op::LookupId { .. } => Point::LookupId,
            Op::LookupEmail { .. } => Point::LookupEmail,
            Op::Insert { .. } => Point::Insert,
            Op::Claim { .. } => Point::Claim,
            Op::FillFields { .. } => Point::FillFields,
            Op::ListDefaults { .. } => Point::ListDefaults,
            Op::StripeCreate { .. } => Point::StripeCreate,
            Op::SetProcessor { .. } => Point::SetProcessor,
            Op::AttachDefault { .. } => Point::AttachDefault,
            Op::Commit | Op::Rollback => Point::Commit,
            Op::DbRead { .. } => Point::DbRead,
            Op::CacheRead { .. } => Point::CacheRead,
            Op::CacheWrite { .. } => Point::CacheWrite,
            Op::CacheInvalidate { .. } => Point::CacheInvalidate,
            Op::Deduct { .. } => Point::Deduct,
            Op::SyncUsage { .. } => Point::SyncUsage,
        })
    }
}

/// The answer to one [`Op`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Done,
    Row { row: Option<CustomerRow> },
    Rows { rows: Vec<CustomerRow> },
    Insert { outcome: InsertOutcome },
    Products { products: Vec<Product> },
    StripeCustomer { stripe_id: String },
    Updated { updated: bool },
    Attach { outcome: AttachOutcome },
    Full { customer: Option<Box<FullCustomer>> },
    Cache { read: Box<CacheRead> },
    CacheWrite { outcome: CacheWriteOutcome },
    Deduct { outcome: DeductOutcome },
    Sync { outcome: SyncOutcome },
    DbError { error: DbError },
    StripeError { error: StripeError },
    CacheError { error: CacheError },
}
