//! The `customers` table's statements: lookups, the insert with its unique
//! indexes, the `UPDATE`s (claim, fill, processor) and the full read.

use std::collections::BTreeMap;

use crate::backend::{
    ClaimTarget, CustomerKey, DbError, Fill, InsertOutcome, NewCustomer, OnConflict, Point, RowLock,
};
use crate::model::{Balance, CustomerProduct, CustomerRow, FullCustomer, Scope};

use super::store::{Indexed, LockMode, RowKey, RowKeys, Tuple, TxnId};
use super::{lock_mode, Access, Database, DbKey, RequestId, RowRef, Step, EMAIL_CONSTRAINT, ID_CONSTRAINT};

impl Indexed for CustomerRow {
    fn row_keys(&self) -> RowKeys {
        let scope = self.scope();
        [
            Some(RowKey::internal(&self.internal_id)),
            self.id.as_deref().map(|id| RowKey::id(&scope, id)),
            self.idless_email_key().map(|email| RowKey::email(&scope, &email)),
        ]
    }
}

impl Database {
    /// `SELECT … WHERE org, env, id`, optionally locking the row.
    pub fn lookup_id(
        &mut self,
        request: RequestId,
        scope: &Scope,
        id: &str,
        lock: RowLock,
    ) -> Step<Option<CustomerRow>> {
        self.statement(request, |db, txn| {
            let key = CustomerKey::Id(id.to_owned());
            db.touch(Access::Read, None, || DbKey::lookup(scope, &key));
            let Some(index) = db.find_customer(txn, scope, &key) else { return Ok(None) };
            db.touch_customer(index, Access::Read, txn);
            if let Some(mode) = lock_mode(lock) {
                db.lock_row(request, txn, index, mode)?;
            }
            Ok(db.customers.row(index).visible(txn).cloned())
        })
    }

    /// The id-less customers of `scope` whose email matches, case-insensitively.
    pub fn lookup_email(&mut self, request: RequestId, scope: &Scope, email: &str) -> Vec<CustomerRow> {
        let txn = self.reader_txn(request);
        let wanted = email.to_lowercase();
        self.touch(Access::Read, None, || DbKey::email(scope, email));
        let found: Vec<usize> = self
            .customers
            .visible_by(txn, || RowKey::email(scope, &wanted))
            .filter(|(_, r)| r.scope_is(scope) && r.idless_email_key().as_deref() == Some(wanted.as_str()))
            .map(|(i, _)| i)
            .collect();
        for &index in &found {
            self.touch_customer(index, Access::Read, txn);
        }
        found.into_iter().filter_map(|i| self.customers.row(i).visible(txn).cloned()).collect()
    }

    /// `INSERT INTO customers` with the drawn internal `id`.
    pub fn insert(
        &mut self,
        request: RequestId,
        new: &NewCustomer,
        on_conflict: OnConflict,
        drawn: (String, u64),
    ) -> Step<Result<InsertOutcome, DbError>> {
        let outcome = self.kept_id(request, drawn, |db, txn, id, now_ms| {
            db.insert_row(request, txn, new, on_conflict, id, now_ms)
        })?;
        Ok(outcome.or_else(|error| self.fail(request, error)))
    }

    /// A claim `UPDATE`: sets the id of the row `target` names.
    pub fn claim(
        &mut self,
        request: RequestId,
        scope: &Scope,
        target: &ClaimTarget,
        new_id: &str,
    ) -> Step<Result<Option<CustomerRow>, DbError>> {
        let result = self.statement(request, |db, txn| db.claim_row(request, txn, scope, target, new_id))?;
        Ok(result.or_else(|error| self.fail(request, error)))
    }

