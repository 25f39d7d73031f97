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
//! - virtual time, by the windows it is compared against (see below). A
//!   clock move conflicts with every other move (with a bound on moves,
//!   one disables another), and with an action that read virtual time
//!   only when the move is at least as long as the shortest *window* that
//!   reading takes part in.
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
//!
//! ## Clock moves and windows
//!
//! The world reads virtual time to compare it: a cache entry lives for its
//! TTL after its write, a guard for 1 s after its invalidation, an
//! idempotency key for 24 h after its claim (and after a balance counted
//! it), a Stripe create replays within
//! 24 h of the first, Stripe's search finds a customer a minute after its
//! create, a Stripe call times out 80 s after it was sent. Each such
//! comparison is between two readings (the one that stored a time and the
//! one that compares with it) and asks whether the time *between* them
//! has reached its window `L`. Other readings are only kept (a row's and a
//! product's creation time, which nothing compares), or are a flow's own,
//! whose use this file cannot see.
//!
//! The argument, for runs with at most one clock move (the explorer's
//! default). Time moves only by clock moves, so in such a run every
//! reading of true time is `t0` or `t0 + Δ` (before or after the move Δ),
//! and the time between two readings is `0` or `Δ`. A comparison
//! "between `a` and `b`, at least `L` passed" (or "less than `L`") thus
//! gives the answer for `0` unless the move falls between `a` and `b`,
//! and then the answer for `Δ`; the two differ exactly when `Δ ≥ L`.
//! Swapping a move with an adjacent action `e` moves it across `e`'s
//! readings and no other's: only comparisons with `e` at one end can
//! change, and none does when `Δ` is below every window `e`'s readings
//! take part in. Then every comparison of the run answers as before, so
//! every choice, answer and key touched is the same, and the two worlds
//! differ only in the times they keep, which no comparison reads (a
//! copied time moves with its original). So each reading declares the
//! shortest window it is an end of ([`footprint`]'s `Time`), both ends of
//! every comparison declare it, and a move of `Δ` conflicts with it iff
//! `Δ ≥` that window. Kept times declare none. A reading whose use is not
//! known here (a flow's own: Stripe's 5 s key bucket, instances' skewed
//! clocks) declares the window every move crosses; so does the end of a
//! run, which disables every move.
//!
//! The stale-write guard compares times with no window: a read stamp's
//! time (a flow's, or a cache read's) with an invalidation's (a flow's,
//! read for the guard alone: `Backend::guard_time_ms`), and the guard
//! lives 1 s. Only a cache write that is not versioned compares them. A
//! strategy whose cache writes are all versioned (`safe`'s: they compare
//! an invalidation counter) never compares those times ([`GuardTimes`]):
//! they are kept. The stepper refuses a cache write that compares them in
//! a run whose strategy says none does.
//!
//! With two or more moves in a run the time between two readings can be
//! any sum of moves, and a move below a window can still carry a sum
//! across it: [`Footprint::conflicts_among`] then lets every move
//! conflict with every reading, as before. The outcome a reduction must
//! keep (`explore::outcome_of`) leaves the kept times out for the same
//! reason.

use std::collections::BTreeMap;

use cusim::backend::mem::services::{
    CACHE_TTL_MS, GUARD_TTL_MS, IDEMPOTENCY_KEY_TTL_MS, STRIPE_IDEMPOTENCY_WINDOW_MS, STRIPE_SEARCH_LAG_MS,
};
pub use cusim::backend::mem::Access;
use cusim::backend::mem::{DbKey, Fault, Name, APPLIED_KEY_WINDOW_MS};
use cusim::backend::{CacheKey, CacheWriteMode, DeductTarget, Op, Outcome};
use cusim::flow::Strategy;

use super::STRIPE_CALL_TIMEOUT_MS;

/// The window every clock move crosses (each moves at least 1 ms).
const EVERY_MOVE: u64 = 1;

