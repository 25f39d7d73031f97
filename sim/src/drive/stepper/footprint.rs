//! The reduction's dependency relation, in one place: what each thing a
//! decision does touches ([`footprint`]), and when two decisions' touches
//! conflict ([`Footprint::conflicts`]). Two decisions of different movers
//! whose footprints do not conflict commute: either order leaves the same
//! world and the same answers, and neither can enable or disable the
//! other, so the exhaustive scheduler runs only one of their orders.
//!
//! A decision is a sequence of [`Action`]s (a request's operation, then its
//! code up to its next one; a clock move; …); its footprint is the union
//! of theirs. [`footprint`] matches every operation and every action of
//! the stepper's own by name, so a new one does not compile until it is
//! given a footprint here. What it reads from the run ([`Seen`]) is what
//! the world counted or recorded while the action ran; what it declares
//! itself is checked against that where the world can tell
//! ([`footprint`] panics when an operation read virtual time that its arm
//! says it does not).
//!
//! The things:
//! - the database: each key the database's statements touched, as the
//!   database itself recorded it while they ran (rows by their internal
//!   id and unique keys, a lookup's key, a customer's products and usage,
//!   advisory locks, the wait-for graph; a transaction's end writes every
//!   key it wrote or locked: see `cusim::backend::mem::database::touched`).
//!   Which rows a statement meets depends on the data, so the database
//!   records them rather than this file guessing them;
//! - each cache key is an object (an idempotency key is one too); a
//!   cache invalidation also conflicts with every read stamp, which a flow
//!   takes outside any operation and a stale-write guard compares with it;
//! - Stripe: each idempotency key, and each customer's Stripe customers
//!   (a create writes both, a search reads the customer's);
//! - the clock is an object: a clock move writes it; an action that reads
//!   virtual time (a row's creation time, a TTL, an idempotency window,
//!   Stripe's, a Stripe call's time in flight, a flow's own reading, the
//!   end of a run) reads it. A move also conflicts with every other move
//!   (with a bound on moves, one disables another).
//!
//! Ids are in no footprint: each request draws from a stream of its own,
//! so the ids it gets do not depend on the order of other requests'
//! steps. Transaction ids are in none either: `BEGIN` draws one from a
//! counter, so two commuting steps may swap theirs, but nothing compares
//! their values (lock queues keep acquisition order, and a wait names the
//! first holder in that order). They are names, and no outcome holds
//! them. Row positions (insertion order) are names too: the state a run
//! is judged on lists rows in a canonical order. The logical clock (`seq`,
//! one tick per operation) is read only through read stamps, whose order
//! against invalidations is what a guard compares.

use std::collections::BTreeMap;

pub use cusim::backend::mem::Access;
use cusim::backend::mem::{DbKey, Fault};
use cusim::backend::{CacheKey, DeductTarget, Op, Outcome};

fn widen(slot: &mut Option<Access>, access: Access) {
    *slot = (*slot).max(Some(access));
}

/// One thing a decision does.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// A request's attempt arrives: its code runs up to its first
    /// operation (or its answer).
    Arrive,
    /// A request's code runs after an answer, up to its next operation
    /// (or its answer).
    Code,
    /// An operation is applied: it completes, must wait, or its request is
    /// the deadlock victim of a cycle of waits; `fault` is what was
    /// injected into it.
    Op { op: &'a Op, applied: Applied<'a>, fault: Option<Fault> },
    /// A request crashes: its open transaction rolls back.
    Crash,
    /// A request parks on a Stripe call: the stepper notes when it was
    /// sent, for its client's timeout.
    ParkOnStripe,
    /// A Stripe call is offered: the stepper compares its time in flight
    /// with its client's timeout (a call in flight longer never reaches
    /// Stripe).
    StripeInFlight,
    /// The `cache_evict` fault: the key vanishes before the operation.
    Evict { key: &'a CacheKey },
    /// The clock moves.
    Tick,
    /// The run's last decision: after it no clock move is offered, so it
    /// disabled every one.
    EndOfRun,
}

/// How an operation was applied.
#[derive(Debug, Clone, Copy)]
pub enum Applied<'a> {
    Done(&'a Outcome),
    Waits,
    DeadlockVictim,
}

/// What the world saw an action do: the database keys its statements
/// touched, and whether it read virtual time or took a read stamp (the
/// world counts both).
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub db: BTreeMap<DbKey, Access>,
    pub read_clock: bool,
    pub took_stamp: bool,
}

