//! The tables that reference a customer: `customer_products` (defaults
//! attached) and `balances` (usage), with their foreign keys; and the
//! catalog's default candidates.

use std::collections::BTreeMap;

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
    /// The idempotency keys of the deductions counted (`safe` only), each
    /// with the time it was counted at: a key counted less than
    /// [`APPLIED_KEY_WINDOW_MS`] ago makes a deduction with it a duplicate;
    /// an older one is forgotten when the row next counts a key.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub applied_keys: BTreeMap<String, u64>,
}

/// What a request's deductions have done so far: how many counted (took
/// effect: in the cache, or at the DB by a transaction that committed),
/// and how many keyed deductions ran at the DB (counted or found to be
/// duplicates), the last at `keyed_at_ms` (true time). Marks taken before
/// and after an attempt say what it did ([`Deductions::since`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Deductions {
    pub counted: u64,
    pub keyed: u64,
    pub keyed_at_ms: u64,
}

impl Deductions {
    /// What was done between `before` and this mark.
    pub fn since(self, before: Deductions) -> Deducted {
        Deducted {
            counted: self.counted > before.counted,
            keyed_at_ms: (self.keyed > before.keyed).then_some(self.keyed_at_ms),
        }
    }
}

/// What one attempt's deductions did: whether one took effect, whatever
/// its client heard; and the time its (last) keyed deduction ran at the
/// DB, counted or a duplicate (`None`: it ran none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Deducted {
    pub counted: bool,
    pub keyed_at_ms: Option<u64>,
}

/// How long a balance remembers a key it counted: the idempotency window,
/// the same 24 h as the API's claim of an `Idempotency-Key`.
pub const APPLIED_KEY_WINDOW_MS: u64 = crate::backend::mem::services::IDEMPOTENCY_KEY_TTL_MS;

/// A key a balance holds counted at `counted_at_ms`, at `now_ms`: true
/// while the window since has not passed.
pub fn key_applied(counted_at_ms: u64, now_ms: u64) -> bool {
    now_ms < counted_at_ms.saturating_add(APPLIED_KEY_WINDOW_MS)
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
    /// counted within the window before `now_ms` (then the row is locked
    /// and left as it is). `key` comes with the time now.
    pub fn add_usage(
        &mut self,
        request: RequestId,
        scope: &Scope,
        internal_id: &str,
        feature_id: &str,
        delta: i64,
        key: Option<(&str, u64)>,
    ) -> Step<Result<DeductOutcome, DbError>> {
        let result = self.statement(request, |db, txn| {
            let added =
                db.upsert_usage(request, txn, scope, internal_id, feature_id, key, |usage| usage + delta)?;
            if let Some((_, now_ms)) = key {
                let deductions = db.deductions.entry(request).or_default();
                deductions.keyed += 1;
                deductions.keyed_at_ms = now_ms;
            }
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

    /// What `request`'s deductions at the DB did: those that committed,
    /// and its keyed statements run.
    pub fn deductions(&self, request: RequestId) -> Deductions {
        self.deductions.get(&request).copied().unwrap_or_default()
    }

    /// The idempotency keys the committed balance of `internal_id`'s
    /// `feature_id` holds, with the times they were counted at.
    pub fn applied_keys(&self, internal_id: &str, feature_id: &str) -> BTreeMap<String, u64> {
        self.usage
            .visible_by(0, || RowKey::customer(internal_id))
            .map(|(_, row)| row)
            .find(|row| row.internal_customer_id == internal_id && row.feature_id == feature_id)
            .map(|row| row.applied_keys.clone())
            .unwrap_or_default()
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
        self.touch(Access::Read, None, || DbKey::customer(internal_id));
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
        let products = || DbKey::products(&product.internal_customer_id);
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
    /// usage = new_usage(usage)` (with a `key` and the time now: `,
    /// applied_keys = the keys still in their window || key WHERE key is not
    /// in its window`; `ON CONFLICT DO UPDATE` locks the row even when its
    /// `WHERE` is false). The usage after it, and whether it counted (false:
    /// `key` was counted less than the window before).
    #[allow(clippy::too_many_arguments)]
    fn upsert_usage(
        &mut self,
        request: RequestId,
        txn: TxnId,
        scope: &Scope,
        internal_id: &str,
        feature_id: &str,
        key: Option<(&str, u64)>,
        new_usage: impl Fn(i64) -> i64,
    ) -> Step<Result<(i64, bool), DbError>> {
        self.note_scope_of(request, txn, scope, internal_id, Point::Deduct);
        let usage_key = || DbKey::usage(internal_id);
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
                let counted = !key.is_some_and(|(k, now_ms)| {
                    row.applied_keys.get(k).is_some_and(|&at| key_applied(at, now_ms))
                });
                if counted {
                    row.usage = new_usage(row.usage);
                    if let Some((k, now_ms)) = key {
                        row.applied_keys.retain(|_, at| key_applied(*at, now_ms));
                        row.applied_keys.insert(k.to_owned(), now_ms);
                    }
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
                            applied_keys: key.map(|(k, now_ms)| (k.to_owned(), now_ms)).into_iter().collect(),
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