/// Whether a run's cache writes compare the stale-write guard's times
/// (see the module): a property of its strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardTimes {
    /// Some cache write may compare them (any that is not versioned).
    Compared,
    /// Every cache write is versioned: none compares them.
    NeverCompared,
}

impl GuardTimes {
    pub fn of(strategy: Strategy) -> GuardTimes {
        match strategy {
            Strategy::Legacy | Strategy::Transactional => GuardTimes::Compared,
            Strategy::Safe => GuardTimes::NeverCompared,
        }
    }

    /// The window a reading only a guard compares takes part in.
    fn window(self) -> Time {
        match self {
            GuardTimes::Compared => Time::Window(EVERY_MOVE),
            GuardTimes::NeverCompared => Time::Kept,
        }
    }
}

/// What an action does with virtual time, if it reads it (see the module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Time {
    /// It reads none.
    Unread,
    /// It keeps what it reads, and nothing compares it.
    Kept,
    /// Its readings are ends of comparisons, the shortest of this window.
    Window(u64),
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
    /// The clock moves by `ms`.
    Tick { ms: u64 },
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
/// touched, whether it read virtual time, read an instance's clock for the
/// stale-write guard, or took a read stamp (the world counts each).
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub db: BTreeMap<DbKey, Access>,
    pub read_clock: bool,
    pub read_guard_time: bool,
    pub took_stamp: bool,
}

