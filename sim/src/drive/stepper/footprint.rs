//! What one decision of a run touched, for the exhaustive scheduler's
//! reduction: two decisions of different requests whose footprints do not
//! conflict commute (either order leaves the same world, and neither can
//! enable or disable the other), so only one of their orders needs running.
//!
//! - the database: each key the database's statements touched, as the
//!   database itself recorded it while they ran (rows by their internal
//!   id and unique keys, a lookup's key, a customer's products and usage,
//!   advisory locks, the wait-for graph; a transaction's end writes every
//!   key it wrote or locked: see `cusim::backend::mem::database::touched`);
//! - each cache key is an object (an idempotency key is one too); a
//!   cache invalidation also conflicts with every read stamp, which a flow
//!   takes outside any operation and a stale-write guard compares with it;
//! - Stripe: each idempotency key, and each customer's Stripe customers
//!   (a create writes both, a search reads the customer's);
//! - the clock is an object: a clock move writes it; a step that read
//!   virtual time (the world counts every reading: a row's creation time,
//!   a TTL, an idempotency window, Stripe's, a Stripe call's time in
//!   flight, a flow's own reading) reads it. A move also conflicts with
//!   every other move (with a bound on moves, one disables another).
//!
//! Ids are in no footprint: each request draws from a stream of its own,
//! so the ids it gets do not depend on the order of other requests'
//! steps. Transaction ids are in none either: `BEGIN` draws one from a
//! counter, so two commuting steps may swap theirs, but nothing compares
//! their values (lock queues keep acquisition order, and a wait names the
//! first holder in that order). They are names, and no outcome holds
//! them. Row positions (insertion order) are names too: the state a run
//! is judged on lists rows in a canonical order.

use std::collections::BTreeMap;

pub use cusim::backend::mem::Access;
use cusim::backend::mem::DbKey;
use cusim::backend::{DeductTarget, Op};

fn widen(slot: &mut Option<Access>, access: Access) {
    *slot = (*slot).max(Some(access));
}

/// What one decision touched.
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
    pub fn tick() -> Footprint {
        Footprint { clock: Some(Access::Write), ..Footprint::default() }
    }

    pub fn read_clock(&mut self) {
        widen(&mut self.clock, Access::Read);
    }

    /// Whether the two decisions may not commute.
    pub fn conflicts(&self, other: &Footprint) -> bool {
        Access::conflicts(self.clock, other.clock)
            || (self.invalidates && other.stamp)
            || (self.stamp && other.invalidates)
            || maps_conflict(&self.db, &other.db)
            || maps_conflict(&self.stripe, &other.stripe)
            || maps_conflict(&self.cache, &other.cache)
    }

    /// Adds what the database recorded.
    pub fn add_db(&mut self, touched: BTreeMap<DbKey, Access>) {
        for (key, access) in touched {
            Access::record(&mut self.db, key, access);
        }
    }

    pub fn touch_cache(&mut self, key: String, access: Access) {
        Access::record(&mut self.cache, key, access);
    }

    /// Adds what `op` touches when it is applied. `plain` is false when it
    /// met a fault, waited, or was anything but a clean run of the op.
    /// The database's part is what the database records.
    pub fn add_op(&mut self, op: &Op, plain: bool) {
        match op {
            Op::StripeCreate { idempotency_key, params } => {
                Access::record(&mut self.stripe, format!("idempotency {idempotency_key}"), Access::Write);
                Access::record(&mut self.stripe, format!("customer {}", params.internal_id), Access::Write);
            }
            Op::StripeSearch { internal_id } => Access::record(
                &mut self.stripe,
                format!("customer {internal_id}"),
                if plain { Access::Read } else { Access::Write },
            ),
            Op::CacheRead { key } => {
                self.touch_cache(key.to_string(), if plain { Access::Read } else { Access::Write });
                self.stamp = true;
            }
            Op::CacheWrite { key, .. } => self.touch_cache(key.to_string(), Access::Write),
            Op::CacheInvalidate { key, .. } => {
                self.touch_cache(key.to_string(), Access::Write);
                self.invalidates = true;
            }
            Op::IdempotencyClaim { scope, key } | Op::IdempotencyRelease { scope, key } => {
                self.touch_cache(format!("idempotency {scope} {key}"), Access::Write)
            }
            Op::Deduct { target: DeductTarget::Cache(key), .. } => {
                self.touch_cache(key.to_string(), Access::Write)
            }
            Op::SyncUsage { key, .. } => self.touch_cache(key.to_string(), Access::Write),
            // Database statements: the database records what they touch.
            _ => {}
        }
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

    #[test]
    fn reads_commute_and_a_write_does_not() {
        let db = |key: &str, access| {
            let mut f = Footprint::default();
            f.add_db(BTreeMap::from([(DbKey::Customer(key.into()), access)]));
            f
        };
        let (read, write) = (db("a", Access::Read), db("a", Access::Write));
        assert!(!read.conflicts(&read));
        assert!(read.conflicts(&write) && write.conflicts(&read) && write.conflicts(&write));
        assert!(!write.conflicts(&db("b", Access::Write)), "different rows commute");
        assert!(!Footprint::tick().conflicts(&write));
        let mut timed = Footprint::default();
        timed.read_clock();
        assert!(Footprint::tick().conflicts(&timed) && Footprint::tick().conflicts(&Footprint::tick()));
        assert!(!timed.conflicts(&timed));
        let mut k1 = Footprint::default();
        k1.touch_cache("k1".into(), Access::Write);
        let mut k2 = Footprint::default();
        k2.touch_cache("k2".into(), Access::Write);
        assert!(!k1.conflicts(&k2) && k1.conflicts(&k1));
        let stamp = Footprint { stamp: true, ..Footprint::default() };
        let invalidates = Footprint { invalidates: true, ..k2.clone() };
        assert!(stamp.conflicts(&invalidates) && invalidates.conflicts(&stamp));
    }
}
