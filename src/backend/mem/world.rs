//! The in-memory world: the [`Database`], the services beside it (the
//! full-customer cache and Stripe), the clocks and the id generator,
//! advanced one operation at a time by [`World::apply`].
//!
//! An operation either completes or reports that it must wait for another
//! transaction ([`Blocked`]); a blocked operation changes nothing, so the
//! driver simply offers it again once the holder has ended. Everything is
//! deterministic: ids come from a seeded generator, time from a virtual
//! clock, and every map is ordered.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::backend::outcome::Reply;
use crate::backend::{
    CacheError, CacheKey, Constraints, DbError, DeductOutcome, DeductTarget, Op, Outcome, Point, SyncOutcome,
};
use crate::fingerprint::Fingerprint;
use crate::model::{Catalog, CustomerRow, FullCustomer};

use super::clock::{Clocks, SharedClock};
use super::database::store::{Blocked, TxnId};
use super::database::{Access, Database, DbKey, Deductions, IsolationBreach, RequestId};
use super::ids::IdGen;
use super::services::{Cache, CacheSlot, Stripe, StripeCustomer};

/// An injected failure at one operation (a `crash` is the driver's: it
/// drops the request and calls [`World::crash`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// A database statement (or commit) fails; its transaction rolls back.
    DbError,
    /// The operation takes effect, but the caller hears a timeout
    /// ([`Op::timeout`]): a `commit` commits, a cache write is written, a
    /// Stripe call creates, a deduct deducts. A statement inside a
    /// transaction takes effect there, and the transaction then rolls back
    /// (its connection is gone); one outside any transaction stays.
    LostResponse,
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
            Fault::LostResponse => true,
            Fault::CacheDown => point.is_cache() || point == Point::Deduct || point == Point::SyncUsage,
        }
    }
}

#[derive(Debug, Clone)]
pub struct World {
    db: Database,
    cache: Cache,
    stripe: Stripe,
    /// Cloned with clocks of their own (see [`Clocks`]).
    clocks: Clocks,
    ids: IdGen,
    /// Per request, the deductions of its usage in the cache (whatever its
    /// caller heard; the cache has no transactions). The DB counts its own,
    /// as they commit. A driver reads both at the end of each attempt, so
    /// the oracle knows exactly which attempts' usage took effect.
    deductions: BTreeMap<RequestId, u64>,
}

impl World {
    pub fn new(catalog: Catalog, constraints: Constraints, seed: u64) -> World {
        World {
            db: Database::new(catalog, constraints),
            cache: Cache::default(),
            stripe: Stripe::default(),
            clocks: Clocks::default(),
            ids: IdGen::new(seed),
            deductions: BTreeMap::new(),
        }
    }

    /// How many deductions of `request`'s usage have taken effect so far:
    /// in the cache, and at the DB by a transaction that committed.
    pub fn deductions(&self, request: RequestId) -> Deductions {
        let db = self.db.deductions(request);
        Deductions { counted: self.deductions.get(&request).copied().unwrap_or(0) + db.counted, ..db }
    }

    pub fn catalog(&self) -> &Catalog {
        self.db.catalog()
    }

    pub fn constraints(&self) -> Constraints {
        self.db.constraints()
    }

    /// A handle on the virtual clock, for connections to read.
    pub fn clock(&self) -> SharedClock {
        self.clocks.time_ms.clone()
    }

    /// A handle on the logical time, for connections to read.
    pub fn logical_clock(&self) -> SharedClock {
        self.clocks.seq.clone()
    }

    /// The count of read stamps taken (shared with connections).
    pub fn stamp_counter(&self) -> SharedClock {
        self.clocks.stamps.clone()
    }

    /// The count of readings of virtual time (shared with connections).
    pub fn time_read_counter(&self) -> SharedClock {
        self.clocks.time_reads.clone()
    }

    /// From now on, the database records what each statement touches
    /// ([`World::take_db_touches`]).
    pub fn record_touches(&mut self) {
        self.db.record_touches();
    }

    /// What the database's statements touched since the last call (empty
    /// unless [`World::record_touches`] was called).
    pub fn take_db_touches(&mut self) -> BTreeMap<DbKey, Access> {
        self.db.take_touches()
    }

