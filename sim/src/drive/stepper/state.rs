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
//!   moves made (the bound on them), and the step (the step cap).
//!
//! Logical times (written `seq: N`: a read stamp's, a stale-write guard's,
//! now's) are written by their rank among all of the state's and now's.
//! Nothing reads them but to compare them with one another (the guard:
//! `services::Cache::write`), and every later one is at least now's, by the
//! same amount in two runs that go on alike: ranks keep every comparison a
//! later step makes.
//!
//! The text is hashed to 128 bits (two SipHash-1-3 with different
//! starts): two different states share a hash only by a collision, about
//! 2^-128 for a pair, which would prune a state not met before.

use std::fmt::Write;
use std::hash::{DefaultHasher, Hasher};

use cusim::backend::{Op, Outcome, Point};

use super::{Mark, Run, Slot};

impl Run<'_, '_> {
    /// Answers request `i`'s op with `outcome`, which it hears.
    pub(super) fn answer(&mut self, i: usize, outcome: Outcome) {
        if self.hear {
            let _ = write!(self.slots[i].heard, "{outcome:?};");
        }
        self.slots[i].conn.answer(outcome);
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
        if time + guard_time > 0 {
            let _ = write!(heard, "read {time}+{guard_time} at {};", self.world.observed_now_ms());
        }
        if stamps > 0 {
            let _ = write!(heard, "stamps {stamps} seq: {};", self.world.seq());
        }
    }

    /// The state the run is in after `ticks` clock moves (see the module).
    pub(super) fn state(&self, ticks: usize) -> u128 {
        // Every field named: one added must be placed here or left out here
        // (the scenario is the run's; the rest only records or measures).
        let Run {
            prepared: _,
            world,
            shadow: _,
            slots,
            trace: _,
            record: _,
            bare: _,
            created_by,
            step,
            touched: _,
            track: _,
            hear: _,
        } = self;
        let mut text = String::with_capacity(4096);
        world.fingerprint(&mut text);
        for slot in slots {
            // Every field named: one added must be placed here or left out here.
            let Slot {
                conn: _,
                future,
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
            let running = future.is_some();
            let parked_on_stripe = parked.as_ref().and_then(Op::point) == Some(Point::StripeCreate);
            let _ = write!(
                text,
                "#{}|{parked:?}|{arriving}|{fresh}|{:?}|{pending_fault:?}|{:?}|{outcome:?}|{earlier:?}|\
                 {deductions_at_start:?}|{deducted:?}|{faulted:?}",
                if running { heard.as_str() } else { "answered" },
                parked_on_stripe.then_some(parked_at_ms),
                running.then_some(visits),
            );
        }
        let _ = write!(text, "#{created_by:?}|{ticks}|{step}");
        canonical_hash(&text)
    }
}

const SEQ: &str = "seq: ";

/// The 128-bit hash of `text` with every logical time (a number after
/// `seq: `) written as its rank among them all.
fn canonical_hash(text: &str) -> u128 {
    let number = |at: usize| {
        let digits = text[at..].bytes().take_while(u8::is_ascii_digit).count();
        (text[at..at + digits].parse::<u64>().ok(), digits)
    };
    let mut seqs: Vec<u64> = text.match_indices(SEQ).filter_map(|(at, _)| number(at + SEQ.len()).0).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let mut first = DefaultHasher::new();
    let mut second = DefaultHasher::new();
    second.write(b"the second of two");
    let mut feed = |bytes: &[u8]| {
        first.write(bytes);
        second.write(bytes);
    };
    let mut done = 0;
    for (at, _) in text.match_indices(SEQ) {
        let value = at + SEQ.len();
        if value < done {
            continue;
        }
        feed(&text.as_bytes()[done..value]);
        let (seq, digits) = number(value);
        if let Some(seq) = seq {
            let rank = seqs.binary_search(&seq).expect("every logical time was collected");
            feed(&(rank as u64).to_le_bytes());
        }
        done = value + digits;
    }
    feed(&text.as_bytes()[done..]);
    (u128::from(first.finish()) << 64) | u128::from(second.finish())
}

#[cfg(test)]
mod tests {
    use super::canonical_hash;

    #[test]
    fn logical_times_count_by_their_order_and_nothing_else_is_changed() {
        let state = |a: u64, b: u64, now: u64| {
            canonical_hash(&format!("stamp {{ seq: {a}, time: 5 }} guard {{ seq: {b} }} now seq: {now}"))
        };
        // The same order, other values: the same state.
        assert_eq!(state(3, 7, 9), state(10, 40, 41));
        // A tie is not an order.
        assert_ne!(state(3, 3, 9), state(3, 4, 9));
        // Another order.
        assert_ne!(state(3, 7, 9), state(7, 3, 9));
        // Everything but logical times counts as it is.
        assert_ne!(canonical_hash("stamp { seq: 1, time: 5 }"), canonical_hash("stamp { seq: 1, time: 6 }"));
        assert_ne!(canonical_hash("a seq: 1"), canonical_hash("b seq: 1"));
    }
}
