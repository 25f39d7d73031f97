//! The other direction of [`Op`]: performing an operation, given as data,
//! on any [`Backend`]. A driver that decides when operations run (the
//! Postgres lockstep replay) hands each one to a real backend this way.

use super::ops::*;
use super::{Backend, BackendError};

/// Performs `op` on `backend` and returns its answer as data.
pub async fn dispatch<B: Backend>(backend: &B, op: &Op) -> Outcome {
    fn db<T>(result: Result<T, super::DbError>, ok: impl FnOnce(T) -> Outcome) -> Outcome {
        result.map_or_else(|error| Outcome::DbError { error }, ok)
    }
    fn mixed<T>(result: Result<T, BackendError>, ok: impl FnOnce(T) -> Outcome) -> Outcome {
        match result {
            Ok(value) => ok(value),
            Err(BackendError::Db(error)) => Outcome::DbError { error },
            Err(BackendError::Cache(error)) => Outcome::CacheError { error },
        }
    }
    match op {
        Op::Begin => db(backend.begin().await, |()| Outcome::Done),
        Op::LookupId { scope, id, lock } => {
            db(backend.lookup_id(scope, id, *lock).await, |row| Outcome::Row { row })
        }
        Op::LookupEmail { scope, email } => {
            db(backend.lookup_email(scope, email).await, |rows| Outcome::Rows { rows })
        }
        Op::Insert { customer, on_conflict } => {
            db(backend.insert(customer.clone(), *on_conflict).await, |outcome| Outcome::Insert { outcome })
        }
        Op::Claim { scope, target, new_id } => {
            db(backend.claim(scope, target.clone(), new_id).await, |row| Outcome::Row { row })
        }
        Op::FillFields { scope, internal_id, fill } => {
            db(backend.fill_fields(scope, internal_id, fill.clone()).await, |row| Outcome::Row { row })
        }
        Op::ListDefaults { scope } => {
            db(backend.list_defaults(scope).await, |products| Outcome::Products { products })
        }
        Op::StripeCreate { idempotency_key, params } => {
            match backend.stripe_create(idempotency_key, params.clone()).await {
                Ok(stripe_id) => Outcome::StripeCustomer { stripe_id },
                Err(error) => Outcome::StripeError { error },
            }
        }
        Op::SetProcessor { scope, internal_id, stripe_id, only_if_null } => {
            db(backend.set_processor(scope, internal_id, stripe_id, *only_if_null).await, |updated| {
                Outcome::Updated { updated }
            })
        }
        Op::AttachDefault { scope, product, on_conflict } => {
            db(backend.attach_default(scope, product.clone(), *on_conflict).await, |outcome| {
                Outcome::Attach { outcome }
            })
        }
        Op::Commit => db(backend.commit().await, |()| Outcome::Done),
        Op::Rollback => db(backend.rollback().await, |()| Outcome::Done),
        Op::DbRead { scope, key, lock } => db(backend.db_read(scope, key.clone(), *lock).await, |customer| {
            Outcome::Full { customer: customer.map(Box::new) }
        }),
        Op::CacheRead { key } => match backend.cache_read(key).await {
            Ok(read) => Outcome::Cache { read: Box::new(read) },
            Err(error) => Outcome::CacheError { error },
        },
        Op::CacheWrite { key, value, stamp, mode } => {
            match backend.cache_write(key, value, *stamp, *mode).await {
                Ok(outcome) => Outcome::CacheWrite { outcome },
                Err(error) => Outcome::CacheError { error },
            }
        }
        Op::CacheInvalidate { key } => match backend.cache_invalidate(key).await {
            Ok(()) => Outcome::Done,
            Err(error) => Outcome::CacheError { error },
        },
        Op::Deduct { scope, internal_id, feature_id, value, target } => {
            mixed(backend.deduct(scope, internal_id, feature_id, *value, target.clone()).await, |outcome| {
                Outcome::Deduct { outcome }
            })
        }
        Op::SyncUsage { key, internal_id, feature_id } => {
            mixed(backend.sync_usage(key, internal_id, feature_id).await, |outcome| Outcome::Sync { outcome })
        }
    }
}