/// What `action` touches, given what the world `seen` it do, in a run
/// whose strategy's cache writes compare guard times or not (`guards`).
///
/// # Panics
/// When an operation read virtual time though its arm says it reads none,
/// or a cache write compares guard times though `guards` says none does:
/// the relation is unsound there and must be mended.
pub fn footprint(action: &Action<'_>, seen: Seen, guards: GuardTimes) -> Footprint {
    let mut f = Footprint::default();
    let Seen { db, read_clock, read_guard_time, took_stamp } = seen;
    // What an action cannot do, the world must not have seen it do: a
    // later change that makes it so must give it its footprint here.
    let runs_statements = matches!(action, Action::Op { .. } | Action::Crash);
    assert!(runs_statements || db.is_empty(), "footprint: {action:?} touched the database");
    let code = matches!(action, Action::Arrive | Action::Code | Action::Op { .. });
    assert!(code || !took_stamp, "footprint: {action:?} took a read stamp");
    let flow = matches!(action, Action::Arrive | Action::Code);
    assert!(flow || !read_guard_time, "footprint: {action:?} read the clock for the guard");
    match *action {
        // The request's own code: whatever it read (the world counts a
        // flow's readings of time and its read stamps).
        Action::Arrive | Action::Code => {
            if read_clock {
                f.read_time(Time::Window(EVERY_MOVE));
            }
            if read_guard_time {
                f.read_time(guards.window());
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
            let time = op_footprint(op, read, guards, &mut f);
            assert!(
                time != Time::Unread || !read_clock,
                "footprint: {} read virtual time, but its arm says it reads none",
                op.summary()
            );
            // Whether it did: a cache that was down read no TTL.
            if read_clock {
                f.read_time(time);
            }
            if took_stamp {
                f.stamp = true;
            }
        }
        // The rollback is the database's to record.
        Action::Crash => f.add_db(db),
        // When a Stripe call was sent, and its time in flight since.
        Action::ParkOnStripe | Action::StripeInFlight => f.read_time(Time::Window(STRIPE_CALL_TIMEOUT_MS)),
        // The end disables every move (and reads the cache's live entries).
        Action::EndOfRun => f.read_time(Time::Window(EVERY_MOVE)),
        Action::Evict { key } => f.touch_cache(cache_name(key), Access::Write),
        Action::Tick { ms } => f.moves = Some(ms),
    }
    f
}

/// Adds what `op` touches outside the database (the database records its
/// own part), with `read` for what it reads; what it does with virtual
/// time if it reads it (the world counts whether it did). Every operation
/// is named: a new one must be given its footprint here.
fn op_footprint(op: &Op, read: Access, guards: GuardTimes, f: &mut Footprint) -> Time {
    let stripe_customer = |internal_id: &str| Name::of(&["customer", internal_id]);
    match op {
        // Database statements: the database records what they touch. A
        // row's and a product's creation time is kept, never compared.
        Op::Insert { .. } | Op::AttachDefault { .. } => Time::Kept,
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
        | Op::AdvisoryLock { .. } => Time::Unread,
        // A keyed deduction compares the time its key was counted at with
        // the time now: the idempotency window. An unkeyed one reads none.
        Op::Deduct { target: DeductTarget::Db, key: Some(_), .. } => Time::Window(APPLIED_KEY_WINDOW_MS),
        Op::Deduct { target: DeductTarget::Db, key: None, .. } => Time::Unread,
        // Stripe: its idempotency window (24 h), and the customer it makes,
        // which its search finds a minute later.
        Op::StripeCreate { idempotency_key, params } => {
            Access::record(&mut f.stripe, Name::of(&["idempotency", idempotency_key]), Access::Write);
            Access::record(&mut f.stripe, stripe_customer(&params.internal_id), Access::Write);
            Time::Window(STRIPE_SEARCH_LAG_MS.min(STRIPE_IDEMPOTENCY_WINDOW_MS))
        }
        Op::StripeSearch { internal_id } => {
            Access::record(&mut f.stripe, stripe_customer(internal_id), read);
            Time::Window(STRIPE_SEARCH_LAG_MS)
        }
        // The cache: an entry's TTL; a read's answer carries a stamp whose
        // time a guard may compare with an invalidation's, with no window.
        Op::CacheRead { key } => {
            f.touch_cache(cache_name(key), read);
            f.stamp = true;
            match guards {
                GuardTimes::Compared => Time::Window(EVERY_MOVE),
                GuardTimes::NeverCompared => Time::Window(CACHE_TTL_MS),
            }
        }
        // The entry's TTL; a write that is not versioned compares the
        // guard's times and its life (1 s).
        Op::CacheWrite { key, mode, .. } => {
            f.touch_cache(cache_name(key), Access::Write);
            let versioned = *mode == CacheWriteMode::Versioned;
            assert!(
                versioned || guards == GuardTimes::Compared,
                "footprint: a cache write compared guard times in a run whose strategy says none does"
            );
            match guards {
                GuardTimes::Compared => Time::Window(GUARD_TTL_MS.min(CACHE_TTL_MS)),
                GuardTimes::NeverCompared => Time::Window(CACHE_TTL_MS),
            }
        }
        // Sets a guard for 1 s (its time is the flow's own reading), which
        // only a cache write that is not versioned compares.
        Op::CacheInvalidate { key, .. } => {
            f.touch_cache(cache_name(key), Access::Write);
            f.invalidates = true;
            match guards {
                GuardTimes::Compared => Time::Window(GUARD_TTL_MS),
                GuardTimes::NeverCompared => Time::Kept,
            }
        }
        // The idempotency middleware's keys, with their window.
        Op::IdempotencyClaim { scope, key } => {
            f.touch_cache(Name::of(&["idempotency", &scope.org_id, scope.env.as_str(), key]), Access::Write);
            Time::Window(IDEMPOTENCY_KEY_TTL_MS)
        }
        Op::IdempotencyRelease { scope, key } => {
            f.touch_cache(Name::of(&["idempotency", &scope.org_id, scope.env.as_str(), key]), Access::Write);
            Time::Unread
        }
        // Reads the entry's usage (its TTL too), and the sync writes the DB's.
        Op::Deduct { target: DeductTarget::Cache(key), .. } | Op::SyncUsage { key, .. } => {
            f.touch_cache(cache_name(key), Access::Write);
            Time::Window(CACHE_TTL_MS)
        }
    }
}

/// What one decision touched: the union of its actions' footprints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Footprint {
    /// A clock move, by its amount.
    pub moves: Option<u64>,
    /// The shortest window a reading of virtual time it made takes part
    /// in (see the module); none when it read none, or only kept it.
    pub window: Option<u64>,
    /// Database keys.
    pub db: BTreeMap<DbKey, Access>,
    /// Cache keys (and idempotency keys), by their names.
    pub cache: BTreeMap<Name, Access>,
    /// Took a read stamp (or read the cache, whose answer carries one).
    pub stamp: bool,
    /// Invalidated a cache key (moves a stale-write guard).
    pub invalidates: bool,
    /// Stripe's idempotency keys and customers' Stripe customers.
    pub stripe: BTreeMap<Name, Access>,
}