/// What `action` touches, given what the world `seen` it do.
///
/// # Panics
/// When an operation read virtual time though its arm says it reads none:
/// that arm is unsound and must be mended.
pub fn footprint(action: &Action<'_>, seen: Seen) -> Footprint {
    let mut f = Footprint::default();
    let Seen { db, read_clock, took_stamp } = seen;
    // What an action cannot do, the world must not have seen it do: a
    // later change that makes it so must give it its footprint here.
    let runs_statements = matches!(action, Action::Op { .. } | Action::Crash);
    assert!(runs_statements || db.is_empty(), "footprint: {action:?} touched the database");
    let code = matches!(action, Action::Arrive | Action::Code | Action::Op { .. });
    assert!(code || !took_stamp, "footprint: {action:?} took a read stamp");
    match *action {
        // The request's own code: whatever it read (the world counts a
        // flow's readings of time and its read stamps).
        Action::Arrive | Action::Code => {
            if read_clock {
                f.read_clock();
            }
            f.stamp = took_stamp;
        }
        Action::Op { op, applied, fault } => {
            // A statement's keys are the database's record of it (also a
            // wait, a rollback after a fault, a deadlock victim's rollback).
            f.add_db(db);
            // Anything but a clean completion is widened: a read that met
            // a fault or a wait counts as a write (a fault's answer, or a
            // wait, may depend on more than the read).
            let plain = fault.is_none() && matches!(applied, Applied::Done(_));
            let read = if plain { Access::Read } else { Access::Write };
            let may_read_clock = op_footprint(op, read, &mut f);
            assert!(
                may_read_clock || !read_clock,
                "footprint: {} read virtual time, but its arm says it reads none",
                op.summary()
            );
            // Whether it did: a cache that was down read no TTL.
            if read_clock {
                f.read_clock();
            }
            if took_stamp {
                f.stamp = true;
            }
        }
        // The rollback is the database's to record.
        Action::Crash => f.add_db(db),
        Action::ParkOnStripe | Action::StripeInFlight | Action::EndOfRun => f.read_clock(),
        Action::Evict { key } => f.touch_cache(key.to_string(), Access::Write),
        Action::Tick => f.clock = Some(Access::Write),
    }
    f
}

/// Adds what `op` touches outside the database (the database records its
/// own part), with `read` for what it reads; whether it may read virtual
/// time (the world counts whether it did). Every operation is named: a new
/// one must be given its footprint here.
fn op_footprint(op: &Op, read: Access, f: &mut Footprint) -> bool {
    let stripe_customer = |internal_id: &str| format!("customer {internal_id}");
    let may_read_clock = match op {
        // Database statements: the database records what they touch. A
        // row's and a product's creation time is virtual time.
        Op::Insert { .. } | Op::AttachDefault { .. } => true,
        Op::Begin
        | Op::Commit
        | Op::Rollback
        | Op::LookupId { .. }
        | Op::LookupEmail { .. }
        | Op::Claim { .. }
        | Op::FillFields { .. }
        | Op::ListDefaults { .. }
        | Op::SetProcessor { .. }
        | Op::DbRead { .. }
        | Op::AdvisoryLock { .. } => false,
        Op::Deduct { target: DeductTarget::Db, .. } => false,
        // Stripe: its idempotency window (24 h) and the customer it makes.
        Op::StripeCreate { idempotency_key, params } => {
            Access::record(&mut f.stripe, format!("idempotency {idempotency_key}"), Access::Write);
            Access::record(&mut f.stripe, stripe_customer(&params.internal_id), Access::Write);
            true
        }
        // Its search index lags a minute behind creates.
        Op::StripeSearch { internal_id } => {
            Access::record(&mut f.stripe, stripe_customer(internal_id), read);
            true
        }
        // The cache: each entry's TTL; a read's answer carries a stamp.
        Op::CacheRead { key } => {
            f.touch_cache(key.to_string(), read);
            f.stamp = true;
            true
        }
        Op::CacheWrite { key, .. } => {
            f.touch_cache(key.to_string(), Access::Write);
            true
        }
        Op::CacheInvalidate { key, .. } => {
            f.touch_cache(key.to_string(), Access::Write);
            f.invalidates = true;
            true
        }
        // The idempotency middleware's keys, with their window.
        Op::IdempotencyClaim { scope, key } => {
            f.touch_cache(format!("idempotency {scope} {key}"), Access::Write);
            true
        }
        Op::IdempotencyRelease { scope, key } => {
            f.touch_cache(format!("idempotency {scope} {key}"), Access::Write);
            false
        }
        Op::Deduct { target: DeductTarget::Cache(key), .. } => {
            f.touch_cache(key.to_string(), Access::Write);
            true
        }
        // Reads the entry's usage (its TTL too) and writes the DB's.
        Op::SyncUsage { key, .. } => {
            f.touch_cache(key.to_string(), Access::Write);
            true
        }
    };
    may_read_clock
}