    /// Fills empty name and email (and raises `stripe_wanted`).
    pub fn fill_fields(
        &mut self,
        request: RequestId,
        scope: &Scope,
        internal_id: &str,
        fill: &Fill,
    ) -> Step<Result<Option<CustomerRow>, DbError>> {
        let result = self.statement(request, |db, txn| {
            let matches =
                |r: &CustomerRow| r.scope_is(scope) && r.internal_id == internal_id && fill.changes(r);
            let scan = || DbKey::customer(internal_id);
            let by = || RowKey::internal(internal_id);
            db.update_customer(request, txn, LockMode::NoKeyUpdate, (scan, by), matches, |r| fill.apply(r))
        })?;
        Ok(result.or_else(|error| self.fail(request, error)))
    }

    /// `UPDATE customers SET processor` (only where it is null, if asked).
    pub fn set_processor(
        &mut self,
        request: RequestId,
        scope: &Scope,
        internal_id: &str,
        stripe_id: &str,
        only_if_null: bool,
    ) -> Step<bool> {
        self.statement(request, |db, txn| {
            let matches = |r: &CustomerRow| {
                r.scope_is(scope) && r.internal_id == internal_id && (!only_if_null || r.processor.is_none())
            };
            let scan = || DbKey::customer(internal_id);
            let by = || RowKey::internal(internal_id);
            let result =
                db.update_customer(request, txn, LockMode::NoKeyUpdate, (scan, by), matches, |r| {
                    r.processor = Some(stripe_id.to_owned())
                })?;
            Ok(matches!(result, Ok(Some(_))))
        })
    }

    /// The full customer, optionally locking its row first.
    pub fn db_read(
        &mut self,
        request: RequestId,
        scope: &Scope,
        key: &CustomerKey,
        lock: RowLock,
    ) -> Step<Option<FullCustomer>> {
        self.statement(request, |db, txn| {
            db.touch(Access::Read, None, || DbKey::lookup(scope, key));
            let Some(index) = db.find_customer(txn, scope, key) else { return Ok(None) };
            db.touch_customer(index, Access::Read, txn);
            if let Some(mode) = lock_mode(lock) {
                db.lock_row(request, txn, index, mode)?;
            }
            let row = db.customers.row(index).visible(txn).cloned().expect("found above");
            db.touch(Access::Read, None, || DbKey::products(&row.internal_id));
            db.touch(Access::Read, None, || DbKey::usage(&row.internal_id));
            Ok(Some(db.full_customer(txn, row)))
        })
    }

    pub(super) fn find_customer(&self, txn: TxnId, scope: &Scope, key: &CustomerKey) -> Option<usize> {
        let by = || match key {
            CustomerKey::Id(id) => RowKey::id(scope, id),
            CustomerKey::InternalId(internal) => RowKey::internal(internal),
        };
        self.customers
            .visible_by(txn, by)
            .find(|(_, r)| {
                r.scope_is(scope)
                    && match key {
                        CustomerKey::Id(id) => r.id.as_deref() == Some(id.as_str()),
                        CustomerKey::InternalId(internal) => r.internal_id == *internal,
                    }
            })
            .map(|(i, _)| i)
    }

    /// A row by internal id in any scope (to notice a breach of scope).
    pub(super) fn find_internal(&self, txn: TxnId, internal_id: &str) -> Option<usize> {
        self.customers
            .visible_by(txn, || RowKey::internal(internal_id))
            .find(|(_, r)| r.internal_id == internal_id)
            .map(|(i, _)| i)
    }

    /// The first unique key of `row` already taken by a live row (its index
    /// and constraint), or a wait on the transaction holding it.
    fn customer_conflict(
        &self,
        txn: TxnId,
        except: Option<usize>,
        row: &CustomerRow,
    ) -> Step<Option<(usize, &'static str)>> {
        if let Some(id) = &row.id {
            let by = || RowKey::id(&row.scope(), id);
            let taken = self.customers.unique_probe(txn, except, by, |r| {
                r.scope_is(&row.scope()) && r.id.as_deref() == Some(id.as_str())
            })?;
            if let Some(index) = taken {
                return Ok(Some((index, ID_CONSTRAINT)));
            }
        }
        if self.constraints.idless_email_unique {
            if let Some(email) = row.idless_email_key() {
                let by = || RowKey::email(&row.scope(), &email);
                let taken = self.customers.unique_probe(txn, except, by, |r| {
                    r.scope_is(&row.scope()) && r.idless_email_key().as_ref() == Some(&email)
                })?;
                if let Some(index) = taken {
                    return Ok(Some((index, EMAIL_CONSTRAINT)));
                }
            }
        }
        Ok(None)
    }

