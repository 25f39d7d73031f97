//! The state a run is in, for a search that caches states
//! (`Reduction::States`): two runs in the same state go on alike, so a
//! search that comes to a state it was in before need not go on from it.
//!
//! What the state is made of, and why it is enough:
//! - the world ([`World::fingerprint`]): the database (its transactions
//!   named by their requests, its waits by their rank: see
//!   `Database::fingerprint`), the cache, Stripe, virtual and logical time,
//!   the id streams and the deductions;
//! - each request: a running attempt's code is a deterministic function of
//!   the request and of everything the world gave it, which it *heard*
//!   (its answers, and each reading of the clocks and of read stamps, with
//!   what it read); where it is parked and on which operation (and when it
//!   sent the Stripe call it waits on, which its timeout compares); the
//!   fault pending on it; how its attempts ended and what they deducted;
//!   the services a fault was injected into; and, while it runs, the
//!   points it has reached (a scenario's faults are placed by
//!   occurrence). An attempt that has answered has no code left: only its
//!   answer and its records remain;
//! - the run: which request made each row (the oracle reads it), the clock
//!   moves made (the bound on them), and, if the options ask, the step.
//!
//! The step matters to nothing but the step cap, which cuts a run that
//! has made too many decisions. Two runs in one state at different steps
//! go on alike unless one of them would reach the cap; left out of the
//! state, the step (three auto-creating tracks under `safe`: 1,329,803
//! states with it, 439,875 without) is answered for after the search:
//! it keeps the states met and what led from one to the next, and its
//! longest path is the longest run of the whole space
//! (`explore::dfs::reach`). If that run is shorter than the cap, the cap
//! cut no run, the step was never needed, and the search stands; if not,
//! it runs again with the step in the state.
//!
//! The state is written out as a [`Fingerprint`] (each value through its
//! `Serialize`) and hashed to 128 bits: two different states share a hash
//! only by a collision, about 2^-128 for a pair (for a million states,
//! about 2^-88 that any two do), which would prune a state not met before.
//!
//! Logical times (a read stamp's, a stale-write guard's, now's: a field
//! whose name ends in `seq`, or given as one) are written by their rank among all of
//! the state's and now's. Nothing reads them but to compare them with one
//! another (the guard: `services::Cache::write`), and every later one is
//! at least now's, by the same amount in two runs that go on alike: ranks
//! keep every comparison a later step makes.
//!
//! Times nothing will compare are left out (their values; the fields stay),
//! by the argument of the dependency relation (`footprint`'s "Clock moves
//! and windows"), which calls the readings that keep them independent of
//! every clock move: a row's and a product's creation time (`created_at`;
//! the outcome leaves them out too), and, under a strategy whose cache
//! writes are all versioned (`GuardTimes::NeverCompared`), when a guard was
//! set, a read stamp's time and a flow's reading of its clock for a guard
//! alone (written without when). Two runs that differ only there go on
//! alike but for those values, which are copied, never compared. Without
//! them, three auto-creating tracks under `safe` with one clock move meet
//! 2,573,726 states instead of 4,365,889 (BENCHMARKS). `sim/tests/reduction.rs`'s
//! `runs_in_the_same_state_go_on_alike` checks the whole state: two
//! random runs that come to one state by different decisions must go on
//! alike (leaving out the cache's expiry times too, it fails at once).

use serde::Serialize;

use cusim::backend::{Op, Outcome, Point};
use cusim::fingerprint::Fingerprint;
use cusim::flow::Strategy;

use super::{Code, GuardTimes, Mark, Run, Slot};

/// What a request heard, as its fingerprint writes it.
#[derive(Serialize)]
enum Heard<'a> {
    Answer(&'a Outcome),
    /// Readings of virtual time and of its instance's clock for the guard
    /// alone, and the virtual time they read (none: kept).
    Read(u64, u64, Option<u64>),
    /// Read stamps taken (at now's logical time, which follows).
    Stamps(u64),
}