/// What one decision touched: the union of its actions' footprints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Virtual time: written by a clock move, read by a step that read it.
    pub clock: Option<Access>,
    /// Database keys.
    pub db: BTreeMap<DbKey, Access>,
    /// Cache keys (and idempotency keys), by their text.
    pub cache: BTreeMap<String, Access>,
    /// Took a read stamp (or read the cache, whose answer carries one).
    pub stamp: bool,
    /// Invalidated a cache key (moves a stale-write guard).
    pub invalidates: bool,
    /// Stripe's idempotency keys and customers' Stripe customers.
    pub stripe: BTreeMap<String, Access>,
}

impl Footprint {
    /// Whether the two decisions may not commute.
    pub fn conflicts(&self, other: &Footprint) -> bool {
        Access::conflicts(self.clock, other.clock)
            || (self.invalidates && other.stamp)
            || (self.stamp && other.invalidates)
            || maps_conflict(&self.db, &other.db)
            || maps_conflict(&self.stripe, &other.stripe)
            || maps_conflict(&self.cache, &other.cache)
    }

    /// Adds `other` (another action of the same decision).
    pub fn add(&mut self, other: Footprint) {
        if let Some(access) = other.clock {
            widen(&mut self.clock, access);
        }
        for (key, access) in other.db {
            Access::record(&mut self.db, key, access);
        }
        for (key, access) in other.cache {
            Access::record(&mut self.cache, key, access);
        }
        for (key, access) in other.stripe {
            Access::record(&mut self.stripe, key, access);
        }
        self.stamp |= other.stamp;
        self.invalidates |= other.invalidates;
    }

    fn read_clock(&mut self) {
        widen(&mut self.clock, Access::Read);
    }

    fn add_db(&mut self, touched: BTreeMap<DbKey, Access>) {
        for (key, access) in touched {
            Access::record(&mut self.db, key, access);
        }
    }

    fn touch_cache(&mut self, key: String, access: Access) {
        Access::record(&mut self.cache, key, access);
    }
}

/// Whether some key is in both, written in at least one.
fn maps_conflict<K: Ord>(a: &BTreeMap<K, Access>, b: &BTreeMap<K, Access>) -> bool {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    small.iter().any(|(key, x)| large.get(key).is_some_and(|y| Access::conflicts(Some(*x), Some(*y))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(key: &str, access: Access) -> Footprint {
        let seen = Seen { db: BTreeMap::from([(DbKey::Customer(key.into()), access)]), ..Seen::default() };
        footprint(&Action::Crash, seen)
    }

    fn tick() -> Footprint {
        footprint(&Action::Tick, Seen::default())
    }

    #[test]
    fn reads_commute_and_a_write_does_not() {
        let (read, write) = (db("a", Access::Read), db("a", Access::Write));
        assert!(!read.conflicts(&read));
        assert!(read.conflicts(&write) && write.conflicts(&read) && write.conflicts(&write));
        assert!(!write.conflicts(&db("b", Access::Write)), "different rows commute");
        assert!(!tick().conflicts(&write));
        let timed = footprint(&Action::Code, Seen { read_clock: true, ..Seen::default() });
        assert!(tick().conflicts(&timed) && tick().conflicts(&tick()));
        assert!(!timed.conflicts(&timed));
        let key = |id: &str| CacheKey { scope: cusim::model::Scope::default(), id: id.into() };
        let (k1, k2) = (key("k1"), key("k2"));
        let evict = |key| footprint(&Action::Evict { key }, Seen::default());
        assert!(!evict(&k1).conflicts(&evict(&k2)) && evict(&k1).conflicts(&evict(&k1)));
        let stamp = footprint(&Action::Arrive, Seen { took_stamp: true, ..Seen::default() });
        let invalidate = Op::CacheInvalidate { key: k2, at_ms: 0 };
        let done = Outcome::Done;
        let applied = Applied::Done(&done);
        let invalidates = footprint(&Action::Op { op: &invalidate, applied, fault: None }, Seen::default());
        assert!(stamp.conflicts(&invalidates) && invalidates.conflicts(&stamp));
    }

    #[test]
    #[should_panic(expected = "reads none")]
    fn an_operation_that_reads_time_its_arm_does_not_declare_is_refused() {
        let op = Op::Commit;
        let done = Outcome::Done;
        let action = Action::Op { op: &op, applied: Applied::Done(&done), fault: None };
        footprint(&action, Seen { read_clock: true, ..Seen::default() });
    }
}
