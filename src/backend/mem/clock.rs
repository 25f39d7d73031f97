//! The world's clocks: virtual time in milliseconds, moved only by a
//! driver (schedule tokens, madsim's virtual time), and logical time, one
//! tick per applied operation, which orders cache reads and invalidations
//! for the stale-write guard.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A counter shared by a world and its connections. One thread at a time
/// touches a world (a free-running driver holds its lock), so relaxed
/// atomics are enough; they keep `World` `Send`.
#[derive(Debug, Clone, Default)]
pub struct SharedClock(Arc<AtomicU64>);

impl SharedClock {
    pub fn new(value: u64) -> SharedClock {
        SharedClock(Arc::new(AtomicU64::new(value)))
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

/// Virtual time and logical time.
#[derive(Debug, Default)]
pub struct Clocks {
    /// Virtual milliseconds.
    pub time_ms: SharedClock,
    /// Operations applied so far (connections stamp their reads with it).
    pub seq: SharedClock,
    /// Read stamps taken so far: a step that took one reads `seq` outside
    /// any operation (what a reduction's dependency relation must know).
    pub stamps: SharedClock,
    /// Readings of virtual time so far, by the world and its connections:
    /// a step that read it depends on a clock move (what a reduction's
    /// dependency relation must know).
    pub time_reads: SharedClock,
    /// Readings of an instance's clock for the stale-write guard alone (a
    /// read stamp's time, an invalidation's), counted apart: only a guard
    /// compares them.
    pub guard_reads: SharedClock,
}

impl Clocks {
    /// Virtual time, counted as one reading.
    pub fn now_ms(&self) -> u64 {
        self.time_reads.set(self.time_reads.get() + 1);
        self.time_ms.get()
    }

    pub fn advance(&self, delta_ms: u64) {
        self.time_ms.set(self.time_ms.get().saturating_add(delta_ms));
    }

    pub fn seq(&self) -> u64 {
        self.seq.get()
    }

    /// One more operation applied.
    pub fn tick(&self) {
        self.seq.set(self.seq.get() + 1);
    }
}

impl Clone for Clocks {
    /// Clocks of their own, at the same readings: a copied world's
    /// connections see only the copy's time (a derived clone would share
    /// the cells).
    fn clone(&self) -> Clocks {
        Clocks {
            time_ms: SharedClock::new(self.time_ms.get()),
            seq: SharedClock::new(self.seq.get()),
            stamps: SharedClock::new(self.stamps.get()),
            time_reads: SharedClock::new(self.time_reads.get()),
            guard_reads: SharedClock::new(self.guard_reads.get()),
        }
    }
}
