//! The boundary between the flows and the world. Operations are data
//! ([`Op`], declared once in [`ops`]); a [`Backend`] performs them and
//! answers an [`Outcome`]; the flows call the typed method each operation
//! declares (`ctx.db.lookup_id(…)`).
//!
//! A backend value is one request's connection: it carries that request's
//! open transaction. The flows touch shared state only through it, so a
//! driver that controls the backend controls every interleaving.

pub mod mem;
pub mod ops;
pub mod outcome;
pub mod types;

use serde::Serialize;

pub use ops::{Backend, Op, Point};
pub use outcome::{Carried, Outcome, Reply};
pub use types::*;

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
    /// The statement (or commit) reached the database, but its answer was
    /// lost: whether it took effect is unknown to the caller.
    #[error("database timed out")]
    Timeout,
    /// Any other failure a real server reports (never produced by the model).
    #[error("database error {code}: {message}")]
    Failed { code: String, message: String },
}

impl DbError {
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::UniqueViolation { .. })
    }

    /// Whether a real server's failure is the database going away rather
    /// than a statement's error: the connection broke (`client`: the
    /// driver's own errors), or Postgres refused or ended the session
    /// (SQLSTATE class 08 connection exception, class 53 insufficient
    /// resources, 57P01–57P03 shutdown). The model never produces one.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            DbError::Failed { code, .. } => {
                code == "client"
                    || code.starts_with("08")
                    || code.starts_with("53")
                    || matches!(code.as_str(), "57P01" | "57P02" | "57P03")
            }
            _ => false,
        }
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
    /// The command reached the cache, but its answer was lost.
    #[error("cache timed out")]
    Timeout,
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
