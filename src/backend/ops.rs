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
        fill: Fill,
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

fn lock_suffix(lock: RowLock) -> &'static str {
    match lock {
        RowLock::None => "",
        RowLock::ForShare => " for share",
        RowLock::ForUpdate => " for update",
    }
}

fn conflict_suffix(on_conflict: OnConflict) -> &'static str {
    match on_conflict {
        OnConflict::Error => "",
        OnConflict::DoNothing => " on conflict do nothing",
        OnConflict::ReturnExisting => " on conflict return existing",
    }
}

fn opt(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("null")
}

fn short_full(full: &FullCustomer) -> String {
    let products: Vec<&str> = full.products.iter().map(|p| p.product_id.as_str()).collect();
    let usage: Vec<String> =
        full.balances.iter().filter(|(_, b)| b.usage != 0).map(|(f, b)| format!("{f}:{}", b.usage)).collect();
    let mut text = format!(
        "{} id={} products=[{}]",
        full.customer.internal_id,
        opt(&full.customer.id),
        products.join(",")
    );
    if let Some(processor) = &full.customer.processor {
        text.push_str(&format!(" processor={processor}"));
    }
    if !usage.is_empty() {
        text.push_str(&format!(" usage=[{}]", usage.join(",")));
    }
    text
}

fn short_row(row: &CustomerRow) -> String {
    let mut text = format!("{} id={}", row.internal_id, opt(&row.id));
    if let Some(processor) = &row.processor {
        text.push_str(&format!(" processor={processor}"));
    }
    text
}

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.scope, self.id)
    }
}

impl Op {
    /// One line for a trace: what the statement or call does.
    pub fn summary(&self) -> String {
        match self {
            Op::Begin => "begin".into(),
            Op::Commit => "commit".into(),
            Op::Rollback => "rollback".into(),
            Op::LookupId { id, lock, .. } => format!("select customer id={id}{}", lock_suffix(*lock)),
            Op::LookupEmail { email, .. } => {
                format!("select id-less customers lower(email)={}", email.to_lowercase())
            }
            Op::Insert { customer, on_conflict } => format!(
                "insert customer id={} email={}{}",
                opt(&customer.id),
                opt(&customer.email),
                conflict_suffix(*on_conflict)
            ),
            Op::Claim { target, new_id, .. } => match target {
                ClaimTarget::Row { internal_id } => {
                    format!("update set id={new_id} where internal_id={internal_id}")
                }
                ClaimTarget::IdlessEmail { email } => {
                    format!(
                        "update set id={new_id} where id is null and lower(email)={}",
                        email.to_lowercase()
                    )
                }
            },
            Op::FillFields { internal_id, fill, .. } => format!(
                "fill empty name={} email={}{} of {internal_id}",
                opt(&fill.name),
                opt(&fill.email),
                if fill.stripe_wanted { " stripe_wanted" } else { "" }
            ),
            Op::ListDefaults { .. } => "list default products".into(),
            Op::StripeCreate { idempotency_key, .. } => {
                format!("stripe create customer key={idempotency_key}")
            }
            Op::SetProcessor { internal_id, stripe_id, only_if_null, .. } => format!(
                "update set processor={stripe_id} where internal_id={internal_id}{}",
                if *only_if_null { " and processor is null" } else { "" }
            ),
            Op::AttachDefault { product, on_conflict, .. } => format!(
                "attach {} ({}) to {}{}",
                product.product_id,
                product.group,
                product.internal_customer_id,
                conflict_suffix(*on_conflict)
            ),
            Op::DbRead { key, lock, .. } => {
                let key = match key {
                    CustomerKey::Id(id) => format!("id={id}"),
                    CustomerKey::InternalId(internal) => format!("internal_id={internal}"),
                };
                format!("read full customer {key}{}", lock_suffix(*lock))
            }
            Op::CacheRead { key } => format!("cache get {key}"),
            Op::CacheWrite { key, value, stamp, mode } => {
                let mode = match mode {
                    CacheWriteMode::Overwrite => "set".to_owned(),
                    CacheWriteMode::SetIfAbsent => "set if absent".to_owned(),
                    CacheWriteMode::Versioned => format!("set if absent at epoch {}", stamp.epoch),
                };
                format!("cache {mode} {key} = {}", short_full(value))
            }
            Op::CacheInvalidate { key } => format!("cache delete {key}"),
            Op::Deduct { internal_id, feature_id, value, target, .. } => match target {
                DeductTarget::Cache(key) => {
                    format!("deduct {value} {feature_id} of {internal_id} in cache {key}")
                }
                DeductTarget::Db => format!("update balances usage += {value} {feature_id} of {internal_id}"),
            },
            Op::SyncUsage { key, internal_id, feature_id } => {
                format!("sync {feature_id} usage of {internal_id} from cache {key} to db")
            }
        }
    }
}

impl Outcome {
    /// One line for a trace: what came back.
    pub fn summary(&self) -> String {
        match self {
            Outcome::Done => "ok".into(),
            Outcome::Row { row: None } => "no row".into(),
            Outcome::Row { row: Some(row) } => short_row(row),
            Outcome::Rows { rows } => {
                let rows: Vec<String> = rows.iter().map(short_row).collect();
                format!("[{}]", rows.join("; "))
            }
            Outcome::Insert { outcome: InsertOutcome::Inserted(row) } => {
                format!("inserted {}", short_row(row))
            }
            Outcome::Insert { outcome: InsertOutcome::Skipped } => "conflict: nothing inserted".into(),
            Outcome::Insert { outcome: InsertOutcome::Existing(row) } => {
                format!("conflict: existing {}", short_row(row))
            }
            Outcome::Products { products } => {
                let products: Vec<String> = products
                    .iter()
                    .map(|p| format!("{}({},{:?})", p.id, p.group, p.kind).to_lowercase())
                    .collect();
                format!("[{}]", products.join(", "))
            }
            Outcome::StripeCustomer { stripe_id } => stripe_id.clone(),
            Outcome::Updated { updated: true } => "updated".into(),
            Outcome::Updated { updated: false } => "no row updated".into(),
            Outcome::Attach { outcome: AttachOutcome::Attached(product) } => {
                format!("attached {}", product.id)
            }
            Outcome::Attach { outcome: AttachOutcome::Skipped } => "conflict: nothing attached".into(),
            Outcome::Full { customer: None } => "not found".into(),
            Outcome::Full { customer: Some(full) } => short_full(full),
            Outcome::Cache { read } => match &read.entry {
                None => format!("miss (epoch {})", read.stamp.epoch),
                Some(full) => format!("hit {}", short_full(full)),
            },
            Outcome::CacheWrite { outcome: CacheWriteOutcome::Written } => "written".into(),
            Outcome::CacheWrite { outcome: CacheWriteOutcome::Exists } => "CACHE_EXISTS".into(),
            Outcome::CacheWrite { outcome: CacheWriteOutcome::Stale } => "STALE_WRITE".into(),
            Outcome::Deduct { outcome: DeductOutcome::Applied { usage } } => format!("usage now {usage}"),
            Outcome::Deduct { outcome: DeductOutcome::CacheMissing } => "no cache entry".into(),
            Outcome::Sync { outcome: SyncOutcome::Written { usage } } => format!("db usage set to {usage}"),
            Outcome::Sync { outcome: SyncOutcome::CacheMissing } => "no cache entry: nothing synced".into(),
            Outcome::DbError { error } => format!("error: {error}"),
            Outcome::StripeError { error } => format!("error: {error}"),
            Outcome::CacheError { error } => format!("error: {error}"),
        }
    }
}
