//! The answer to an [`Op`](super::Op), as data: one [`Outcome`] variant per
//! kind of answer, with its one-line summary for traces, and the
//! conversions between an operation's typed answer (`Result<T, E>`) and
//! its outcome ([`Reply`]).

use serde::Serialize;

use crate::model::{CustomerRow, FullCustomer, Product};

use super::types::*;
use super::{BackendError, CacheError, DbError, StripeError};

/// The answer to one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Done,
    Row { row: Option<CustomerRow> },
    Rows { rows: Vec<CustomerRow> },
    Insert { outcome: InsertOutcome },
    Products { products: Vec<Product> },
    StripeCustomer { stripe_id: String },
    StripeFound { stripe_id: Option<String> },
    Updated { updated: bool },
    Attach { outcome: AttachOutcome },
    Full { customer: Option<Box<FullCustomer>> },
    Cache { read: Box<CacheRead> },
    CacheWrite { outcome: CacheWriteOutcome },
    Deduct { outcome: DeductOutcome },
    KeyClaim { outcome: KeyClaim },
    Sync { outcome: SyncOutcome },
    DbError { error: DbError },
    StripeError { error: StripeError },
    CacheError { error: CacheError },
}

fn short_row(row: &CustomerRow) -> String {
    let mut text = format!("{} id={}", row.internal_id, opt(&row.id));
    if let Some(processor) = &row.processor {
        text.push_str(&format!(" processor={processor}"));
    }
    text
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
            Outcome::StripeFound { stripe_id: Some(stripe_id) } => format!("found {stripe_id}"),
            Outcome::StripeFound { stripe_id: None } => "none found".into(),
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
            Outcome::Deduct { outcome: DeductOutcome::Duplicate { usage } } => {
                format!("key counted before: usage stays {usage}")
            }
            Outcome::KeyClaim { outcome: KeyClaim::Claimed } => "claimed".into(),
            Outcome::KeyClaim { outcome: KeyClaim::Taken } => "taken".into(),
            Outcome::Sync { outcome: SyncOutcome::Written { usage } } => format!("db usage set to {usage}"),
            Outcome::Sync { outcome: SyncOutcome::CacheMissing } => "no cache entry: nothing synced".into(),
            Outcome::DbError { error } => format!("error: {error}"),
            Outcome::StripeError { error } => format!("error: {error}"),
            Outcome::CacheError { error } => format!("error: {error}"),
        }
    }
}

/// An operation's typed answer and its [`Outcome`]: `Result<T, E>` for
/// every `T: Payload` and `E: Failure`.
pub trait Reply: Sized {
    fn into_outcome(self) -> Outcome;
    /// Whether `outcome` is an answer of this kind.
    fn accepts(outcome: &Outcome) -> bool;
    /// The typed answer (`outcome` must be [accepted](Reply::accepts)).
    fn from_outcome(outcome: Outcome) -> Self;
}

/// What a successful operation returns, and how it fails: one kind of
/// [`Outcome`] each.
pub trait Carried: Sized {
    fn into_outcome(self) -> Outcome;
    fn is(outcome: &Outcome) -> bool;
    /// The value (`outcome` must be of this kind).
    fn take(outcome: Outcome) -> Self;
}

impl<T: Carried, E: Carried> Reply for Result<T, E> {
    #[inline]
    fn into_outcome(self) -> Outcome {
        match self {
            Ok(value) => value.into_outcome(),
            Err(error) => error.into_outcome(),
        }
    }

    #[inline]
    fn accepts(outcome: &Outcome) -> bool {
        T::is(outcome) || E::is(outcome)
    }

    #[inline]
    fn from_outcome(outcome: Outcome) -> Self {
        if T::is(&outcome) {
            Ok(T::take(outcome))
        } else {
            Err(E::take(outcome))
        }
    }
}

/// `impl Carried for $type`, carried in `Outcome::$variant { $field }`
/// (converted with `$wrap` and `$unwrap`).
macro_rules! carried {
    ($type:ty, $variant:ident { $field:ident }, $wrap:expr, $unwrap:expr) => {
        impl Carried for $type {
            #[inline]
            fn into_outcome(self) -> Outcome {
                Outcome::$variant { $field: $wrap(self) }
            }
            #[inline]
            fn is(outcome: &Outcome) -> bool {
                matches!(outcome, Outcome::$variant { .. })
            }
            #[inline]
            fn take(outcome: Outcome) -> Self {
                match outcome {
                    Outcome::$variant { $field } => $unwrap($field),
                    other => unreachable!("{} is not carried by {other:?}", stringify!($type)),
                }
            }
        }
    };
    ($type:ty, $variant:ident { $field:ident }) => {
        carried!($type, $variant { $field }, |v| v, |v| v);
    };
}

impl Carried for () {
    fn into_outcome(self) -> Outcome {
        Outcome::Done
    }
    fn is(outcome: &Outcome) -> bool {
        matches!(outcome, Outcome::Done)
    }
    fn take(_outcome: Outcome) -> Self {}
}

carried!(Option<CustomerRow>, Row { row });
carried!(Vec<CustomerRow>, Rows { rows });
carried!(InsertOutcome, Insert { outcome });
carried!(Vec<Product>, Products { products });
carried!(String, StripeCustomer { stripe_id });
carried!(Option<String>, StripeFound { stripe_id });
carried!(bool, Updated { updated });
carried!(AttachOutcome, Attach { outcome });
carried!(Option<FullCustomer>, Full { customer }, |c: Option<FullCustomer>| c.map(Box::new), |c: Option<
    Box<FullCustomer>,
>| c
    .map(|c| *c));
carried!(CacheRead, Cache { read }, Box::new, |r: Box<CacheRead>| *r);
carried!(CacheWriteOutcome, CacheWrite { outcome });
carried!(DeductOutcome, Deduct { outcome });
carried!(SyncOutcome, Sync { outcome });
carried!(KeyClaim, KeyClaim { outcome });
carried!(DbError, DbError { error });
carried!(StripeError, StripeError { error });
carried!(CacheError, CacheError { error });

/// A failure of either store, for the calls that span them.
impl Carried for BackendError {
    fn into_outcome(self) -> Outcome {
        match self {
            BackendError::Db(error) => Outcome::DbError { error },
            BackendError::Cache(error) => Outcome::CacheError { error },
        }
    }
    fn is(outcome: &Outcome) -> bool {
        matches!(outcome, Outcome::DbError { .. } | Outcome::CacheError { .. })
    }
    fn take(outcome: Outcome) -> Self {
        match outcome {
            Outcome::DbError { error } => BackendError::Db(error),
            Outcome::CacheError { error } => BackendError::Cache(error),
            other => unreachable!("not a backend failure: {other:?}"),
        }
    }
}

pub(super) fn opt(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("null")
}

/// A full customer in a few words, for traces.
pub(super) fn short_full(full: &FullCustomer) -> String {
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
