//! The tables that reference a customer: `customer_products` (defaults
//! attached) and `balances` (usage), with their foreign keys; and the
//! catalog's default candidates.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::backend::{AttachOutcome, DbError, DeductOutcome, NewCustomerProduct, OnConflict, Point};
use crate::model::{CustomerProduct, Product, Scope};

use super::store::{Indexed, LockMode, RowKey, RowKeys, Tuple, TxnId};
use super::{
    Access, Database, DbKey, RequestId, RowRef, Step, PRODUCT_FK, PRODUCT_GROUP_CONSTRAINT, USAGE_FK,
};

/// A `balances` row: recorded usage of one feature (granted is derived
/// from the customer's products).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    pub internal_customer_id: String,
    pub feature_id: String,
    pub usage: i64,
    /// The idempotency keys of the deductions counted (`safe` only).
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub applied_keys: BTreeSet<String>,
}

impl Indexed for UsageRow {
    fn row_keys(&self) -> RowKeys {
        [Some(RowKey::customer(&self.internal_customer_id)), None, None]
    }
}

impl Indexed for CustomerProduct {
    fn row_keys(&self) -> RowKeys {
        [Some(RowKey::customer(&self.internal_customer_id)), None, None]
    }
}

impl Database {
    /// The catalog's default candidates.
    pub fn list_defaults(&self) -> Vec<Product> {
        self.catalog.default_candidates().cloned().collect()
    }

    /// `INSERT INTO customer_products` with the drawn `id`.
    pub fn attach(
        &mut self,
        request: RequestId,
        scope: &Scope,
        product: &NewCustomerProduct,
        on_conflict: OnConflict,
        drawn: (String, u64),
    ) -> Step<Result<AttachOutcome, DbError>> {
        let result = self.kept_id(request, drawn, |db, txn, id, now_ms| {
            db.attach_row(request, txn, scope, product, on_conflict, id, now_ms)
        })?;
        Ok(result.or_else(|error| self.fail(request, error)))
    }

    /// `usage = usage + delta` at the source of truth, unless `key` was
    /// counted before (then the row is locked and left as it is).
    pub fn add_usage(
        &mut self,
        request: RequestId,
        scope: &Scope,
        internal_id: &str,
        feature_id: &str,
        delta: i64,
        key: Option<&str>,
    ) -> Step<Result<DeductOutcome, DbError>> {
        let result = self.statement(request, |db, txn| {
            let added =
                db.upsert_usage(request, txn, scope, internal_id, feature_id, key, |usage| usage + delta)?;
            // Counted when its transaction commits (`finish_txn`).
            if let Ok((_, true)) = &added {
                db.pending_deductions.entry(txn).or_insert((request, 0)).1 += 1;
            }
            Ok(added)
        })?;
        let result = result.map(|(usage, counted)| match counted {
            true => DeductOutcome::Applied { usage },
            false => DeductOutcome::Duplicate { usage },
        });
        Ok(result.or_else(|error| self.fail(request, error)))
    }

    /// How many of `request`'s deductions at the DB committed.
    pub fn deductions(&self, request: RequestId) -> u64 {
        self.deductions.get(&request).copied().unwrap_or(0)
    }

    /// Forgets what is kept of `request` (it has ended).
    pub fn forget_deductions(&mut self, request: RequestId) {
        self.deductions.remove(&request);
    }

    /// `usage = absolute` (the modelled server's sync of a cached balance).
    pub fn set_usage(
        &mut self,
        request: RequestId,
        scope: &Scope,
        internal_id: &str,
        feature_id: &str,
        absolute: i64,
    ) -> Step<Result<i64, DbError>> {
        let result = self.statement(request, |db, txn| {
            db.upsert_usage(request, txn, scope, internal_id, feature_id, None, |_| absolute)
        })?;
        Ok(result.map(|(usage, _)| usage).or_else(|error| self.fail(request, error)))
    }

    /// The foreign-key check of an insert referencing customer
    /// `internal_id`: the row must be visible, and the insert takes a
    /// key-share lock on it.
    fn reference_customer(
        &mut self,
        request: RequestId,
        txn: TxnId,
        internal_id: &str,
        constraint: &str,
    ) -> Step<Result<(), DbError>> {
        self.touch(Access::Read, None, || DbKey::Customer(internal_id.to_owned()));
        let Some(index) = self.find_internal(txn, internal_id) else {
            return Ok(Err(DbError::ForeignKeyViolation { constraint: constraint.to_owned() }));
        };
        self.lock_row(request, txn, index, LockMode::KeyShare)?;
        Ok(Ok(()))
    }