    /// The count of readings of an instance's clock for the stale-write
    /// guard (shared with connections).
    pub fn guard_read_counter(&self) -> SharedClock {
        self.clocks.guard_reads.clone()
    }

    /// How many times connections have read the clock for the guard.
    pub fn guard_reads(&self) -> u64 {
        self.clocks.guard_reads.get()
    }

    /// How many times the world and its connections have read virtual time.
    pub fn time_reads(&self) -> u64 {
        self.clocks.time_reads.get()
    }

    /// How many read stamps connections have taken.
    pub fn stamps_taken(&self) -> u64 {
        self.clocks.stamps.get()
    }

    pub fn now_ms(&self) -> u64 {
        self.clocks.now_ms()
    }

    /// Virtual time, not counted as a reading: for those who watch the
    /// world (a lockstep shadow, a trace), not for anything it models.
    pub fn observed_now_ms(&self) -> u64 {
        self.clocks.time_ms.get()
    }

    pub fn advance_clock(&mut self, delta_ms: u64) {
        self.clocks.advance(delta_ms);
    }

    pub fn seq(&self) -> u64 {
        self.clocks.seq()
    }

    /// The id generator's state (a lockstep backend starts each operation
    /// from the same one).
    /// Drops what the world keeps for `request`, which has ended (its id
    /// stream): a long-running server's requests come and go.
    pub fn forget_request(&mut self, request: RequestId) {
        self.ids.forget(request);
        self.deductions.remove(&request);
        self.db.forget_deductions(request);
        self.db.forget_session(request);
    }

    /// Writes what the world holds to `out`, for a search that caches
    /// states (see [`Database::fingerprint`]): not the counters of readings
    /// (they only measure). Logical times (a read stamp's, a guard's, and
    /// now's) are written as such ([`Fingerprint::seq`]): they are only
    /// ever compared with one another.
    pub fn fingerprint(&self, out: &mut Fingerprint) {
        // Every field named: one added must be placed here or left out here.
        let World { db, cache, stripe, clocks, ids, deductions } = self;
        let Clocks { time_ms, seq, stamps: _, time_reads: _, guard_reads: _ } = clocks;
        db.fingerprint(out);
        out.add(&(cache, stripe, time_ms.get()));
        out.seq(seq.get());
        out.add(&(ids, deductions));
    }

    pub fn ids(&self) -> &IdGen {
        &self.ids
    }

    /// The open transaction of `request`, if any.
    pub fn open_txn(&self, request: RequestId) -> Option<TxnId> {
        self.db.open_txn(request)
    }

    /// The request whose open transaction is `txn`.
    pub fn request_of_txn(&self, txn: TxnId) -> Option<RequestId> {
        self.db.request_of_txn(txn)
    }

    /// The first transaction `request` waits for, if it waits.
    pub fn waiting_for(&self, request: RequestId) -> Option<TxnId> {
        self.db.waiting_for(request)
    }

    /// Every open transaction `request` waits for (its edges of the
    /// wait-for graph).
    pub fn edges(&self, request: RequestId) -> Vec<TxnId> {
        self.db.edges(request)
    }

    /// Whether `request`'s last operation had to wait and has not run
    /// again since.
    pub fn is_waiting(&self, request: RequestId) -> bool {
        self.db.is_waiting(request)
    }

    /// Whether `request` waited and may now run again: what it waited for
    /// has ended, and no waiter of the same row is ahead of it.
    pub fn woken(&self, request: RequestId) -> bool {
        self.db.woken(request)
    }

    /// When `request`'s wait began, in the order of all waits.
    pub fn wait_seq(&self, request: RequestId) -> Option<u64> {
        self.db.wait_seq(request)
    }

    /// Whether `request` is on a cycle of waits: it may be the deadlock
    /// victim ([`World::deadlock_victim`]), as may every other member.
    pub fn in_cycle(&self, request: RequestId) -> bool {
        self.db.in_cycle(request)
    }

    /// A crashed request: its open transaction rolls back.
    pub fn crash(&mut self, request: RequestId) {
        self.db.end_wait(request);
        self.db.roll_back(request);
    }

