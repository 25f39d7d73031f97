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
//!
//! The text is hashed to 128 bits (XXH3-128): two different states share a
//! hash only by a collision, about 2^-128 for a pair (for a million states,
//! about 2^-88 that any two do), which would prune a state not met before.

use std::fmt::Write;
use std::sync::LazyLock;

use memchr::memmem::Finder;
use xxhash_rust::xxh3::Xxh3;

use cusim::backend::{Op, Outcome, Point};

use super::{Code, GuardTimes, Mark, Run, Slot};

impl Run<'_, '_> {
    /// Answers request `i`'s op with `outcome`, which it hears.
    pub(super) fn answer(&mut self, i: usize, outcome: Outcome) {
        if self.hear {
            let _ = write!(self.slots[i].heard, "{outcome:?};");
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
            let _ = write!(heard, "read 0+{guard_time};");
        } else if time + guard_time > 0 {
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
        let mut text = String::with_capacity(4096);
        // What each running request heard goes into the hash where it
        // belongs in the text, without being copied into it.
        let mut heard_at: Vec<(usize, &str)> = Vec::with_capacity(slots.len());
        world.fingerprint(&mut text);
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
            text.push('#');
            if running {
                heard_at.push((text.len(), heard.as_str()));
            } else {
                text.push_str("answered");
            }
            let _ = write!(
                text,
                "|{parked:?}|{arriving}|{fresh}|{:?}|{pending_fault:?}|{:?}|{outcome:?}|{earlier:?}|\
                 {deductions_at_start:?}|{deducted:?}|{faulted:?}",
                parked_on_stripe.then_some(parked_at_ms),
                running.then_some(visits),
            );
        }
        let _ = write!(text, "#{created_by:?}|{ticks}|{step}");
        let mut parts = Vec::with_capacity(2 * heard_at.len() + 1);
        let mut done = 0;
        for (at, heard) in heard_at {
            parts.extend([&text[done..at], heard]);
            done = at;
        }
        parts.push(&text[done..]);
        let kept: &[&str] = match GuardTimes::of(self.prepared.strategy) {
            GuardTimes::NeverCompared => &[CREATED, GUARD_SET, STAMP_TIME],
            GuardTimes::Compared => &[CREATED],
        };
        canonical_hash(&parts, kept)
    }
}

const SEQ: &str = "seq: ";
/// A row's or a product's creation time: kept, never compared.
const CREATED: &str = "created_at: ";
/// When a guard was set, and a read stamp's time: compared only by a
/// cache write that is not versioned (`GuardTimes`).
const GUARD_SET: &str = "set_at_ms: ";
const STAMP_TIME: &str = "time_ms: ";

/// The 128-bit hash of the text made of `parts`, one after the other
/// (none splits a field), with every logical time (a number after `seq: `)
/// written as its rank among them all, and the value of every field named
/// in `kept` (a time nothing after will compare) left out.
fn canonical_hash(parts: &[&str], kept: &[&str]) -> u128 {
    // Every name it looks for, each searched with a finder made once.
    static FINDERS: LazyLock<[Finder<'static>; 4]> =
        LazyLock::new(|| [SEQ, CREATED, GUARD_SET, STAMP_TIME].map(Finder::new));
    debug_assert!(kept.iter().all(|name| FINDERS.iter().any(|f| f.needle() == name.as_bytes())));
    // Each number: its part, where its digits begin and end, and its value
    // (a logical time), or none (left out).
    let mut found: Vec<(usize, usize, usize, Option<u64>)> = Vec::new();
    for (p, part) in parts.iter().enumerate() {
        let bytes = part.as_bytes();
        for finder in FINDERS.iter() {
            let name = finder.needle();
            let rank = name == SEQ.as_bytes();
            if !rank && !kept.iter().any(|k| k.as_bytes() == name) {
                continue;
            }
            for at in finder.find_iter(bytes) {
                // A kept field's name is the whole name (`seq: ` is a
                // logical time wherever it ends a name).
                let inside = at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
                if !rank && inside {
                    continue;
                }
                let start = at + name.len();
                let digits = part[start..].bytes().take_while(u8::is_ascii_digit).count();
                if let Ok(value) = part[start..start + digits].parse::<u64>() {
                    found.push((p, start, start + digits, rank.then_some(value)));
                }
            }
        }
    }
    found.sort_unstable();
    let mut seqs: Vec<u64> = found.iter().filter_map(|&(.., seq)| seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let mut hasher = Xxh3::new();
    let mut next = found.iter().peekable();
    for (p, part) in parts.iter().enumerate() {
        let mut done = 0;
        while let Some(&(_, start, end, seq)) = next.next_if(|&&(at, ..)| at == p) {
            hasher.update(&part.as_bytes()[done..start]);
            if let Some(seq) = seq {
                let rank = seqs.binary_search(&seq).expect("every logical time was collected");
                hasher.update(&(rank as u64).to_le_bytes());
            }
            done = end;
        }
        hasher.update(&part.as_bytes()[done..]);
    }
    hasher.digest128()
}

#[cfg(test)]
mod tests {
    use super::{canonical_hash, CREATED};

    fn canonical_hash_of(parts: &[&str]) -> u128 {
        canonical_hash(parts, &[])
    }

    #[test]
    fn logical_times_count_by_their_order_and_nothing_else_is_changed() {
        let state = |a: u64, b: u64, now: u64| {
            canonical_hash_of(&[&format!(
                "stamp {{ seq: {a}, time: 5 }} guard {{ seq: {b} }} now seq: {now}"
            )])
        };
        // The same order, other values: the same state.
        assert_eq!(state(3, 7, 9), state(10, 40, 41));
        // A tie is not an order.
        assert_ne!(state(3, 3, 9), state(3, 4, 9));
        // Another order.
        assert_ne!(state(3, 7, 9), state(7, 3, 9));
        // Everything but logical times counts as it is.
        assert_ne!(
            canonical_hash_of(&["stamp { seq: 1, time: 5 }"]),
            canonical_hash_of(&["stamp { seq: 1, time: 6 }"])
        );
        assert_ne!(canonical_hash_of(&["a seq: 1"]), canonical_hash_of(&["b seq: 1"]));
        // The parts are one text: where it is cut changes nothing, and the
        // logical times of every part rank together.
        assert_eq!(canonical_hash_of(&["a seq: 3|", "b seq: 9"]), canonical_hash_of(&["a seq: 3|b seq: 9"]));
        assert_eq!(
            canonical_hash_of(&["a seq: 3|", "b seq: 9"]),
            canonical_hash_of(&["a seq: 1|", "b seq: 2"])
        );
        assert_ne!(
            canonical_hash_of(&["a seq: 3|", "b seq: 9"]),
            canonical_hash_of(&["a seq: 9|", "b seq: 3"])
        );
        // A kept time's value is left out, and only a field of that name's.
        let kept = |text: &str| canonical_hash(&[text], &[CREATED]);
        assert_eq!(kept("Row { created_at: 0, seq: 4 }"), kept("Row { created_at: 86401000, seq: 4 }"));
        assert_ne!(kept("Row { created_at: 0 }"), kept("Row { created_at_ms: 0 }"));
        assert_ne!(kept("Row { xcreated_at: 0 }"), kept("Row { xcreated_at: 1 }"));
        assert_ne!(kept("Row { created_at_ms: 0 }"), kept("Row { created_at_ms: 1 }"));
    }
}
