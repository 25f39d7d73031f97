//! The database of the in-memory world: the tables (customers, their
//! products, usage; the catalog), their unique indexes, row locks,
//! transactions and sessions, and the wait-for graph, with the READ
//! COMMITTED semantics of [`store`].
//!
//! Every statement either completes or reports that it must wait for
//! another transaction ([`Blocked`]), having changed nothing (but for the
//! candidate rows of an `UPDATE` and an insert's drawn id, which its retry
//! reuses, as Postgres does). Time and ids come from the caller.

mod advisory;
mod customers;
pub mod store;
mod usage;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::backend::{Constraints, DbError, Point};
use crate::model::{Catalog, CustomerProduct, CustomerRow, FullCustomer, Scope};

pub use advisory::advisory_key;
use store::{Blocked, LockMode, Table, TxnId};
pub use usage::UsageRow;

/// Index of a request (a session) within a run.
pub type RequestId = usize;

pub const ID_CONSTRAINT: &str = "customers_org_env_id_key";
pub const EMAIL_CONSTRAINT: &str = "customers_org_env_lower_email_idless_key";
pub const PRODUCT_GROUP_CONSTRAINT: &str = "customer_products_customer_group_key";
pub const PRODUCT_FK: &str = "customer_products_internal_customer_id_fkey";
pub const USAGE_FK: &str = "balances_internal_customer_id_fkey";

/// A statement that may have to wait.
pub type Step<T> = Result<T, Blocked>;

#[derive(Debug, Clone, Default)]
struct Session {
    txn: Option<TxnId>,
    /// Rows an `UPDATE`/`FOR UPDATE` found before it had to wait: after the
    /// wait it re-checks these, as Postgres does, instead of scanning anew.
    candidates: Option<Vec<usize>>,
    /// The id an insert drew before it had to wait: the client draws it
    /// once, before sending the statement, and sends the same one again.
    pending_id: Option<String>,
    /// The transaction this session's statement waits for: its edge of the
    /// wait-for graph.
    waits_for: Option<TxnId>,
}

/// A request that touched a row of another `(org, env)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IsolationBreach {
    pub request: RequestId,
    pub request_scope: Scope,
    pub touched_scope: Scope,
    pub point: Point,
}

#[derive(Debug, Clone)]
pub struct Database {
    /// The `products` table, read-only during a run.
    catalog: Catalog,
    constraints: Constraints,
    customers: Table<CustomerRow>,
    products: Table<CustomerProduct>,
    usage: Table<UsageRow>,
    /// Advisory locks held, by key, and the transaction holding each.
    advisory: BTreeMap<String, TxnId>,
    next_txn: TxnId,
    /// Per request: its transaction, its statement's state, and what it
    /// waits for (the wait-for graph).
    sessions: Vec<Session>,
    breaches: Vec<IsolationBreach>,
}

