//! The values operations carry and answer with: row locks, conflict
//! handling, new rows, cache keys and stamps, usage targets, Stripe
//! parameters; and the unique indexes a strategy's schema has.

use serde::Serialize;

use crate::model::{
    CustomerProduct, CustomerRow, DefaultScope, FullCustomer, Metadata, ProductStatus, Scope,
};

/// The unique indexes beyond `(org_id, env, id)`, which every schema has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Constraints {
    /// `(org_id, env, lower(email)) WHERE id IS NULL AND email <> ''`.
    pub idless_email_unique: bool,
    /// `customer_products (internal_customer_id, group)`.
    pub product_group_unique: bool,
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
    pub stripe_wanted: bool,
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

/// What a `fill_fields` update may set: the name and email where they are
/// empty, and `stripe_wanted` where it is false.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Fill {
    pub name: Option<String>,
    pub email: Option<String>,
    pub stripe_wanted: bool,
}

impl Fill {
    /// Whether applying this to `row` would change it.
    pub fn changes(&self, row: &CustomerRow) -> bool {
        (self.name.is_some() && crate::model::is_blank(&row.name))
            || (self.email.is_some() && crate::model::is_blank(&row.email))
            || (self.stripe_wanted && !row.stripe_wanted)
    }

    pub fn apply(&self, row: &mut CustomerRow) {
        if let Some(name) = self.name.as_ref().filter(|_| crate::model::is_blank(&row.name)) {
            row.name = Some(name.clone());
        }
        if let Some(email) = self.email.as_ref().filter(|_| crate::model::is_blank(&row.email)) {
            row.email = Some(email.clone());
        }
        row.stripe_wanted |= self.stripe_wanted;
    }
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
    /// The reading app instance's clock at the read (the modelled server's
    /// `fetchTimeMs`); instances' clocks may be skewed.
    pub time_ms: u64,
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
    /// The deduction's idempotency key was counted less than the
    /// idempotency window (24 h) before: nothing was added; the usage as it
    /// is.
    Duplicate { usage: i64 },
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

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.scope, self.id)
    }
}

impl From<&CacheKey> for CacheKey {
    fn from(key: &CacheKey) -> CacheKey {
        key.clone()
    }
}

/// The idempotency middleware's claim of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyClaim {
    /// The key was free and is now this request's.
    Claimed,
    /// Another request holds the key (within its 24 h).
    Taken,
}