    fn insert_row(
        &mut self,
        request: RequestId,
        txn: TxnId,
        new: &NewCustomer,
        on_conflict: OnConflict,
        id: &str,
        now_ms: u64,
    ) -> Step<Result<InsertOutcome, DbError>> {
        let mut row = CustomerRow {
            internal_id: String::new(),
            org_id: new.scope.org_id.clone(),
            env: new.scope.env,
            id: new.id.clone(),
            name: new.name.clone(),
            email: new.email.clone(),
            fingerprint: new.fingerprint.clone(),
            metadata: new.metadata.clone(),
            processor: new.processor.clone(),
            created_at: now_ms,
            default_scope: new.default_scope.clone(),
            stripe_wanted: new.stripe_wanted,
        };
        // The row's place in the table is taken when the statement starts
        // (Postgres draws its `seq` then, and a plain insert writes its
        // heap tuple before it checks the unique indexes): a statement that
        // waits keeps it, and one that inserts nothing leaves it dead.
        let slot = match self.sessions[request].written.first() {
            Some(&slot) => slot,
            None => {
                let slot = self.customers.push(Tuple::dead());
                self.session(request).written.push(slot);
                slot
            }
        };
        self.touch_unique_keys(&row, Access::Read, None);
        let conflict = self.customer_conflict(txn, None, &row)?;
        if let Some((index, _)) = conflict {
            self.touch_customer(index, Access::Read, txn);
        }
        match conflict {
            Some((index, constraint)) => Ok(match on_conflict {
                OnConflict::Error => Err(DbError::UniqueViolation { constraint: constraint.to_owned() }),
                OnConflict::DoNothing => Ok(InsertOutcome::Skipped),
                OnConflict::ReturnExisting => {
                    self.wait_for_row(request, txn, RowRef::Customer(index), LockMode::NoKeyUpdate)?;
                    let existing = self
                        .customers
                        .row(index)
                        .visible(txn)
                        .cloned()
                        .expect("a conflicting row is visible");
                    self.customers.write(index, txn, existing.clone(), LockMode::NoKeyUpdate);
                    self.touch_customer(index, Access::Write, txn);
                    Ok(InsertOutcome::Existing(existing))
                }
            }),
            None => {
                row.internal_id = id.to_owned();
                self.customers.set(slot, Tuple::inserted(txn, row.clone()));
                self.touch_customer(slot, Access::Write, txn);
                Ok(Ok(InsertOutcome::Inserted(row)))
            }
        }
    }

    /// An `UPDATE … RETURNING` of the customer rows `matches` finds: each
    /// candidate in turn is locked (waiting for its holders), re-checked
    /// on its latest version, changed and checked against the unique
    /// indexes, as Postgres does. Every matching row is updated; the first
    /// is returned. Rows changed before a wait stay changed while it lasts.
    fn update_customer(
        &mut self,
        request: RequestId,
        txn: TxnId,
        mode: LockMode,
        (scan, by): (impl FnOnce() -> DbKey, impl FnOnce() -> RowKey),
        matches: impl Fn(&CustomerRow) -> bool,
        change: impl Fn(&mut CustomerRow),
    ) -> Step<Result<Option<CustomerRow>, DbError>> {
        self.touch(Access::Read, None, scan);
        let found = self.candidates(request, |db| {
            db.customers.visible_by(txn, by).filter(|(_, r)| matches(r)).map(|(i, _)| i).collect()
        });
        for index in found {
            if self.sessions[request].written.contains(&index) {
                continue;
            }
            self.wait_for_row(request, txn, RowRef::Customer(index), mode)?;
            self.touch_customer(index, Access::Write, txn);
            let Some(current) = self.customers.row(index).visible(txn) else { continue };
            if !matches(current) {
                continue;
            }
            let mut updated = current.clone();
            change(&mut updated);
            self.touch_unique_keys(&updated, Access::Write, Some(txn));
            let conflict = match self.customer_conflict(txn, Some(index), &updated) {
                Ok(conflict) => conflict,
                Err(blocked) => {
                    // Postgres has written the new version before it checks
                    // the unique index: the row stays locked, and its old
                    // keys held, while it waits.
                    self.customers.lock(index, txn, mode);
                    self.customers.mark_replacing(index, txn);
                    return Err(blocked);
                }
            };
            if let Some((_, constraint)) = conflict {
                return Ok(Err(DbError::UniqueViolation { constraint: constraint.to_owned() }));
            }
            self.customers.write(index, txn, updated, mode);
            self.session(request).written.push(index);
        }
        let first = self.sessions[request].written.first().copied();
        Ok(Ok(first.and_then(|i| self.customers.row(i).visible(txn).cloned())))
    }

