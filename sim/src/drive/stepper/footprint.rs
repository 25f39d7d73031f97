//! What one decision of a run touched, for the exhaustive scheduler's
//! reduction: two decisions of different requests whose footprints do not
//! conflict commute (either order leaves the same world, and neither can
//! enable or disable the other), so only one of their orders needs running.
//!
//! The relation is coarse where coarseness is cheap to be sure of:
//! - the database is one object: plain reads (no row lock, no fault) read
//!   it, and everything else a statement can do (write, lock, wait, be a
//!   deadlock victim, fail and roll back, record a tenant breach) writes it;
//! - each cache key is an object (an idempotency key is one too); a
//!   cache invalidation also conflicts with every read stamp, which a flow
//!   takes outside any operation and a stale-write guard compares with it;
//! - Stripe is one object;
//! - the id generator is one object: inserts, attaches and Stripe creates
//!   draw from it, so their order decides who gets which id;
//! - the clock is an object: a clock move writes it; a step that read
//!   virtual time (the world counts every reading: a row's creation time,
//!   a TTL, an idempotency window, Stripe's, a Stripe call's time in
//!   flight, a flow's own reading) reads it. A move also conflicts with
//!   every other move (with a bound on moves, one disables another).
//!
//! Transaction ids are in no footprint: `BEGIN` draws one from a counter,
//! so two commuting steps may swap theirs, but nothing compares their
//! values (lock queues keep acquisition order, and a wait names the first
//! holder in that order). They are names, and no outcome holds them.

use std::collections::BTreeMap;

use cusim::backend::{DeductTarget, Op, RowLock};

/// How an object was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    fn conflicts(a: Option<Access>, b: Option<Access>) -> bool {
        matches!((a, b), (Some(_), Some(Access::Write)) | (Some(Access::Write), Some(_)))
    }
}

fn widen(slot: &mut Option<Access>, access: Access) {
    *slot = (*slot).max(Some(access));
}

/// What one decision touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Virtual time: written by a clock move, read by a step that read it.
    pub clock: Option<Access>,
    pub db: Option<Access>,
    /// Cache keys (and idempotency keys), by their text.
    pub cache: BTreeMap<String, Access>,
    /// Took a read stamp (or read the cache, whose answer carries one).
    pub stamp: bool,
    /// Invalidated a cache key (moves a stale-write guard).
    pub invalidates: bool,
    pub stripe: Option<Access>,
    /// Drew ids from the shared generator.
    pub ids: bool,
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
            || Access::conflicts(self.db, other.db)
            || Access::conflicts(self.stripe, other.stripe)
            || (self.ids && other.ids)
            || (self.invalidates && other.stamp)
            || (self.stamp && other.invalidates)
            || self
                .cache
                .iter()
                .any(|(key, a)| other.cache.get(key).is_some_and(|b| Access::conflicts(Some(*a), Some(*b))))
    }

    pub fn write_db(&mut self) {
        widen(&mut self.db, Access::Write);
    }

    pub fn touch_cache(&mut self, key: String, access: Access) {
        let slot = self.cache.entry(key).or_insert(access);
        *slot = (*slot).max(access);
    }

    /// Adds what `op` touches when it is applied. `plain` is false when it
    /// met a fault, waited, or was anything but a clean run of the op.
    pub fn add_op(&mut self, op: &Op, plain: bool) {
        match op {
            Op::Begin => {}
            Op::ListDefaults { .. } if plain => {}
            Op::LookupId { lock: RowLock::None, .. }
            | Op::LookupEmail { .. }
            | Op::DbRead { lock: RowLock::None, .. }
                if plain =>
            {
                widen(&mut self.db, Access::Read)
            }
            Op::Insert { .. } | Op::AttachDefault { .. } => {
                self.write_db();
                self.ids = true;
            }
            Op::StripeCreate { .. } => {
                widen(&mut self.stripe, Access::Write);
                self.ids = true;
            }
            Op::StripeSearch { .. } => {
                widen(&mut self.stripe, if plain { Access::Read } else { Access::Write })
            }
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
                self.touch_cache(key.to_string(), Access::Write);
                if !plain {
                    self.write_db();
                }
            }
            Op::SyncUsage { key, .. } => {
                self.touch_cache(key.to_string(), Access::Write);
                self.write_db();
            }
            // Every other statement, and any statement that met a fault,
            // waited or failed: the database changes.
            _ => self.write_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_commute_and_a_write_does_not() {
        let read = Footprint { db: Some(Access::Read), ..Footprint::default() };
        let write = Footprint { db: Some(Access::Write), ..Footprint::default() };
        assert!(!read.conflicts(&read));
        assert!(read.conflicts(&write) && write.conflicts(&read) && write.conflicts(&write));
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
        let ids = Footprint { ids: true, ..Footprint::default() };
        assert!(ids.conflicts(&ids) && !ids.conflicts(&read));
    }
}