/// A row's or a product's creation time: kept, never compared.
const CREATED: &str = "created_at";
/// When a guard was set, and a read stamp's time: compared only by a
/// cache write that is not versioned (`GuardTimes`).
const GUARD_SET: &str = "set_at_ms";
const STAMP_TIME: &str = "time_ms";

/// The fields whose values a state under `strategy` leaves out (see the
/// module).
pub(super) fn kept(strategy: Strategy) -> &'static [&'static str] {
    match GuardTimes::of(strategy) {
        GuardTimes::NeverCompared => &[CREATED, GUARD_SET, STAMP_TIME],
        GuardTimes::Compared => &[CREATED],
    }
}

impl Run<'_, '_> {
    /// Answers request `i`'s op with `outcome`, which it hears.
    pub(super) fn answer(&mut self, i: usize, outcome: Outcome) {
        if self.hear {
            self.slots[i].heard.add(&Heard::Answer(&outcome));
        }
        let code = &mut self.codes[i];
        code.catch_up();
        code.conn.answer(outcome);
    }

    /// Request `i`'s code ran since `mark`: it heard what it read of the
    /// clocks (virtual time, its instance's clock for the guard, read
    /// stamps), at virtual and logical time now (its skew is the
    /// scenario's).
    pub(super) fn hear_reads(&mut self, i: usize, mark: Mark) {
        if !self.hear {
            return;
        }
        let now = self.mark();
        let (time, guard_time) = (now.time_reads - mark.time_reads, now.guard_reads - mark.guard_reads);
        let stamps = now.stamps - mark.stamps;
        let heard = &mut self.slots[i].heard;
        // A reading only a guard compares, where none does, is kept: when.
        let kept = time == 0 && GuardTimes::of(self.prepared.strategy) == GuardTimes::NeverCompared;
        if kept && guard_time > 0 {
            heard.add(&Heard::Read(0, guard_time, None));
        } else if time + guard_time > 0 {
            heard.add(&Heard::Read(time, guard_time, Some(self.world.observed_now_ms())));
        }
        if stamps > 0 {
            heard.add(&Heard::Stamps(stamps));
            heard.seq(self.world.seq());
        }
    }

    /// The state the run is in after `ticks` clock moves (see the
    /// module), its step counted `with_step`.
    pub(super) fn state(&self, ticks: usize, with_step: bool) -> u128 {
        // Every field named: one added must be placed here or left out here
        // (the scenario is the run's; the rest only records or measures).
        let Run {
            prepared,
            world,
            shadow: _,
            slots,
            codes,
            trace: _,
            record: _,
            bare: _,
            created_by,
            step,
            touched: _,
            track: _,
            hear: _,
            taped: _,
        } = self;
        let mut state = Fingerprint::new(kept(prepared.strategy));
        world.fingerprint(&mut state);
        for (slot, code) in slots.iter().zip(codes) {
            // Every field named: one added must be placed here or left out here.
            let Slot {
                arriving,
                parked,
                fresh,
                parked_at_ms,
                faulted,
                pending_fault,
                visits,
                outcome,
                earlier,
                deductions_at_start,
                deducted,
                heard,
            } = slot;
            // (The code: a function of what it heard.)
            let Code { conn: _, future, behind: _ } = code;
            let running = future.is_some();
            let parked_on_stripe = parked.as_ref().and_then(Op::point) == Some(Point::StripeCreate);
            state.add(&running);
            if running {
                state.append(heard);
            }
            state.add(&(
                parked,
                arriving,
                fresh,
                parked_on_stripe.then_some(parked_at_ms),
                pending_fault,
                running.then_some(visits),
                outcome,
                earlier,
                deductions_at_start,
                deducted,
                faulted,
            ));
        }
        state.add(&(created_by, ticks, with_step.then_some(step)));
        state.finish()
    }
}