impl Footprint {
    /// What a clock move by `ms` touches (a move touches the same wherever
    /// it is made).
    pub fn of_move(ms: u64) -> Footprint {
        footprint(&Action::Tick { ms }, Seen::default(), GuardTimes::Compared)
    }

    /// Whether the two decisions may not commute, in runs with at most one
    /// clock move.
    pub fn conflicts(&self, other: &Footprint) -> bool {
        self.conflicts_among(other, 1)
    }

    /// Whether the two decisions may not commute, in runs with at most
    /// `max_moves` clock moves: with more than one, a move conflicts with
    /// every reading of virtual time (see the module).
    pub fn conflicts_among(&self, other: &Footprint, max_moves: usize) -> bool {
        let crosses = |moves: Option<u64>, window: Option<u64>| match (moves, window) {
            (Some(ms), Some(window)) => max_moves > 1 || ms >= window,
            _ => false,
        };
        (self.moves.is_some() && other.moves.is_some())
            || crosses(self.moves, other.window)
            || crosses(other.moves, self.window)
            || (self.invalidates && other.stamp)
            || (self.stamp && other.invalidates)
            || maps_conflict(&self.db, &other.db)
            || maps_conflict(&self.stripe, &other.stripe)
            || maps_conflict(&self.cache, &other.cache)
    }

