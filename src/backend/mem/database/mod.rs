//! The database of the in-memory world: the tables (customers, their
//! products, usage; the catalog), their unique indexes, row locks,
//! transactions and sessions, and the wait-for graph, with the READ
//! COMMITTED semantics of [`store`].
//!
//! Every statement either completes or reports that it must wait for
//! another transaction ([`Blocked`]). A statement that waits keeps what it
//! had done before the wait, as Postgres's does: the rows an `UPDATE`
//! found and those it has already changed, the locks it took, a row it
//! inserted before its foreign-key check, an insert's drawn id and time.
//! When it runs again it goes on from there. A statement outside a
//! transaction runs in one of its own, which ends with the statement:
//! committed, or rolled back if the statement failed. Time and ids come
//! from the caller.

mod advisory;
mod customers;
mod fingerprint;
mod sessions;
pub mod store;
mod touched;
mod usage;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::backend::{Constraints, DbError, Point};
use crate::model::{Catalog, CustomerProduct, CustomerRow, FullCustomer, Scope};

pub use advisory::advisory_key;
use sessions::Sessions;
use store::{Blocked, LockMode, RowKey, Table, TxnId};
use touched::Touches;
pub use touched::{Access, DbKey, Name};
pub use usage::{key_applied, Deducted, Deductions, UsageRow, APPLIED_KEY_WINDOW_MS};

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
    /// `txn` is a single statement's own transaction (it waits).
    implicit: bool,
    /// Rows the statement under way has written so far (in the one table
    /// it writes): it goes on from them after a wait.
    written: Vec<usize>,
    /// Rows an `UPDATE`/`FOR UPDATE` found before it had to wait: after the
    /// wait it re-checks these, as Postgres does, instead of scanning anew.
    candidates: Option<Vec<usize>>,
    /// The id an insert drew before it had to wait: the client draws it
    /// once, before sending the statement, and sends the same one again.
    pending_id: Option<(String, u64)>,
    /// What this session's statement waits for, if it waits.
    wait: Option<Wait>,
    /// What the statement that just had to wait was blocked by (taken up
    /// by [`Database::begin_wait`]).
    blocked_by: Option<WaitNote>,
}

/// A row a statement may wait to lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RowRef {
    Customer(usize),
    Usage(usize),
}

/// What a blocked statement found in its way: every transaction holding a
/// lock that conflicts with the one it wants, and the row, for a row lock.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WaitNote {
    holders: Vec<TxnId>,
    row: Option<(RowRef, LockMode)>,
    /// The advisory lock's key, for a wait on one.
    advisory: Option<String>,
}

