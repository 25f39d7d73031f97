//! The operations of SPEC §5, declared once: each entry of
//! [`operations!`] makes an [`Op`] variant (the call as data, which drivers
//! park, apply, trace and compare), its named [`Point`], its one-line
//! summary for traces, and the typed method the flows call on a
//! [`Backend`] (a backend implements only [`Backend::perform`]). How to add
//! one is in ARCHITECTURE.md ("Adding an operation").

use serde::Serialize;

use crate::model::{CustomerRow, FullCustomer, Product, Scope};

use super::outcome::{opt, short_full, Outcome, Reply};
use super::types::*;
use super::{BackendError, CacheError, DbError, StripeError};

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
    /// Not in SPEC §5's list: a transaction-scoped advisory lock, for
    /// designs that serialise on a key rather than on a row.
    AdvisoryLock,
}

impl Point {
    pub const ALL: [Point; 17] = [
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
        Point::AdvisoryLock,
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
            Point::AdvisoryLock => "advisory_lock",
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

/// Declares every operation. An entry reads
///
/// ```text
/// /// what it does
/// method: Variant { field: Type, … } -> Answer, at Some(Point::…), says "trace line";
/// ```
///
/// and makes `Op::Variant { field, … }`, `Op::point`, the line of
/// `Op::summary` (an expression over the fields, by reference), and
/// `Backend::method(field: impl Into<Type>, …) -> Answer`.
macro_rules! operations {
    ($(
        $(#[doc = $doc:literal])*
        $method:ident: $variant:ident $({ $($field:ident: $ty:ty),* $(,)? })? -> $answer:ty,
            at $point:expr, says $summary:expr;
    )*) => {
        /// One backend call, as data.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        #[serde(tag = "op", rename_all = "snake_case")]
        pub enum Op {
            $($(#[doc = $doc])* $variant $({ $($field: $ty),* })?,)*
        }

        impl Op {
            /// The named point this call stops at; `None` for `BEGIN`.
            pub fn point(&self) -> Option<Point> {
                match self {
                    $(Op::$variant { .. } => $point,)*
                }
            }

            /// One line for a trace: what the statement or call does.
            #[allow(unused_variables)]
            pub fn summary(&self) -> String {
                match self {
                    $(Op::$variant $({ $($field),* })? => $summary,)*
                }
            }
        }

        /// One request's connection to the database, the cache and Stripe.
        ///
        /// A backend implements [`Backend::perform`]: it performs an
        /// [`Op`] and answers an [`Outcome`]. Errors inside an open
        /// transaction roll it back before they are returned (the flows
        /// never continue an aborted transaction). The typed methods, one
        /// per operation, are what the flows call.
        // The flows run on one thread per driver (the stepper, madsim's and
        // tokio's current-thread runtimes), so the futures need not be `Send`.
        #[allow(async_fn_in_trait)]
        pub trait Backend {
            /// Performs one operation and answers it.
            async fn perform(&self, op: Op) -> Outcome;
            /// The virtual clock, in milliseconds.
            fn now_ms(&self) -> u64;
            /// The clock read for the stale-write guard alone (an
            /// invalidation's time): only a guard compares what it gives.
            fn guard_time_ms(&self) -> u64 {
                self.now_ms()
            }
            /// A stamp taken just before a read whose result may be cached:
            /// the stale-write guard refuses the write if an invalidation
            /// came after it (the modelled server's `fetchTimeMs`).
            fn read_stamp(&self) -> CacheStamp;

            $(
                $(#[doc = $doc])*
                async fn $method(&self $($(, $field: impl Into<$ty>)*)?) -> $answer {
                    let op = Op::$variant $({ $($field: $field.into()),* })?;
                    let outcome = self.perform(op).await;
                    assert!(
                        <$answer as Reply>::accepts(&outcome),
                        "{} was answered with {outcome:?}",
                        stringify!($method)
                    );
                    <$answer as Reply>::from_outcome(outcome)
                }
            )*
        }
    };
}

operations! {
    /// `BEGIN`: the statements that follow, up to `commit`, form one
    /// transaction. Not a named point: it touches nothing shared.
    begin: Begin -> Result<(), DbError>,
        at None, says "begin".into();
    /// `SELECT … FROM customers WHERE org, env, id` (optionally `FOR SHARE`/`FOR UPDATE`).
    lookup_id: LookupId { scope: Scope, id: String, lock: RowLock } -> Result<Option<CustomerRow>, DbError>,
        at Some(Point::LookupId), says format!("select customer id={id}{}", lock_suffix(*lock));
    /// The id-less customers whose email matches, case-insensitively.
    lookup_email: LookupEmail { scope: Scope, email: String } -> Result<Vec<CustomerRow>, DbError>,
        at Some(Point::LookupEmail),
        says format!("select id-less customers lower(email)={}", email.to_lowercase());
    /// `INSERT INTO customers`, with what to do on a taken unique key.
    insert: Insert { customer: NewCustomer, on_conflict: OnConflict } -> Result<InsertOutcome, DbError>,
        at Some(Point::Insert),
        says format!(
            "insert customer id={} email={}{}",
            opt(&customer.id),
            opt(&customer.email),
            conflict_suffix(*on_conflict)
        );
    /// Sets the external id of an existing row; `None` when no row matched.
    claim: Claim { scope: Scope, target: ClaimTarget, new_id: String } -> Result<Option<CustomerRow>, DbError>,
        at Some(Point::Claim),
        says match target {
            ClaimTarget::Row { internal_id } => format!("update set id={new_id} where internal_id={internal_id}"),
            ClaimTarget::IdlessEmail { email } => format!(
                "update set id={new_id} where id is null and lower(email)={}",
                email.to_lowercase()
            ),
        };
    /// Fills the name and email where they are empty (and raises
    /// `stripe_wanted`); `None` when nothing changed.
    fill_fields: FillFields { scope: Scope, internal_id: String, fill: Fill } -> Result<Option<CustomerRow>, DbError>,
        at Some(Point::FillFields),
        says format!(
            "fill empty name={} email={}{} of {internal_id}",
            opt(&fill.name),
            opt(&fill.email),
            if fill.stripe_wanted { " stripe_wanted" } else { "" }
        );
    /// The catalog's default candidates (paid ones only with `force_paid_default`).
    list_defaults: ListDefaults { scope: Scope } -> Result<Vec<Product>, DbError>,
        at Some(Point::ListDefaults), says "list default products".into();
    /// Creates a Stripe customer; returns its id.
    stripe_create: StripeCreate { idempotency_key: String, params: StripeParams } -> Result<String, StripeError>,
        at Some(Point::StripeCreate), says format!("stripe create customer key={idempotency_key}");
    /// Stripe's customer search by the `internal_id` metadata: the oldest
    /// match old enough to be indexed (a minute), if any.
    stripe_search: StripeSearch { internal_id: String } -> Result<Option<String>, StripeError>,
        at Some(Point::StripeCreate), says format!("stripe search customer internal_id={internal_id}");
    /// `UPDATE customers SET processor` (with `AND processor IS NULL` when
    /// `only_if_null`); whether a row changed.
    set_processor: SetProcessor { scope: Scope, internal_id: String, stripe_id: String, only_if_null: bool }
        -> Result<bool, DbError>,
        at Some(Point::SetProcessor),
        says format!(
            "update set processor={stripe_id} where internal_id={internal_id}{}",
            if *only_if_null { " and processor is null" } else { "" }
        );
    /// `INSERT INTO customer_products`, with what to do on a taken group.
    attach_default: AttachDefault { scope: Scope, product: NewCustomerProduct, on_conflict: OnConflict }
        -> Result<AttachOutcome, DbError>,
        at Some(Point::AttachDefault),
        says format!(
            "attach {} ({}) to {}{}",
            product.product_id,
            product.group,
            product.internal_customer_id,
            conflict_suffix(*on_conflict)
        );
    /// `COMMIT`.
    commit: Commit -> Result<(), DbError>,
        at Some(Point::Commit), says "commit".into();
    /// `ROLLBACK`: ends the transaction at the `commit` point (both end a
    /// transaction), undoing it.
    rollback: Rollback -> Result<(), DbError>,
        at Some(Point::Commit), says "rollback".into();
    /// The full customer (row, products, balances) as the DB has it.
    db_read: DbRead { scope: Scope, key: CustomerKey, lock: RowLock } -> Result<Option<FullCustomer>, DbError>,
        at Some(Point::DbRead),
        says {
            let key = match key {
                CustomerKey::Id(id) => format!("id={id}"),
                CustomerKey::InternalId(internal) => format!("internal_id={internal}"),
            };
            format!("read full customer {key}{}", lock_suffix(*lock))
        };
    /// The cached full customer, and a stamp for a later write.
    cache_read: CacheRead { key: CacheKey } -> Result<CacheRead, CacheError>,
        at Some(Point::CacheRead), says format!("cache get {key}");
    /// Caches a full customer (see [`CacheWriteMode`]).
    cache_write: CacheWrite { key: CacheKey, value: Box<FullCustomer>, stamp: CacheStamp, mode: CacheWriteMode }
        -> Result<CacheWriteOutcome, CacheError>,
        at Some(Point::CacheWrite),
        says {
            let mode = match mode {
                CacheWriteMode::Overwrite => "set".to_owned(),
                CacheWriteMode::SetIfAbsent => "set if absent".to_owned(),
                CacheWriteMode::Versioned => format!("set if absent at epoch {}", stamp.epoch),
            };
            format!("cache {mode} {key} = {}", short_full(value))
        };
    /// Deletes the cached customer, counts the invalidation and sets the guard.
    /// `at_ms` is the invalidating instance's clock (the guard's stamp).
    cache_invalidate: CacheInvalidate { key: CacheKey, at_ms: u64 } -> Result<(), CacheError>,
        at Some(Point::CacheInvalidate), says format!("cache delete {key}");
    /// Adds `value` of usage, in the cache or at the DB. At the DB, a
    /// `key` makes it count once: a key the balance has counted before
    /// adds nothing (`Duplicate`).
    deduct: Deduct {
        scope: Scope,
        internal_id: String,
        feature_id: String,
        value: i64,
        target: DeductTarget,
        key: Option<String>
    } -> Result<DeductOutcome, BackendError>,
        at Some(Point::Deduct),
        says {
            let mut text = match target {
                DeductTarget::Cache(key) => format!("deduct {value} {feature_id} of {internal_id} in cache {key}"),
                DeductTarget::Db => format!("update balances usage += {value} {feature_id} of {internal_id}"),
            };
            if let Some(key) = key {
                text.push_str(&format!(" unless key {key} was counted in the last 24 h"));
            }
            text
        };
    /// The idempotency middleware's claim of a request's key in the cache
    /// store (`SET … NX` for 24 h), before the handler runs.
    idempotency_claim: IdempotencyClaim { scope: Scope, key: String } -> Result<KeyClaim, CacheError>,
        at Some(Point::CacheWrite), says format!("claim idempotency key {key}");
    /// The middleware gives the key back after a failed request.
    idempotency_release: IdempotencyRelease { scope: Scope, key: String } -> Result<(), CacheError>,
        at Some(Point::CacheInvalidate), says format!("release idempotency key {key}");
    /// `pg_advisory_xact_lock` on `key` within `scope`: held until the
    /// transaction ends (outside one, released at once); waits while
    /// another transaction holds it.
    advisory_lock: AdvisoryLock { scope: Scope, key: String } -> Result<(), DbError>,
        at Some(Point::AdvisoryLock), says format!("advisory lock {key}");
    /// Writes the cached absolute usage of one feature to the DB.
    sync_usage: SyncUsage { key: CacheKey, internal_id: String, feature_id: String }
        -> Result<SyncOutcome, BackendError>,
        at Some(Point::SyncUsage), says format!("sync {feature_id} usage of {internal_id} from cache {key} to db");
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

impl Op {
    /// What the caller hears when this operation took effect but its
    /// answer was lost (the `lost_response` fault): a timeout from the
    /// service it went to.
    pub fn timeout(&self) -> Outcome {
        match self {
            Op::StripeCreate { .. } | Op::StripeSearch { .. } => {
                Outcome::StripeError { error: StripeError::Timeout }
            }
            Op::CacheRead { .. }
            | Op::CacheWrite { .. }
            | Op::CacheInvalidate { .. }
            | Op::IdempotencyClaim { .. }
            | Op::IdempotencyRelease { .. }
            | Op::Deduct { target: DeductTarget::Cache(_), .. } => {
                Outcome::CacheError { error: CacheError::Timeout }
            }
            _ => Outcome::DbError { error: DbError::Timeout },
        }
    }

    /// The cache key this operation touches, if it touches the cache.
    pub fn cache_key(&self) -> Option<&CacheKey> {
        match self {
            Op::CacheRead { key } | Op::CacheWrite { key, .. } | Op::CacheInvalidate { key, .. } => Some(key),
            Op::Deduct { target: DeductTarget::Cache(key), .. } | Op::SyncUsage { key, .. } => Some(key),
            _ => None,
        }
    }
}