impl Database {
    pub fn new(catalog: Catalog, constraints: Constraints) -> Database {
        Database {
            catalog,
            constraints,
            customers: Table::default(),
            products: Table::default(),
            usage: Table::default(),
            advisory: BTreeMap::new(),
            next_txn: 1,
            sessions: Vec::new(),
            breaches: Vec::new(),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn constraints(&self) -> Constraints {
        self.constraints
    }

    // ----- transactions and sessions ------------------------------------

    fn session(&mut self, request: RequestId) -> &mut Session {
        if self.sessions.len() <= request {
            self.sessions.resize_with(request + 1, Session::default);
        }
        &mut self.sessions[request]
    }

    /// The open transaction of `request`, if any.
    pub fn open_txn(&self, request: RequestId) -> Option<TxnId> {
        self.sessions.get(request).and_then(|s| s.txn)
    }

    /// The request whose open transaction is `txn`.
    pub fn request_of_txn(&self, txn: TxnId) -> Option<RequestId> {
        self.sessions.iter().position(|s| s.txn == Some(txn))
    }

    /// `BEGIN` for `request`.
    pub fn begin(&mut self, request: RequestId) {
        assert!(self.session(request).txn.is_none(), "BEGIN inside an open transaction");
        let txn = self.new_txn();
        self.session(request).txn = Some(txn);
    }

    /// `COMMIT` for `request` (a no-op outside a transaction).
    pub fn commit(&mut self, request: RequestId) {
        if let Some(txn) = self.session(request).txn.take() {
            self.finish_txn(txn, true);
        }
    }

    /// `request`'s open transaction rolls back (`ROLLBACK`, a failed
    /// statement, a crash, a deadlock victim), and what it was in the
    /// middle of is forgotten.
    pub fn roll_back(&mut self, request: RequestId) {
        if let Some(txn) = self.session(request).txn.take() {
            self.finish_txn(txn, false);
        }
        let session = self.session(request);
        session.candidates = None;
        session.pending_id = None;
    }

    /// A statement failed: the open transaction rolls back with it.
    fn fail<T>(&mut self, request: RequestId, error: DbError) -> Result<T, DbError> {
        self.roll_back(request);
        Err(error)
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
        body: impl FnOnce(&mut Database, TxnId) -> Step<T>,
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

    /// Every insert draws an id before it runs, whatever its outcome, as a
    /// client that generates ids does; a retry after a wait reuses it.
    /// `draw` makes a fresh one.
    pub fn drawn_id(&mut self, request: RequestId, draw: impl FnOnce() -> String) -> String {
        match self.session(request).pending_id.take() {
            Some(id) => id,
            None => draw(),
        }
    }

    /// Runs an inserting statement with its drawn `id`, keeping the id for
    /// the retry if the statement must wait.
    fn kept_id<T>(
        &mut self,
        request: RequestId,
        id: String,
        body: impl FnOnce(&mut Database, TxnId, &str) -> Step<T>,
    ) -> Step<T> {
        let result = self.statement(request, |db, txn| body(db, txn, &id));
        if result.is_err() {
            self.session(request).pending_id = Some(id);
        }
        result
    }

    fn finish_txn(&mut self, txn: TxnId, commit: bool) {
        self.customers.finish(txn, commit);
        self.products.finish(txn, commit);
        self.usage.finish(txn, commit);
        if !self.advisory.is_empty() {
            self.advisory.retain(|_, holder| *holder != txn);
        }
    }

    // ----- the wait-for graph -------------------------------------------

    /// Records that `request` waits for transaction `txn`, or (`None`)
    /// that it waits for nothing.
    pub fn set_waiting(&mut self, request: RequestId, txn: Option<TxnId>) {
        if txn.is_some() || self.waiting_for(request).is_some() {
            self.session(request).waits_for = txn;
        }
    }

    /// The transaction `request` waits for, if it waits.
    pub fn waiting_for(&self, request: RequestId) -> Option<TxnId> {
        self.sessions.get(request).and_then(|s| s.waits_for)
    }

    /// Whether `request`'s wait closes a cycle of waits. Every driver that
    /// lets requests wait asks this before parking one: a wait that closes
    /// a cycle makes the waiter the deadlock victim.
    pub fn closes_cycle(&self, request: RequestId) -> bool {
        let mut current = request;
        for _ in 0..=self.sessions.len() {
            let Some(txn) = self.waiting_for(current) else { return false };
            let Some(holder) = self.request_of_txn(txn) else { return false };
            if holder == request {
                return true;
            }
            current = holder;
        }
        false
    }

    // ----- tenant isolation ---------------------------------------------

    pub fn isolation_breaches(&self) -> &[IsolationBreach] {
        &self.breaches
    }

    /// Notes a breach if `request`, acting in `wanted`, touched `touched`.
    pub fn note_scope(&mut self, request: RequestId, wanted: &Scope, touched: &Scope, point: Point) {
        if wanted != touched {
            self.breaches.push(IsolationBreach {
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

    // ----- row locks ----------------------------------------------------

    /// Takes `mode` on customer row `index` for `txn`: an open transaction
    /// keeps it until it ends; a single statement's lock ends with it, so
    /// only the wait matters.
    fn lock_row(&mut self, txn: TxnId, index: usize, mode: LockMode) -> Step<()> {
        let tuple = &mut self.customers.rows[index];
        tuple.check_lock(txn, mode)?;
        tuple.lock(txn, mode);
        Ok(())
    }

    /// Candidate rows of an `UPDATE`/`FOR UPDATE`: those found before a
    /// wait, or a fresh scan.
    fn candidates(&mut self, request: RequestId, scan: impl FnOnce(&Database) -> Vec<usize>) -> Vec<usize> {
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

    /// Every committed full customer, in insertion order.
    pub fn committed_fulls(&self) -> Vec<FullCustomer> {
        self.customers
            .rows
            .iter()
            .filter_map(|t| t.committed.clone())
            .map(|row| self.full_customer(0, row))
            .collect()
    }

    /// True when no transaction is open and no row holds a lock or pending write.
    pub fn is_quiescent(&self) -> bool {
        self.sessions.iter().all(|s| s.txn.is_none())
            && self.customers.rows.iter().all(|t| t.pending.is_none() && t.locks.is_empty())
            && self.products.rows.iter().all(|t| t.pending.is_none() && t.locks.is_empty())
            && self.usage.rows.iter().all(|t| t.pending.is_none() && t.locks.is_empty())
            && self.advisory.is_empty()
    }
}

fn lock_mode(lock: crate::backend::RowLock) -> Option<LockMode> {
    use crate::backend::RowLock;
    match lock {
        RowLock::None => None,
        RowLock::ForShare => Some(LockMode::Share),
        RowLock::ForUpdate => Some(LockMode::Update),
    }
}