/// A session's wait. A row lock's waiters queue on the row (Postgres's
/// tuple lock, a lock of the same strength as the row lock wanted): a
/// waiter whose lock conflicts with one wanted by an earlier waiter
/// waits behind it, and moves only once no such waiter is left; the
/// others wait for the holders, and all move when the holders end. A
/// wait on a unique key has no queue: when the holder ends, every waiter
/// may move, in any order. An advisory lock is Postgres's heavyweight
/// lock: its waiters queue, and the one at the head is granted the lock
/// as the holder releases it, before it even runs again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wait {
    holders: Vec<TxnId>,
    row: Option<(RowRef, LockMode)>,
    advisory: Option<String>,
    /// Place in the row's queue: kept when a woken waiter waits on the
    /// same row again (it still holds the tuple lock).
    seq: u64,
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
    /// waits for (the wait-for graph). A served request's is forgotten when
    /// it ends ([`Database::forget_session`]).
    sessions: Sessions<Session>,
    breaches: Vec<IsolationBreach>,
    /// Waits begun so far (the row queues' order).
    waits_begun: u64,
    touches: Touches,
    /// Deductions counted by an open transaction, with its request: they
    /// take effect when it commits, and vanish if it rolls back.
    pending_deductions: BTreeMap<TxnId, (RequestId, u64)>,
    /// Per request, what its deductions did: those of its usage that
    /// committed, and its keyed deductions run (counted or not), with the
    /// time the last ran at.
    deductions: BTreeMap<RequestId, Deductions>,
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
            sessions: Sessions::default(),
            breaches: Vec::new(),
            pending_deductions: BTreeMap::new(),
            deductions: BTreeMap::new(),
            waits_begun: 0,
            touches: Touches::default(),
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
        self.sessions.entry(request)
    }

    /// The open transaction of `request`, if any.
    pub fn open_txn(&self, request: RequestId) -> Option<TxnId> {
        self.sessions.get(request).and_then(|s| s.txn)
    }

    /// Forgets `request`'s session (it has ended: a served request), unless
    /// it still holds a transaction or waits, so that a server keeps no
    /// slot per request it has served.
    pub fn forget_session(&mut self, request: RequestId) {
        if self.sessions.get(request).is_some_and(|s| s.txn.is_none() && s.wait.is_none()) {
            self.sessions.remove(request);
        }
    }

    /// The request whose open transaction is `txn`.
    pub fn request_of_txn(&self, txn: TxnId) -> Option<RequestId> {
        self.sessions.iter().find(|(_, s)| s.txn == Some(txn)).map(|(r, _)| r)
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
        session.implicit = false;
        session.candidates = None;
        session.pending_id = None;
        session.written.clear();
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

    /// Runs one statement: inside `request`'s open transaction, or in one
    /// of its own (autocommit) that ends when the statement does:
    /// committed, or rolled back if it failed. A statement that must wait
    /// keeps its transaction, and what it did before the wait, until it
    /// runs again.
    fn statement<T: StatementResult>(
        &mut self,
        request: RequestId,
        body: impl FnOnce(&mut Database, TxnId) -> Step<T>,
    ) -> Step<T> {
        let (txn, own) = match self.session(request).txn {
            Some(txn) => (txn, self.session(request).implicit),
            None => {
                let txn = self.new_txn();
                (txn, true)
            }
        };
        let session = self.session(request);
        session.blocked_by = None;
        if own {
            session.txn = Some(txn);
            session.implicit = true;
        }
        let result = body(self, txn);
        match &result {
            Ok(value) => {
                let session = self.session(request);
                session.candidates = None;
                session.written.clear();
                if own {
                    session.txn = None;
                    session.implicit = false;
                    self.finish_txn(txn, !value.failed());
                }
            }
            Err(Blocked(holder)) => {
                let session = self.session(request);
                if session.blocked_by.is_none() {
                    session.blocked_by = Some(WaitNote { holders: vec![*holder], row: None, advisory: None });
                }
            }
        }
        result
    }

    /// Every insert draws an id and reads the clock before it runs,
    /// whatever its outcome, as a client that generates ids and timestamps
    /// does; the statement that waited runs on with the same ones. `draw`
    /// makes a fresh id; `now_ms` is the time now.
    pub fn drawn_id(
        &mut self,
        request: RequestId,
        now_ms: u64,
        draw: impl FnOnce() -> String,
    ) -> (String, u64) {
        match self.session(request).pending_id.take() {
            Some(drawn) => drawn,
            None => (draw(), now_ms),
        }
    }

    /// Runs an inserting statement with its drawn id and time, keeping
    /// them for when it runs on if the statement must wait.
    fn kept_id<T: StatementResult>(
        &mut self,
        request: RequestId,
        drawn: (String, u64),
        body: impl FnOnce(&mut Database, TxnId, &str, u64) -> Step<T>,
    ) -> Step<T> {
        let result = self.statement(request, |db, txn| body(db, txn, &drawn.0, drawn.1));
        if result.is_err() {
            self.session(request).pending_id = Some(drawn);
        }
        result
    }

    fn finish_txn(&mut self, txn: TxnId, commit: bool) {
        if let Some((request, n)) = self.pending_deductions.remove(&txn) {
            if commit {
                self.deductions.entry(request).or_default().counted += n;
            }
        }
        self.touch_end(txn);
        self.customers.finish(txn, commit);
        self.products.finish(txn, commit);
        self.usage.finish(txn, commit);
        let released: Vec<String> =
            self.advisory.iter().filter(|(_, holder)| **holder == txn).map(|(key, _)| key.clone()).collect();
        for key in released {
            self.advisory.remove(&key);
            self.grant_advisory(&key);
        }
    }

    // ----- the wait-for graph -------------------------------------------

    /// A released advisory lock goes to the first waiter in its queue,
    /// at once; the others now wait for that one.
    fn grant_advisory(&mut self, key: &str) {
        let waiting =
            |s: &Session| s.wait.as_ref().filter(|w| w.advisory.as_deref() == Some(key)).map(|w| w.seq);
        let Some(first) = self
            .sessions
            .iter()
            .filter_map(|(r, s)| waiting(s).map(|seq| (r, seq)))
            .min_by_key(|&(_, seq)| seq)
            .map(|(r, _)| r)
        else {
            return;
        };
        let Some(txn) = self.sessions[first].txn else { return };
        self.advisory.insert(key.to_owned(), txn);
        self.touch(Access::Write, Some(txn), || DbKey::advisory(key));
        for (r, session) in self.sessions.iter_mut() {
            if r != first && waiting(session).is_some() {
                if let Some(wait) = session.wait.as_mut() {
                    wait.holders = vec![txn];
                }
            }
        }
    }

    /// `request`'s statement must wait for `txn` (and whatever else it
    /// found in its way): its edges enter the wait-for graph.
    pub fn begin_wait(&mut self, request: RequestId, txn: TxnId) {
        let note = self.session(request).blocked_by.take();
        let note = note.unwrap_or(WaitNote { holders: vec![txn], row: None, advisory: None });
        let kept = self
            .session(request)
            .wait
            .as_ref()
            .filter(|w| w.row.is_some() && w.row == note.row)
            .map(|w| w.seq);
        let seq = kept.unwrap_or_else(|| {
            self.waits_begun += 1;
            self.waits_begun
        });
        if self.recording() {
            let own = self.open_txn(request);
            self.touch_wait(own, &note.holders);
            if let Some(key) = &note.advisory {
                self.touch(Access::Write, own, || DbKey::advisory(key));
            }
        }
        let wait = Wait { holders: note.holders, row: note.row, advisory: note.advisory, seq };
        self.session(request).wait = Some(wait);
    }

    /// `request` waits for nothing (its statement completed, failed, or
    /// its session ended).
    pub fn end_wait(&mut self, request: RequestId) {
        let mut waited = false;
        if let Some(session) = self.sessions.get_mut(request) {
            waited = session.wait.take().is_some();
            session.blocked_by = None;
        }
        if waited {
            self.touch(Access::Write, None, || DbKey::Waits);
        }
    }

    /// Whether `request`'s statement is waiting (perhaps woken, not yet
    /// run again).
    pub fn is_waiting(&self, request: RequestId) -> bool {
        self.sessions.get(request).is_some_and(|s| s.wait.is_some())
    }

    /// The open transactions `request` waits for now: its edges of the
    /// wait-for graph. A row lock's waiter behind others waits for them
    /// (their transactions, or, outside one, what they wait for). Empty
    /// when it does not wait, or when what it waits for has ended.
    pub fn edges(&self, request: RequestId) -> Vec<TxnId> {
        let Some(wait) = self.sessions.get(request).and_then(|s| s.wait.as_ref()) else { return Vec::new() };
        let ahead = self.waiters_ahead(request, wait);
        if !ahead.is_empty() {
            let mut edges: Vec<TxnId> = Vec::new();
            for r in ahead {
                match self.open_txn(r) {
                    Some(txn) => edges.push(txn),
                    None => edges.extend(self.edges(r)),
                }
            }
            edges.dedup();
            return edges;
        }
        wait.holders.iter().copied().filter(|&t| self.request_of_txn(t).is_some()).collect()
    }

    /// The earlier waiters on `request`'s row whose lock conflicts with
    /// the one it wants: it queues behind them.
    fn waiters_ahead(&self, request: RequestId, wait: &Wait) -> Vec<RequestId> {
        let Some((row, mode)) = wait.row else { return Vec::new() };
        self.sessions
            .iter()
            .filter(|&(r, _)| r != request)
            .filter(|(_, session)| {
                session.wait.as_ref().is_some_and(|w| {
                    w.seq < wait.seq
                        && w.row.is_some_and(|(their_row, theirs)| {
                            their_row == row && theirs.conflicts_with(mode)
                        })
                })
            })
            .map(|(r, _)| r)
            .collect()
    }

    /// Whether `request` waited and its wait is over: what it waited for
    /// has ended, and no waiter is ahead of it. It may run again, in any
    /// order with everyone else.
    pub fn woken(&self, request: RequestId) -> bool {
        let Some(wait) = self.sessions.get(request).and_then(|s| s.wait.as_ref()) else { return false };
        self.waiters_ahead(request, wait).is_empty()
            && wait.holders.iter().all(|&t| self.request_of_txn(t).is_none())
    }

    /// When `request`'s wait began, in the order of all waits.
    pub fn wait_seq(&self, request: RequestId) -> Option<u64> {
        self.sessions.get(request).and_then(|s| s.wait.as_ref()).map(|w| w.seq)
    }

    /// The first transaction `request` waits for, if it waits.
    pub fn waiting_for(&self, request: RequestId) -> Option<TxnId> {
        self.edges(request).first().copied()
    }

    /// Whether `request` is on a cycle of waits (a deadlock). Any member
    /// of a cycle may be its victim: the one whose `deadlock_timeout`
    /// fires first.
    pub fn in_cycle(&self, request: RequestId) -> bool {
        let mut seen: BTreeSet<RequestId> = BTreeSet::new();
        let mut stack: Vec<RequestId> = vec![request];
        while let Some(current) = stack.pop() {
            for txn in self.edges(current) {
                let Some(holder) = self.request_of_txn(txn) else { continue };
                if holder == request {
                    return true;
                }
                if seen.insert(holder) {
                    stack.push(holder);
                }
            }
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
            self.touch(Access::Write, None, || DbKey::Breaches);
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
        self.touch(Access::Read, None, || DbKey::customer(internal_id));
        if let Some(index) = self.find_internal(txn, internal_id) {
            let touched = self.customers.row(index).visible(txn).expect("found visible").scope();
            self.note_scope(request, scope, &touched, point);
        }
    }

    // ----- row locks ----------------------------------------------------

    /// Takes `mode` on customer row `index` for `txn`: an open transaction
    /// keeps it until it ends; a single statement's lock ends with it, so
    /// only the wait matters.
    fn lock_row(&mut self, request: RequestId, txn: TxnId, index: usize, mode: LockMode) -> Step<()> {
        self.wait_for_row(request, txn, RowRef::Customer(index), mode)?;
        self.customers.lock(index, txn, mode);
        self.touch_customer(index, Access::Write, txn);
        Ok(())
    }

    /// `Ok` when no other transaction holds a lock on `row` that conflicts
    /// with `mode`; else the statement waits for every one that does.
    fn wait_for_row(&mut self, request: RequestId, txn: TxnId, row: RowRef, mode: LockMode) -> Step<()> {
        let holders = match row {
            RowRef::Customer(i) => self.customers.row(i).conflicting_holders(txn, mode),
            RowRef::Usage(i) => self.usage.row(i).conflicting_holders(txn, mode),
        };
        let Some(&first) = holders.first() else { return Ok(()) };
        self.session(request).blocked_by = Some(WaitNote { holders, row: Some((row, mode)), advisory: None });
        Err(Blocked(first))
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

    // ----- what the oracle reads ----------------------------------------

    /// Committed customers, in insertion order.
    pub fn committed_customers(&self) -> Vec<CustomerRow> {
        self.customers.tuples().iter().filter_map(|t| t.committed.clone()).collect()
    }

    /// The committed full customer (what a fresh DB read returns).
    pub fn committed_full(&self, internal_id: &str) -> Option<FullCustomer> {
        let row = self
            .customers
            .visible_by(0, || RowKey::internal(internal_id))
            .map(|(_, r)| r)
            .find(|r| r.internal_id == internal_id)?;
        Some(self.full_customer(0, row.clone()))
    }

    /// Every committed full customer, in insertion order.
    pub fn committed_fulls(&self) -> Vec<FullCustomer> {
        self.customers
            .tuples()
            .iter()
            .filter_map(|t| t.committed.clone())
            .map(|row| self.full_customer(0, row))
            .collect()
    }

    /// True when no transaction is open and no row holds a lock or pending write.
    pub fn is_quiescent(&self) -> bool {
        self.sessions.iter().all(|(_, s)| s.txn.is_none())
            && self.customers.tuples().iter().all(|t| t.pending.is_none() && t.locks.is_empty())
            && self.products.tuples().iter().all(|t| t.pending.is_none() && t.locks.is_empty())
            && self.usage.tuples().iter().all(|t| t.pending.is_none() && t.locks.is_empty())
            && self.advisory.is_empty()
    }
}

/// A statement's answer: whether it failed (its own transaction then
/// rolls back).
pub(super) trait StatementResult {
    fn failed(&self) -> bool {
        false
    }
}

impl<T> StatementResult for Result<T, DbError> {
    fn failed(&self) -> bool {
        self.is_err()
    }
}

impl StatementResult for () {}
impl StatementResult for bool {}
impl StatementResult for Option<CustomerRow> {}
impl StatementResult for Option<FullCustomer> {}

fn lock_mode(lock: crate::backend::RowLock) -> Option<LockMode> {
    use crate::backend::RowLock;
    match lock {
        RowLock::None => None,
        RowLock::ForShare => Some(LockMode::Share),
        RowLock::ForUpdate => Some(LockMode::Update),
    }
}
