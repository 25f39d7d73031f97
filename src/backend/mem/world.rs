//! The in-memory world: Postgres tables, the full-customer cache and
//! simulated Stripe, advanced one operation at a time by [`World::apply`].
//!
//! An operation either completes or reports that it must wait for another
//! transaction ([`Blocked`]); a blocked operation changes nothing, so the
//! driver simply offers it again once the holder has ended. Everything is
//! deterministic: ids come from a seeded generator, time from a virtual
//! clock, and every map is ordered.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

use crate::backend::ops::*;
use crate::backend::{CacheError, DbError, StripeError};
use crate::model::{Balance, Catalog, CustomerProduct, CustomerRow, FullCustomer, Scope};

use super::ids::IdGen;
use super::services::{Cache, CacheSlot, Stripe, StripeCustomer};
use super::store::{Blocked, LockMode, Table, Tuple, TxnId};

/// Index of a request within a run.
pub type RequestId = usize;

pub const ID_CONSTRAINT: &str = "customers_org_env_id_key";
pub const EMAIL_CONSTRAINT: &str = "customers_org_env_lower_email_idless_key";
pub const PRODUCT_GROUP_CONSTRAINT: &str = "customer_products_customer_group_key";
pub const PRODUCT_FK: &str = "customer_products_internal_customer_id_fkey";
pub const USAGE_FK: &str = "balances_internal_customer_id_fkey";

/// The unique indexes beyond `(org_id, env, id)`, which every strategy has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Constraints {
    /// `(org_id, env, lower(email)) WHERE id IS NULL AND email <> ''`.
    pub idless_email_unique: bool,
    /// `customer_products (internal_customer_id, group)`.
    pub product_group_unique: bool,
}

/// An injected failure at one operation (a `crash` is the driver's: it
/// drops the request and calls [`World::crash`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// A database statement (or commit) fails; its transaction rolls back.
    DbError,
    /// Stripe creates the customer, but the caller sees a timeout.
    StripeTimeoutAfterSuccess,
    /// The cache does not answer.
    CacheDown,
}

impl Fault {
    /// Whether this fault touches what `op` does: a database fault needs a
    /// statement, a cache fault a cache access. Elsewhere it is no fault.
    pub fn applies_to_op(self, op: &Op) -> bool {
        let Some(point) = op.point() else { return false };
        match (self, op) {
            (Fault::DbError, Op::Deduct { target: DeductTarget::Cache(_), .. }) => false,
            (Fault::CacheDown, Op::Deduct { target: DeductTarget::Db, .. }) => false,
            _ => self.applies_to(point),
        }
    }

    /// Whether this fault can happen at `point` (for some operation there).
    pub fn applies_to(self, point: Point) -> bool {
        match self {
            Fault::DbError => point.is_db(),
            Fault::StripeTimeoutAfterSuccess => point == Point::StripeCreate,
            Fault::CacheDown => point.is_cache() || point == Point::Deduct || point == Point::SyncUsage,
        }
    }
}

/// A `balances` row: recorded usage of one feature (granted is derived
/// from the customer's products).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    pub internal_customer_id: String,
    pub feature_id: String,
    pub usage: i64,
}

#[derive(Debug, Clone, Default)]
struct Session {
    txn: Option<TxnId>,
    /// Rows an `UPDATE`/`FOR UPDATE` found before it had to wait: after the
    /// wait it re-checks these, as Postgres does, instead of scanning anew.
    candidates: Option<Vec<usize>>,
    /// The id an insert drew before it had to wait: the client draws it
    /// once, before sending the statement, and sends the same one again.
    pending_id: Option<String>,
}

/// A request that touched a row of another `(org, env)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IsolationBreach {
    pub request: RequestId,
    pub request_scope: Scope,
    pub touched_scope: Scope,
    pub point: Point,
}

#[derive(Debug)]
pub struct World {
    catalog: Catalog,
    constraints: Constraints,
    customers: Table<CustomerRow>,
    products: Table<CustomerProduct>,
    usage: Table<UsageRow>,
    cache: Cache,
    stripe: Stripe,
    clock_ms: SharedClock,
    /// Logical time: operations applied so far (shared with connections,
    /// which stamp their reads with it).
    seq: SharedClock,
    ids: IdGen,
    next_txn: TxnId,
    sessions: Vec<Session>,
    isolation_breaches: Vec<IsolationBreach>,
}