    fn claim_row(
        &mut self,
        request: RequestId,
        txn: TxnId,
        scope: &Scope,
        target: &ClaimTarget,
        new_id: &str,
    ) -> Step<Result<Option<CustomerRow>, DbError>> {
        if let ClaimTarget::Row { internal_id } = target {
            self.touch(Access::Read, None, || DbKey::customer(internal_id));
            if let Some(index) = self.find_internal(txn, internal_id) {
                let touched = self.customers.row(index).visible(txn).expect("visible").scope();
                self.note_scope(request, scope, &touched, Point::Claim);
            }
        }
        let scan = || match target {
            ClaimTarget::Row { internal_id } => DbKey::customer(internal_id),
            ClaimTarget::IdlessEmail { email } => DbKey::email(scope, email),
        };
        let wanted_email = match target {
            ClaimTarget::IdlessEmail { email } => Some(email.to_lowercase()),
            ClaimTarget::Row { .. } => None,
        };
        let by = || match (target, &wanted_email) {
            (ClaimTarget::Row { internal_id }, _) => RowKey::internal(internal_id),
            (ClaimTarget::IdlessEmail { .. }, email) => {
                RowKey::email(scope, email.as_deref().unwrap_or_default())
            }
        };
        let matches = |r: &CustomerRow| {
            r.scope_is(scope)
                && match target {
                    ClaimTarget::Row { internal_id } => r.internal_id == *internal_id,
                    ClaimTarget::IdlessEmail { .. } => r.idless_email_key() == wanted_email,
                }
        };
        // The id is a unique-key column: the update takes the strongest lock.
        self.update_customer(request, txn, LockMode::Update, (scan, by), matches, |r| {
            r.id = Some(new_id.to_owned())
        })
    }

    /// Assembles a full customer as `txn` sees it.
    pub(super) fn full_customer(&self, txn: TxnId, customer: CustomerRow) -> FullCustomer {
        let of_customer = || RowKey::customer(&customer.internal_id);
        let mut products: Vec<CustomerProduct> = self
            .products
            .visible_by(txn, of_customer)
            .filter(|(_, p)| p.internal_customer_id == customer.internal_id)
            .map(|(_, p)| p.clone())
            .collect();
        products.sort_by(|a, b| (&a.group, &a.product_id, &a.id).cmp(&(&b.group, &b.product_id, &b.id)));
        let mut balances: BTreeMap<String, Balance> = BTreeMap::new();
        for product in &products {
            if let Some(catalog_product) = self.catalog.product(&product.product_id) {
                for (feature, included) in &catalog_product.features {
                    balances.entry(feature.clone()).or_default().granted += included;
                }
            }
        }
        for (_, usage) in self
            .usage
            .visible_by(txn, of_customer)
            .filter(|(_, u)| u.internal_customer_id == customer.internal_id)
        {
            balances.entry(usage.feature_id.clone()).or_default().usage += usage.usage;
        }
        FullCustomer { customer, products, balances }
    }
}