    /// Ends `request`'s open transaction with 40P01 (it was a deadlock victim).
    pub fn deadlock_victim(&mut self, request: RequestId) -> Outcome {
        self.crash(request);
        self.clocks.tick();
        Outcome::DbError { error: DbError::Deadlock }
    }

    pub fn isolation_breaches(&self) -> &[IsolationBreach] {
        self.db.isolation_breaches()
    }

    /// Applies one operation for `request`, with an injected `fault` if
    /// any. A wait is recorded in the wait-for graph until the operation
    /// is offered again.
    pub fn apply(&mut self, request: RequestId, op: &Op, fault: Option<Fault>) -> Result<Outcome, Blocked> {
        if let (Some(fault), Some(point)) = (fault, op.point()) {
            assert!(fault.applies_to(point), "fault {fault:?} cannot happen at {point}");
        }
        let fault = fault.filter(|f| f.applies_to_op(op));
        let outcome = match (fault, op) {
            (Some(Fault::DbError), _) => {
                self.db.roll_back(request);
                Outcome::DbError { error: DbError::Unavailable }
            }
            (Some(Fault::CacheDown), _) => Outcome::CacheError { error: CacheError::Down },
            (_, op) => match self.apply_op(request, op) {
                Ok(outcome) => {
                    // A deduction at the DB is counted there, when it commits.
                    let in_cache = matches!(op, Op::Deduct { target: DeductTarget::Cache(_), .. });
                    if in_cache
                        && matches!(outcome, Outcome::Deduct { outcome: DeductOutcome::Applied { .. } })
                    {
                        *self.deductions.entry(request).or_default() += 1;
                    }
                    if fault == Some(Fault::LostResponse) {
                        let timeout = op.timeout();
                        if matches!(timeout, Outcome::DbError { .. }) {
                            self.db.roll_back(request);
                        }
                        timeout
                    } else {
                        outcome
                    }
                }
                Err(Blocked(txn)) => {
                    self.db.begin_wait(request, txn);
                    return Err(Blocked(txn));
                }
            },
        };
        self.db.end_wait(request);
        self.clocks.tick();
        Ok(outcome)
    }