    #[allow(clippy::too_many_arguments)]
    fn attach_row(
        &mut self,
        request: RequestId,
        txn: TxnId,
        scope: &Scope,
        product: &NewCustomerProduct,
        on_conflict: OnConflict,
        id: &str,
        now_ms: u64,
    ) -> Step<Result<AttachOutcome, DbError>> {
        self.note_scope_of(request, txn, scope, &product.internal_customer_id, Point::AttachDefault);
        let products = || DbKey::Products(product.internal_customer_id.clone());
        self.touch(Access::Read, None, products);
        let index = match self.sessions[request].written.first() {
            // Inserted before a wait in the foreign-key check.
            Some(&index) => index,
            None => {
                if self.constraints.product_group_unique {
                    let of_customer = || RowKey::customer(&product.internal_customer_id);
                    let taken = self.products.unique_probe(txn, None, of_customer, |p| {
                        p.internal_customer_id == product.internal_customer_id && p.group == product.group
                    })?;
                    if taken.is_some() {
                        return Ok(match on_conflict {
                            OnConflict::Error => Err(DbError::UniqueViolation {
                                constraint: PRODUCT_GROUP_CONSTRAINT.to_owned(),
                            }),
                            OnConflict::DoNothing | OnConflict::ReturnExisting => Ok(AttachOutcome::Skipped),
                        });
                    }
                }
                let row = CustomerProduct {
                    id: id.to_owned(),
                    internal_customer_id: product.internal_customer_id.clone(),
                    product_id: product.product_id.clone(),
                    group: product.group.clone(),
                    status: product.status,
                    created_at: now_ms,
                };
                let index = self.products.push(Tuple::inserted(txn, row));
                self.touch(Access::Write, Some(txn), products);
                self.session(request).written.push(index);
                index
            }
        };
        // The foreign-key check runs after the row is in its indexes (an
        // after-trigger), as Postgres runs it.
        if let Err(error) =
            self.reference_customer(request, txn, &product.internal_customer_id, PRODUCT_FK)?
        {
            return Ok(Err(error));
        }
        let row = self.products.row(index).visible(txn).cloned().expect("inserted by this statement");
        Ok(Ok(AttachOutcome::Attached(row)))
    }

    /// `INSERT INTO balances … ON CONFLICT (customer, feature) DO UPDATE SET
    /// usage = new_usage(usage)` (with a `key`: `, applied_keys = applied_keys
    /// || key WHERE NOT key = ANY(applied_keys)`; `ON CONFLICT DO UPDATE`
    /// locks the row even when its `WHERE` is false). The usage after it,
    /// and whether it counted (false: `key` was counted before).
    #[allow(clippy::too_many_arguments)]
    fn upsert_usage(
        &mut self,
        request: RequestId,
        txn: TxnId,
        scope: &Scope,
        internal_id: &str,
        feature_id: &str,
        key: Option<&str>,
        new_usage: impl Fn(i64) -> i64,
    ) -> Step<Result<(i64, bool), DbError>> {
        self.note_scope_of(request, txn, scope, internal_id, Point::Deduct);
        let usage_key = || DbKey::Usage(internal_id.to_owned());
        self.touch(Access::Read, None, usage_key);
        let existing = self.usage.unique_probe(
            txn,
            None,
            || RowKey::customer(internal_id),
            |u| u.internal_customer_id == internal_id && u.feature_id == feature_id,
        )?;
        match existing {
            Some(index) => {
                self.wait_for_row(request, txn, RowRef::Usage(index), LockMode::NoKeyUpdate)?;
                self.touch(Access::Write, Some(txn), usage_key);
                let mut row = self.usage.row(index).visible(txn).cloned().expect("probe saw it");
                let counted = !key.is_some_and(|k| row.applied_keys.contains(k));
                if counted {
                    row.usage = new_usage(row.usage);
                    row.applied_keys.extend(key.map(str::to_owned));
                }
                let usage = row.usage;
                self.usage.write(index, txn, row, LockMode::NoKeyUpdate);
                Ok(Ok((usage, counted)))
            }
            None => {
                let index = match self.sessions[request].written.first() {
                    Some(&index) => index,
                    None => {
                        let row = UsageRow {
                            internal_customer_id: internal_id.to_owned(),
                            feature_id: feature_id.to_owned(),
                            usage: new_usage(0),
                            applied_keys: key.map(str::to_owned).into_iter().collect(),
                        };
                        let index = self.usage.push(Tuple::inserted(txn, row));
                        self.touch(Access::Write, Some(txn), usage_key);
                        self.session(request).written.push(index);
                        index
                    }
                };
                // The foreign-key check, after the row is in its indexes.
                if let Err(error) = self.reference_customer(request, txn, internal_id, USAGE_FK)? {
                    return Ok(Err(error));
                }
                let usage = self.usage.row(index).visible(txn).expect("inserted by this statement").usage;
                Ok(Ok((usage, true)))
            }
        }
    }
}