    /// Adds `other` (another action of the same decision).
    pub fn add(&mut self, other: Footprint) {
        self.moves = self.moves.or(other.moves);
        if let Some(window) = other.window {
            self.read_window(window);
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

    fn read_time(&mut self, time: Time) {
        if let Time::Window(window) = time {
            self.read_window(window);
        }
    }

    fn read_window(&mut self, window: u64) {
        self.window = Some(self.window.map_or(window, |w| w.min(window)));
    }

    fn add_db(&mut self, touched: BTreeMap<DbKey, Access>) {
        for (key, access) in touched {
            Access::record(&mut self.db, key, access);
        }
    }

    fn touch_cache(&mut self, key: Name, access: Access) {
        Access::record(&mut self.cache, key, access);
    }
}

/// A cache key's name.
fn cache_name(key: &CacheKey) -> Name {
    Name::of(&["cache", &key.scope.org_id, key.scope.env.as_str(), &key.id])
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
        let seen = Seen { db: BTreeMap::from([(DbKey::customer(key), access)]), ..Seen::default() };
        footprint(&Action::Crash, seen, GuardTimes::Compared)
    }

    fn tick() -> Footprint {
        footprint(&Action::Tick { ms: 1 }, Seen::default(), GuardTimes::Compared)
    }

    #[test]
    fn reads_commute_and_a_write_does_not() {
        let (read, write) = (db("a", Access::Read), db("a", Access::Write));
        assert!(!read.conflicts(&read));
        assert!(read.conflicts(&write) && write.conflicts(&read) && write.conflicts(&write));
        assert!(!write.conflicts(&db("b", Access::Write)), "different rows commute");
        assert!(!tick().conflicts(&write));
        let timed =
            footprint(&Action::Code, Seen { read_clock: true, ..Seen::default() }, GuardTimes::Compared);
        assert!(tick().conflicts(&timed) && tick().conflicts(&tick()));
        assert!(!timed.conflicts(&timed));
        let key = |id: &str| CacheKey { scope: cusim::model::Scope::default(), id: id.into() };
        let (k1, k2) = (key("k1"), key("k2"));
        let evict = |key| footprint(&Action::Evict { key }, Seen::default(), GuardTimes::Compared);
        assert!(!evict(&k1).conflicts(&evict(&k2)) && evict(&k1).conflicts(&evict(&k1)));
        let stamp =
            footprint(&Action::Arrive, Seen { took_stamp: true, ..Seen::default() }, GuardTimes::Compared);
        let invalidate = Op::CacheInvalidate { key: k2, at_ms: 0 };
        let done = Outcome::Done;
        let applied = Applied::Done(&done);
        let invalidates = footprint(
            &Action::Op { op: &invalidate, applied, fault: None },
            Seen::default(),
            GuardTimes::Compared,
        );
        assert!(stamp.conflicts(&invalidates) && invalidates.conflicts(&stamp));
    }

    fn op(op: &Op, guards: GuardTimes) -> Footprint {
        let done = Outcome::Done;
        let action = Action::Op { op, applied: Applied::Done(&done), fault: None };
        footprint(&action, Seen { read_clock: true, ..Seen::default() }, guards)
    }

    /// A move conflicts with a reading iff it is at least as long as the
    /// reading's shortest window; with two moves allowed, always.
    #[test]
    fn a_move_conflicts_with_a_reading_only_across_its_window() {
        use cusim::backend::mem::services::{GUARD_TTL_MS, IDEMPOTENCY_KEY_TTL_MS};
        let key = CacheKey { scope: cusim::model::Scope::default(), id: "k".into() };
        let claim = op(
            &Op::IdempotencyClaim { scope: cusim::model::Scope::default(), key: "i".into() },
            GuardTimes::Compared,
        );
        assert!(!Footprint::of_move(IDEMPOTENCY_KEY_TTL_MS - 1).conflicts(&claim));
        assert!(
            Footprint::of_move(IDEMPOTENCY_KEY_TTL_MS).conflicts(&claim)
                && claim.conflicts(&Footprint::of_move(IDEMPOTENCY_KEY_TTL_MS))
        );
        assert!(Footprint::of_move(1).conflicts_among(&claim, 2), "two moves may add up across a window");
        // A guard's times: compared by the writes of legacy and
        // transactional, never by safe's.
        let invalidate = Op::CacheInvalidate { key: key.clone(), at_ms: 0 };
        assert!(!Footprint::of_move(GUARD_TTL_MS - 1).conflicts(&op(&invalidate, GuardTimes::Compared)));
        assert!(Footprint::of_move(GUARD_TTL_MS).conflicts(&op(&invalidate, GuardTimes::Compared)));
        assert_eq!(op(&invalidate, GuardTimes::NeverCompared).window, None, "kept");
        let read = Op::CacheRead { key };
        assert!(Footprint::of_move(1).conflicts(&op(&read, GuardTimes::Compared)));
        assert!(!Footprint::of_move(GUARD_TTL_MS).conflicts(&op(&read, GuardTimes::NeverCompared)));
        let flow =
            |guards| footprint(&Action::Code, Seen { read_guard_time: true, ..Seen::default() }, guards);
        assert!(Footprint::of_move(1).conflicts(&flow(GuardTimes::Compared)));
        assert!(!Footprint::of_move(1).conflicts_among(&flow(GuardTimes::NeverCompared), 2));
        // Moves conflict with each other, whatever their amounts.
        assert!(Footprint::of_move(1).conflicts(&Footprint::of_move(5_000)));
    }

    #[test]
    #[should_panic(expected = "reads none")]
    fn an_operation_that_reads_time_its_arm_does_not_declare_is_refused() {
        let op = Op::Commit;
        let done = Outcome::Done;
        let action = Action::Op { op: &op, applied: Applied::Done(&done), fault: None };
        footprint(&action, Seen { read_clock: true, ..Seen::default() }, GuardTimes::Compared);
    }
}