    fn apply_op(&mut self, request: RequestId, op: &Op) -> Result<Outcome, Blocked> {
        // Virtual time is read only where an operation depends on it
        // (each reading is counted: see `Clocks::time_reads`).
        Ok(match op {
            Op::Begin => {
                self.db.begin(request);
                Outcome::Done
            }
            Op::Commit => {
                self.db.commit(request);
                Outcome::Done
            }
            Op::Rollback => {
                self.db.roll_back(request);
                Outcome::Done
            }
            Op::LookupId { scope, id, lock } => {
                Outcome::Row { row: self.db.lookup_id(request, scope, id, *lock)? }
            }
            Op::AdvisoryLock { scope, key } => {
                self.db.advisory_lock(request, scope, key)?;
                Outcome::Done
            }
            Op::LookupEmail { scope, email } => {
                Outcome::Rows { rows: self.db.lookup_email(request, scope, email) }
            }
            Op::Insert { customer, on_conflict } => {
                let drawn =
                    self.db.drawn_id(request, self.clocks.now_ms(), || self.ids.next_id(request, "cus"));
                self.db.insert(request, customer, *on_conflict, drawn)?.into_outcome()
            }
            Op::Claim { scope, target, new_id } => {
                self.db.claim(request, scope, target, new_id)?.into_outcome()
            }
            Op::FillFields { scope, internal_id, fill } => {
                self.db.fill_fields(request, scope, internal_id, fill)?.into_outcome()
            }
            Op::ListDefaults { .. } => Outcome::Products { products: self.db.list_defaults() },
            Op::StripeSearch { internal_id } => {
                Outcome::StripeFound { stripe_id: self.stripe.search(internal_id, self.clocks.now_ms()) }
            }
            Op::StripeCreate { idempotency_key, params } => {
                let now = self.clocks.now_ms();
                match self.stripe.create_customer(idempotency_key, params, now, &mut self.ids, request) {
                    Ok(stripe_id) => Outcome::StripeCustomer { stripe_id },
                    Err(error) => Outcome::StripeError { error },
                }
            }
            Op::SetProcessor { scope, internal_id, stripe_id, only_if_null } => Outcome::Updated {
                updated: self.db.set_processor(request, scope, internal_id, stripe_id, *only_if_null)?,
            },
            Op::AttachDefault { scope, product, on_conflict } => {
                let drawn =
                    self.db.drawn_id(request, self.clocks.now_ms(), || self.ids.next_id(request, "cus_prod"));
                self.db.attach(request, scope, product, *on_conflict, drawn)?.into_outcome()
            }
            Op::DbRead { scope, key, lock } => {
                Outcome::Full { customer: self.db.db_read(request, scope, key, *lock)?.map(Box::new) }
            }
            Op::CacheRead { key } => {
                let now = self.clocks.now_ms();
                Outcome::Cache { read: Box::new(self.cache.read(key, self.clocks.seq(), now)) }
            }
            Op::CacheWrite { key, value, stamp, mode } => {
                self.db.note_scope(request, &key.scope, &value.customer.scope(), Point::CacheWrite);
                let now = self.clocks.now_ms();
                Outcome::CacheWrite { outcome: self.cache.write(key, value, *stamp, *mode, now) }
            }
            Op::CacheInvalidate { key, at_ms } => {
                let now = self.clocks.now_ms();
                self.cache.invalidate(key, self.clocks.seq(), *at_ms, now);
                Outcome::Done
            }
            Op::IdempotencyClaim { scope, key } => {
                let now = self.clocks.now_ms();
                Outcome::KeyClaim { outcome: self.cache.claim_key(scope, key, now) }
            }
            Op::IdempotencyRelease { scope, key } => {
                self.cache.release_key(scope, key);
                Outcome::Done
            }
            Op::Deduct { scope, internal_id, feature_id, value, target, key } => match target {
                DeductTarget::Cache(key) => {
                    let now = self.clocks.now_ms();
                    Outcome::Deduct { outcome: self.cache.deduct(key, internal_id, feature_id, *value, now) }
                }
                DeductTarget::Db => {
                    // Only a keyed deduction reads the time: its key's window.
                    let key = key.as_deref().map(|key| (key, self.clocks.now_ms()));
                    self.db.add_usage(request, scope, internal_id, feature_id, *value, key)?.into_outcome()
                }
            },
            Op::SyncUsage { key, internal_id, feature_id } => {
                let now = self.clocks.now_ms();
                match self.cache.usage(key, internal_id, feature_id, now) {
                    None => Outcome::Sync { outcome: SyncOutcome::CacheMissing },
                    Some(absolute) => self
                        .db
                        .set_usage(request, &key.scope, internal_id, feature_id, absolute)?
                        .map(|usage| SyncOutcome::Written { usage })
                        .into_outcome(),
                }
            }
        })
    }

    // ----- what the oracle reads ----------------------------------------

    /// Committed customers, in insertion order.
    pub fn committed_customers(&self) -> Vec<CustomerRow> {
        self.db.committed_customers()
    }

    /// The committed full customer (what a fresh DB read returns).
    pub fn committed_full(&self, internal_id: &str) -> Option<FullCustomer> {
        self.db.committed_full(internal_id)
    }

    /// The idempotency keys a committed balance holds (`safe`'s), with the
    /// times they were counted at.
    pub fn applied_keys(&self, internal_id: &str, feature_id: &str) -> BTreeMap<String, u64> {
        self.db.applied_keys(internal_id, feature_id)
    }

    /// Every committed full customer, in insertion order.
    pub fn committed_fulls(&self) -> Vec<FullCustomer> {
        self.db.committed_fulls()
    }

    /// The cache's live entries now.
    pub fn cache_entries(&self) -> impl Iterator<Item = (&CacheKey, &FullCustomer)> {
        self.cache.entries(self.clocks.now_ms())
    }

    /// The cache entry of `key` vanishes (the `cache_evict` fault).
    pub fn evict(&mut self, key: &CacheKey) {
        self.cache.evict(key);
    }

    pub fn cache_slot(&self, key: &CacheKey) -> Option<&CacheSlot> {
        self.cache.slot(key)
    }

    pub fn stripe_customers(&self) -> &[StripeCustomer] {
        self.stripe.customers()
    }

    /// True when no transaction is open and no row holds a lock or pending write.
    pub fn is_quiescent(&self) -> bool {
        self.db.is_quiescent()
    }
}