type Step<T> = Result<T, Blocked>;

/// A counter shared by a world and its connections (the clocks). One
/// thread at a time touches a world (a free-running driver holds its
/// lock), so relaxed atomics are enough; they keep `World` `Send`.
#[derive(Debug, Clone, Default)]
pub struct SharedClock(Arc<AtomicU64>);

impl SharedClock {
    pub fn new(value: u64) -> SharedClock {
        SharedClock(Arc::new(AtomicU64::new(value)))
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

impl Clone for World {
    /// A copy with clocks of its own: connections made for the copy see
    /// only the copy's time (a derived clone would share the cells).
    fn clone(&self) -> World {
        World {
            catalog: self.catalog.clone(),
            constraints: self.constraints,
            customers: self.customers.clone(),
            products: self.products.clone(),
            usage: self.usage.clone(),
            cache: self.cache.clone(),
            stripe: self.stripe.clone(),
            clock_ms: SharedClock::new(self.clock_ms.get()),
            seq: SharedClock::new(self.seq.get()),
            ids: self.ids.clone(),
            next_txn: self.next_txn,
            sessions: self.sessions.clone(),
            isolation_breaches: self.isolation_breaches.clone(),
        }
    }
}

impl World {
    pub fn new(catalog: Catalog, constraints: Constraints, seed: u64) -> World {
        World {
            catalog,
            constraints,
            customers: Table::default(),
            products: Table::default(),
            usage: Table::default(),
            cache: Cache::default(),
            stripe: Stripe::default(),
            clock_ms: SharedClock::new(0),
            seq: SharedClock::new(0),
            ids: IdGen::new(seed),
            next_txn: 1,
            sessions: Vec::new(),
            isolation_breaches: Vec::new(),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn constraints(&self) -> Constraints {
        self.constraints
    }

    /// A handle on the virtual clock, for connections to read.
    pub fn clock(&self) -> SharedClock {
        self.clock_ms.clone()
    }

    pub fn now_ms(&self) -> u64 {
        self.clock_ms.get()
    }

    pub fn advance_clock(&mut self, delta_ms: u64) {
        self.clock_ms.set(self.clock_ms.get().saturating_add(delta_ms));
    }

    pub fn seq(&self) -> u64 {
        self.seq.get()
    }

    /// A handle on the logical time, for connections to read.
    /// The id generator's state (a lockstep backend starts each operation
    /// from the same one).
    pub fn ids(&self) -> &IdGen {
        &self.ids
    }

    pub fn logical_clock(&self) -> SharedClock {
        self.seq.clone()
    }

    fn tick(&mut self) {
        self.seq.set(self.seq.get() + 1);
    }

    /// The open transaction of `request`, if any.
    pub fn open_txn(&self, request: RequestId) -> Option<TxnId> {
        self.sessions.get(request).and_then(|s| s.txn)
    }

    /// The request whose open transaction is `txn`.
    pub fn request_of_txn(&self, txn: TxnId) -> Option<RequestId> {
        self.sessions.iter().position(|s| s.txn == Some(txn))
    }

    /// Whether `request`'s wait closes a cycle of waits, where
    /// `waits_for(r)` is the transaction request `r` waits for (if any).
    /// Every driver that lets requests wait asks this before parking one:
    /// a wait that closes a cycle makes the waiter the deadlock victim.
    pub fn closes_cycle(&self, request: RequestId, waits_for: impl Fn(RequestId) -> Option<TxnId>) -> bool {
        let mut current = request;
        for _ in 0..=self.sessions.len() {
            let Some(txn) = waits_for(current) else { return false };
            let Some(holder) = self.request_of_txn(txn) else { return false };
            if holder == request {
                return true;
            }
            current = holder;
        }
        false
    }

    /// A crashed request: its open transaction rolls back.
    pub fn crash(&mut self, request: RequestId) {
        if let Some(txn) = self.session(request).txn.take() {
            self.finish_txn(txn, false);
        }
        self.session(request).candidates = None;
        self.session(request).pending_id = None;
    }

    /// Ends `request`'s open transaction with 40P01 (it was a deadlock victim).
    pub fn deadlock_victim(&mut self, request: RequestId) -> Outcome {
        self.crash(request);
        self.tick();
        Outcome::DbError { error: DbError::Deadlock }
    }

    pub fn isolation_breaches(&self) -> &[IsolationBreach] {
        &self.isolation_breaches
    }

    /// Applies one operation for `request`, with an injected `fault` if any.
    pub fn apply(&mut self, request: RequestId, op: &Op, fault: Option<Fault>) -> Result<Outcome, Blocked> {
        if let (Some(fault), Some(point)) = (fault, op.point()) {
            assert!(fault.applies_to(point), "fault {fault:?} cannot happen at {point}");
        }
        let fault = fault.filter(|f| f.applies_to_op(op));
        let outcome = match (fault, op) {
            (Some(Fault::DbError), _) => {
                self.crash(request);
                Outcome::DbError { error: DbError::Unavailable }
            }
            (Some(Fault::CacheDown), _) => Outcome::CacheError { error: CacheError::Down },
            (_, op) => self.apply_op(request, op, fault == Some(Fault::StripeTimeoutAfterSuccess))?,
        };
        self.tick();
        Ok(outcome)
    }

    fn apply_op(&mut self, request: RequestId, op: &Op, stripe_timeout: bool) -> Step<Outcome> {
        Ok(match op {
            Op::Begin => {
                assert!(self.session(request).txn.is_none(), "BEGIN inside an open transaction");
                let txn = self.new_txn();
                self.session(request).txn = Some(txn);
                Outcome::Done
            }
            Op::Commit => {
                if let Some(txn) = self.session(request).txn.take() {
                    self.finish_txn(txn, true);
                }
                Outcome::Done
            }
            Op::Rollback => {
                self.crash(request);
                Outcome::Done
            }
            Op::LookupId { scope, id, lock } => {
                let row = self.statement(request, |w, txn| w.lookup_id(txn, scope, id, *lock))?;
                Outcome::Row { row }
            }
            Op::LookupEmail { scope, email } => {
                let txn = self.reader_txn(request);
                let wanted = email.to_lowercase();
                let rows = self
                    .customers
                    .visible(txn)
                    .filter(|(_, r)| {
                        r.scope_is(scope) && r.idless_email_key().as_deref() == Some(wanted.as_str())
                    })
                    .map(|(_, r)| r.clone())
                    .collect();
                Outcome::Rows { rows }
            }
            Op::Insert { customer, on_conflict } => {
                let id = self.draw_id(request, "cus");
                let outcome =
                    self.kept_id(request, id, |w, txn, id| w.insert(txn, customer, *on_conflict, id))?;
                match outcome {
                    Ok(outcome) => Outcome::Insert { outcome },
                    Err(error) => self.fail(request, error),
                }
            }
            Op::Claim { scope, target, new_id } => {
                match self.statement(request, |w, txn| w.claim(request, txn, scope, target, new_id))? {
                    Ok(row) => Outcome::Row { row },
                    Err(error) => self.fail(request, error),
                }
            }
            Op::FillFields { scope, internal_id, fill } => {
                let result =
                    self.statement(request, |w, txn| w.fill_fields(request, txn, scope, internal_id, fill))?;
                match result {
                    Ok(row) => Outcome::Row { row },
                    Err(error) => self.fail(request, error),
                }
            }
            Op::ListDefaults { .. } => {
                Outcome::Products { products: self.catalog.default_candidates().cloned().collect() }
            }
            Op::StripeCreate { idempotency_key, params } => {
                let now = self.now_ms();
                match self.stripe.create_customer(idempotency_key, params, now, &mut self.ids) {
                    Ok(_) if stripe_timeout => Outcome::StripeError { error: StripeError::Timeout },
                    Ok(stripe_id) => Outcome::StripeCustomer { stripe_id },
                    Err(error) => Outcome::StripeError { error },
                }
            }
            Op::SetProcessor { scope, internal_id, stripe_id, only_if_null } => {
                let updated = self.statement(request, |w, txn| {
                    w.set_processor(request, txn, scope, internal_id, stripe_id, *only_if_null)
                })?;
                Outcome::Updated { updated }
            }
            Op::AttachDefault { scope, product, on_conflict } => {
                let id = self.draw_id(request, "cus_prod");
                match self.kept_id(request, id, |w, txn, id| {
                    w.attach(request, txn, scope, product, *on_conflict, id)
                })? {
                    Ok(outcome) => Outcome::Attach { outcome },
                    Err(error) => self.fail(request, error),
                }
            }
            Op::DbRead { scope, key, lock } => {
                let customer = self.statement(request, |w, txn| w.db_read(txn, scope, key, *lock))?;
                Outcome::Full { customer: customer.map(Box::new) }
            }
            Op::CacheRead { key } => Outcome::Cache { read: Box::new(self.cache.read(key, self.seq())) },
            Op::CacheWrite { key, value, stamp, mode } => {
                self.note_scope(request, &key.scope, &value.customer.scope(), Point::CacheWrite);
                let now = self.now_ms();
                Outcome::CacheWrite { outcome: self.cache.write(key, value, *stamp, *mode, now) }
            }
            Op::CacheInvalidate { key } => {
                let (seq, now) = (self.seq(), self.now_ms());
                self.cache.invalidate(key, seq, now);
                Outcome::Done
            }
            Op::Deduct { scope, internal_id, feature_id, value, target } => match target {
                DeductTarget::Cache(key) => {
                    Outcome::Deduct { outcome: self.cache.deduct(key, internal_id, feature_id, *value) }
                }
                DeductTarget::Db => {
                    let delta = *value;
                    let result = self.statement(request, |w, txn| {
                        w.upsert_usage(request, txn, scope, internal_id, feature_id, |u| u + delta)
                    })?;
                    match result {
                        Ok(usage) => Outcome::Deduct { outcome: DeductOutcome::Applied { usage } },
                        Err(error) => self.fail(request, error),
                    }
                }
            },
            Op::SyncUsage { key, internal_id, feature_id } => {
                let cached = self.cache.usage(key, internal_id, feature_id);
                match cached {
                    None => Outcome::Sync { outcome: SyncOutcome::CacheMissing },
                    Some(absolute) => {
                        let scope = key.scope.clone();
                        let result = self.statement(request, |w, txn| {
                            w.upsert_usage(request, txn, &scope, internal_id, feature_id, |_| absolute)
                        })?;
                        match result {
                            Ok(usage) => Outcome::Sync { outcome: SyncOutcome::Written { usage } },
                            Err(error) => self.fail(request, error),
                        }
                    }
                }
            }
        })
    }

    // ----- transactions -------------------------------------------------

    fn session(&mut self, request: RequestId) -> &mut Session {
        if self.sessions.len() <= request {
            self.sessions.resize_with(request + 1, Session::default);
        }
        &mut self.sessions[request]
    }

    /// Every insert draws an id before it runs, whatever its outcome, as a
    /// client that generates ids does; a retry after a wait reuses it.
    fn draw_id(&mut self, request: RequestId, prefix: &str) -> String {
        match self.session(request).pending_id.take() {
            Some(id) => id,
            None => self.ids.next_id(prefix),
        }
    }

    /// Runs an inserting statement with its drawn `id`, keeping the id for
    /// the retry if the statement must wait.
    fn kept_id<T>(
        &mut self,
        request: RequestId,
        id: String,
        body: impl FnOnce(&mut World, TxnId, &str) -> Step<T>,
    ) -> Step<T> {
        let result = self.statement(request, |w, txn| body(w, txn, &id));
        if result.is_err() {
            self.session(request).pending_id = Some(id);
        }
        result
    }

    fn new_txn(&mut self) -> TxnId {
        let txn = self.next_txn;
        self.next_txn += 1;
        txn
    }

    /// The transaction a plain read sees through: the open one, or none.
    fn reader_txn(&self, request: RequestId) -> TxnId {
        self.open_txn(request).unwrap_or(0)
    }

    /// Runs one statement: inside `request`'s open transaction, or as its
    /// own transaction (autocommit) that commits when the statement
    /// completes. A blocked statement leaves nothing behind.
    fn statement<T>(
        &mut self,
        request: RequestId,
        body: impl FnOnce(&mut World, TxnId) -> Step<T>,
    ) -> Step<T> {
        let open = self.session(request).txn;
        let txn = open.unwrap_or(self.next_txn);
        let result = body(self, txn);
        if result.is_ok() {
            self.session(request).candidates = None;
            if open.is_none() {
                self.next_txn += 1;
                self.finish_txn(txn, true);
            }
        }
        result
    }

    /// A statement failed: the open transaction rolls back with it.
    fn fail(&mut self, request: RequestId, error: DbError) -> Outcome {
        self.crash(request);
        Outcome::DbError { error }
    }

    fn finish_txn(&mut self, txn: TxnId, commit: bool) {
        self.customers.finish(txn, commit);
        self.products.finish(txn, commit);
        self.usage.finish(txn, commit);
    }

    fn note_scope(&mut self, request: RequestId, wanted: &Scope, touched: &Scope, point: Point) {
        if wanted != touched {
            self.isolation_breaches.push(IsolationBreach {
                request,
                request_scope: wanted.clone(),
                touched_scope: touched.clone(),
                point,
            });
        }
    }

    /// Notes a breach if customer `internal_id` (as `txn` sees it) is not in `scope`.
    fn note_scope_of(
        &mut self,
        request: RequestId,
        txn: TxnId,
        scope: &Scope,
        internal_id: &str,
        point: Point,
    ) {
        if let Some(index) = self.find_internal(txn, internal_id) {
            let touched = self.customers.rows[index].visible(txn).expect("found visible").scope();
            self.note_scope(request, scope, &touched, point);
        }
    }

    /// Takes `mode` on row `index` for `txn`: an open transaction keeps it
    /// until it ends; a single statement's lock ends with it, so only the
    /// wait matters.
    fn lock_row(&mut self, txn: TxnId, index: usize, mode: LockMode) -> Step<()> {
        let tuple = &mut self.customers.rows[index];
        tuple.check_lock(txn, mode)?;
        tuple.lock(txn, mode);
        Ok(())
    }

    /// Candidate rows of an `UPDATE`/`FOR UPDATE`: those found before a
    /// wait, or a fresh scan.
    fn candidates(&mut self, request: RequestId, scan: impl FnOnce(&World) -> Vec<usize>) -> Vec<usize> {
        if let Some(found) = self.sessions.get(request).and_then(|s| s.candidates.clone()) {
            return found;
        }
        let found = scan(self);
        self.session(request).candidates = Some(found.clone());
        found
    }

    /// Waits for every candidate's conflicting holder; `Ok` once none conflicts.
    fn wait_for_rows(&self, txn: TxnId, rows: &[usize], mode: LockMode) -> Step<()> {
        rows.iter().try_for_each(|&i| self.customers.rows[i].check_lock(txn, mode))
    }

    // ----- customers ----------------------------------------------------

    fn find_customer(&self, txn: TxnId, scope: &Scope, key: &CustomerKey) -> Option<usize> {
        self.customers
            .visible(txn)
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
    fn find_internal(&self, txn: TxnId, internal_id: &str) -> Option<usize> {
        self.customers.visible(txn).find(|(_, r)| r.internal_id == internal_id).map(|(i, _)| i)
    }

    fn lookup_id(&mut self, txn: TxnId, scope: &Scope, id: &str, lock: RowLock) -> Step<Option<CustomerRow>> {
        let key = CustomerKey::Id(id.to_owned());
        let Some(index) = self.find_customer(txn, scope, &key) else { return Ok(None) };
        if let Some(mode) = lock_mode(lock) {
            self.lock_row(txn, index, mode)?;
        }
        Ok(self.customers.rows[index].visible(txn).cloned())
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
            let taken = self.customers.unique_probe(txn, except, |r| {
                r.scope_is(&row.scope()) && r.id.as_deref() == Some(id.as_str())
            })?;
            if let Some(index) = taken {
                return Ok(Some((index, ID_CONSTRAINT)));
            }
        }
        if self.constraints.idless_email_unique {
            if let Some(email) = row.idless_email_key() {
                let taken = self.customers.unique_probe(txn, except, |r| {
                    r.scope_is(&row.scope()) && r.idless_email_key().as_ref() == Some(&email)
                })?;
                if let Some(index) = taken {
                    return Ok(Some((index, EMAIL_CONSTRAINT)));
                }
            }
        }
        Ok(None)
    }

    fn insert(
        &mut self,
        txn: TxnId,
        new: &NewCustomer,
        on_conflict: OnConflict,
        id: &str,
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
            created_at: self.now_ms(),
            default_scope: new.default_scope.clone(),
            stripe_wanted: new.stripe_wanted,
        };
        match self.customer_conflict(txn, None, &row)? {
            Some((index, constraint)) => Ok(match on_conflict {
                OnConflict::Error => Err(DbError::UniqueViolation { constraint: constraint.to_owned() }),
                OnConflict::DoNothing => Ok(InsertOutcome::Skipped),
                OnConflict::ReturnExisting => {
                    let tuple = &mut self.customers.rows[index];
                    tuple.check_lock(txn, LockMode::NoKeyUpdate)?;
                    let existing = tuple.visible(txn).cloned().expect("a conflicting row is visible");
                    tuple.write(txn, existing.clone(), LockMode::NoKeyUpdate);
                    Ok(InsertOutcome::Existing(existing))
                }
            }),
            None => {
                row.internal_id = id.to_owned();
                self.customers.rows.push(Tuple::inserted(txn, row.clone()));
                Ok(Ok(InsertOutcome::Inserted(row)))
            }
        }
    }

    /// An `UPDATE … RETURNING` of one customer row: finds candidates with
    /// `matches`, waits for their holders, re-checks `matches` on the latest
    /// version, applies `change`, and checks unique keys.
    fn update_customer(
        &mut self,
        request: RequestId,
        txn: TxnId,
        mode: LockMode,
        matches: impl Fn(&CustomerRow) -> bool,
        change: impl Fn(&mut CustomerRow),
    ) -> Step<Result<Option<CustomerRow>, DbError>> {
        let found = self.candidates(request, |w| {
            w.customers.visible(txn).filter(|(_, r)| matches(r)).map(|(i, _)| i).collect()
        });
        self.wait_for_rows(txn, &found, mode)?;
        for index in found {
            let Some(current) = self.customers.rows[index].visible(txn) else { continue };
            if !matches(current) {
                continue;
            }
            let mut updated = current.clone();
            change(&mut updated);
            let conflict = match self.customer_conflict(txn, Some(index), &updated) {
                Ok(conflict) => conflict,
                Err(blocked) => {
                    // Postgres has written the new version before it checks the
                    // unique index, so the row stays locked while it waits. (In
                    // an open transaction only: a single statement's lock would
                    // outlive it here, and no flow's autocommit update waits so.)
                    if self.open_txn(request) == Some(txn) {
                        self.customers.rows[index].lock(txn, mode);
                    }
                    return Err(blocked);
                }
            };
            if let Some((_, constraint)) = conflict {
                return Ok(Err(DbError::UniqueViolation { constraint: constraint.to_owned() }));
            }
            self.customers.rows[index].write(txn, updated.clone(), mode);
            return Ok(Ok(Some(updated)));
        }
        Ok(Ok(None))
    }

    fn claim(
        &mut self,
        request: RequestId,
        txn: TxnId,
        scope: &Scope,
        target: &ClaimTarget,
        new_id: &str,
    ) -> Step<Result<Option<CustomerRow>, DbError>> {
        if let ClaimTarget::Row { internal_id } = target {
            if let Some(index) = self.find_internal(txn, internal_id) {
                let touched = self.customers.rows[index].visible(txn).expect("visible").scope();
                self.note_scope(request, scope, &touched, Point::Claim);
            }
        }
        let wanted_email = match target {
            ClaimTarget::IdlessEmail { email } => Some(email.to_lowercase()),
            ClaimTarget::Row { .. } => None,
        };
        let matches = |r: &CustomerRow| {
            r.scope_is(scope)
                && match target {
                    ClaimTarget::Row { internal_id } => r.internal_id == *internal_id,
                    ClaimTarget::IdlessEmail { .. } => r.idless_email_key() == wanted_email,
                }
        };
        // The id is a unique-key column: the update takes the strongest lock.
        self.update_customer(request, txn, LockMode::Update, matches, |r| r.id = Some(new_id.to_owned()))
    }

    fn fill_fields(
        &mut self,
        request: RequestId,
        txn: TxnId,
        scope: &Scope,
        internal_id: &str,
        fill: &Fill,
    ) -> Step<Result<Option<CustomerRow>, DbError>> {
        let matches = |r: &CustomerRow| r.scope_is(scope) && r.internal_id == internal_id && fill.changes(r);
        self.update_customer(request, txn, LockMode::NoKeyUpdate, matches, |r| fill.apply(r))
    }

    fn set_processor(
        &mut self,
        request: RequestId,
        txn: TxnId,
        scope: &Scope,
        internal_id: &str,
        stripe_id: &str,
        only_if_null: bool,
    ) -> Step<bool> {
        let matches = |r: &CustomerRow| {
            r.scope_is(scope) && r.internal_id == internal_id && (!only_if_null || r.processor.is_none())
        };
        let result = self.update_customer(request, txn, LockMode::NoKeyUpdate, matches, |r| {
            r.processor = Some(stripe_id.to_owned())
        })?;
        Ok(matches!(result, Ok(Some(_))))
    }

    fn db_read(
        &mut self,
        txn: TxnId,
        scope: &Scope,
        key: &CustomerKey,
        lock: RowLock,
    ) -> Step<Option<FullCustomer>> {
        let Some(index) = self.find_customer(txn, scope, key) else { return Ok(None) };
        if let Some(mode) = lock_mode(lock) {
            self.lock_row(txn, index, mode)?;
        }
        let row = self.customers.rows[index].visible(txn).cloned().expect("found above");
        Ok(Some(self.full_customer(txn, row)))
    }

    /// Assembles a full customer as `txn` sees it.
    fn full_customer(&self, txn: TxnId, customer: CustomerRow) -> FullCustomer {
        let mut products: Vec<CustomerProduct> = self
            .products
            .visible(txn)
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
        for (_, usage) in
            self.usage.visible(txn).filter(|(_, u)| u.internal_customer_id == customer.internal_id)
        {
            balances.entry(usage.feature_id.clone()).or_default().usage += usage.usage;
        }
        FullCustomer { customer, products, balances }
    }

    // ----- products and usage -------------------------------------------

    /// The foreign-key check of an insert referencing customer
    /// `internal_id`: the row must be visible, and the insert takes a
    /// key-share lock on it.
    fn reference_customer(
        &mut self,
        txn: TxnId,
        internal_id: &str,
        constraint: &str,
    ) -> Step<Result<(), DbError>> {
        let Some(index) = self.find_internal(txn, internal_id) else {
            return Ok(Err(DbError::ForeignKeyViolation { constraint: constraint.to_owned() }));
        };
        self.lock_row(txn, index, LockMode::KeyShare)?;
        Ok(Ok(()))
    }

    fn attach(
        &mut self,
        request: RequestId,
        txn: TxnId,
        scope: &Scope,
        product: &NewCustomerProduct,
        on_conflict: OnConflict,
        id: &str,
    ) -> Step<Result<AttachOutcome, DbError>> {
        self.note_scope_of(request, txn, scope, &product.internal_customer_id, Point::AttachDefault);
        if self.constraints.product_group_unique {
            let taken = self.products.unique_probe(txn, None, |p| {
                p.internal_customer_id == product.internal_customer_id && p.group == product.group
            })?;
            if taken.is_some() {
                return Ok(match on_conflict {
                    OnConflict::Error => {
                        Err(DbError::UniqueViolation { constraint: PRODUCT_GROUP_CONSTRAINT.to_owned() })
                    }
                    OnConflict::DoNothing | OnConflict::ReturnExisting => Ok(AttachOutcome::Skipped),
                });
            }
        }
        if let Err(error) = self.reference_customer(txn, &product.internal_customer_id, PRODUCT_FK)? {
            return Ok(Err(error));
        }
        let row = CustomerProduct {
            id: id.to_owned(),
            internal_customer_id: product.internal_customer_id.clone(),
            product_id: product.product_id.clone(),
            group: product.group.clone(),
            status: product.status,
            created_at: self.now_ms(),
        };
        self.products.rows.push(Tuple::inserted(txn, row.clone()));
        Ok(Ok(AttachOutcome::Attached(row)))
    }

    /// `INSERT INTO balances … ON CONFLICT (customer, feature) DO UPDATE SET
    /// usage = new_usage(usage)`; returns the usage written.
    fn upsert_usage(
        &mut self,
        request: RequestId,
        txn: TxnId,
        scope: &Scope,
        internal_id: &str,
        feature_id: &str,
        new_usage: impl Fn(i64) -> i64,
    ) -> Step<Result<i64, DbError>> {
        self.note_scope_of(request, txn, scope, internal_id, Point::Deduct);
        let existing = self.usage.unique_probe(txn, None, |u| {
            u.internal_customer_id == internal_id && u.feature_id == feature_id
        })?;
        match existing {
            Some(index) => {
                let tuple = &mut self.usage.rows[index];
                tuple.check_lock(txn, LockMode::NoKeyUpdate)?;
                let mut row = tuple.visible(txn).cloned().expect("probe saw it");
                row.usage = new_usage(row.usage);
                let usage = row.usage;
                tuple.write(txn, row, LockMode::NoKeyUpdate);
                Ok(Ok(usage))
            }
            None => {
                if let Err(error) = self.reference_customer(txn, internal_id, USAGE_FK)? {
                    return Ok(Err(error));
                }
                let usage = new_usage(0);
                let row = UsageRow {
                    internal_customer_id: internal_id.to_owned(),
                    feature_id: feature_id.to_owned(),
                    usage,
                };
                self.usage.rows.push(Tuple::inserted(txn, row));
                Ok(Ok(usage))
            }
        }
    }

    // ----- what the oracle reads ----------------------------------------

    /// Committed customers, in insertion order.
    pub fn committed_customers(&self) -> Vec<CustomerRow> {
        self.customers.rows.iter().filter_map(|t| t.committed.clone()).collect()
    }

    /// The committed full customer (what a fresh DB read returns).
    pub fn committed_full(&self, internal_id: &str) -> Option<FullCustomer> {
        let row = self
            .customers
            .rows
            .iter()
            .filter_map(|t| t.committed.as_ref())
            .find(|r| r.internal_id == internal_id)?;
        Some(self.full_customer(0, row.clone()))
    }

    pub fn cache_entries(&self) -> impl Iterator<Item = (&CacheKey, &FullCustomer)> {
        self.cache.entries()
    }

    pub fn cache_slot(&self, key: &CacheKey) -> Option<&CacheSlot> {
        self.cache.slot(key)
    }

    pub fn stripe_customers(&self) -> &[StripeCustomer] {
        self.stripe.customers()
    }

    /// True when no transaction is open and no row holds a lock or pending write.
    pub fn is_quiescent(&self) -> bool {
        self.sessions.iter().all(|s| s.txn.is_none())
            && self.customers.rows.iter().all(|t| t.pending.is_none() && t.locks.is_empty())
            && self.products.rows.iter().all(|t| t.pending.is_none() && t.locks.is_empty())
            && self.usage.rows.iter().all(|t| t.pending.is_none() && t.locks.is_empty())
    }
}

fn lock_mode(lock: RowLock) -> Option<LockMode> {
    match lock {
        RowLock::None => None,
        RowLock::ForShare => Some(LockMode::Share),
        RowLock::ForUpdate => Some(LockMode::Update),
    }
}
