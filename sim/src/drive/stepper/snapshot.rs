//! Snapshots of a run, to go on from a decision again without making the
//! decisions before it again ([`Chooser::resume`]).
//!
//! A search by prefix replay makes every run's prefix again from the
//! start, and most of a run is its prefix: a search that caches states
//! stops most runs one decision after it. A snapshot keeps everything a
//! run is at a decision but its requests'
//! futures, which cannot be copied: the world (with clocks of its own),
//! each request's record, who made each row, and the decisions so far.
//! Each running request's code is a function of what it got from its
//! connection, which a taped connection keeps ([`Tape`]); going on from a
//! snapshot makes each code again on a connection that plays its tape
//! back, which runs it to where it was parked without the world. The
//! run then goes on exactly as the one that kept the snapshot would have:
//! the same world, the same codes, the same records (what it adds is
//! checked: `explore::resumed`'s `snapshots_change_nothing`). A code made
//! again is polled through its tape only when its request next moves: a
//! run cut at its next decision polls one.
//!
//! A run that records its trace, or that a shadow follows, keeps no
//! snapshot and goes on from none (its trace and its shadow begin at the
//! start).

use std::collections::BTreeMap;

use cusim::backend::mem::{MemConn, Tape, World};

use crate::input::schedule::Token;
use crate::judge::Creator;

use super::{code_on, Code, Parts, Prepared, Run, Slot};

/// Where a run is in its decisions (the stepper's loop's own record).
#[derive(Debug, Clone, Default)]
pub(super) struct Progress {
    pub(super) schedule: Vec<Token>,
    pub(super) was_default: Vec<bool>,
    pub(super) preemptions: usize,
    pub(super) last: Option<usize>,
    pub(super) ticks: usize,
}

/// A run as it was at a decision, before it was made (see the module).
pub struct Snapshot {
    world: World,
    slots: Vec<Slot>,
    /// Each request's current attempt's tape, while its code runs.
    tapes: Vec<Option<Tape>>,
    created_by: BTreeMap<String, Creator>,
    step: usize,
    progress: Progress,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("step", &self.step).finish_non_exhaustive()
    }
}

impl Run<'_, '_> {
    /// The run now, at a decision not made yet.
    pub(super) fn snapshot(&self, progress: &Progress) -> Snapshot {
        debug_assert!(self.taped && !self.record && self.shadow.is_none());
        Snapshot {
            world: self.world.clone(),
            slots: self.slots.clone(),
            tapes: self.codes.iter().map(|code| code.future.as_ref().map(|_| code.conn.tape())).collect(),
            created_by: self.created_by.clone(),
            step: self.step,
            progress: progress.clone(),
        }
    }
}

impl Snapshot {
    /// The run the snapshot was taken of, at the decision it was taken at
    /// (for a run that records no trace and that no shadow follows).
    pub(super) fn resume(&self, prepared: &Prepared) -> (Parts, Progress) {
        let world = self.world.clone();
        let codes = self
            .tapes
            .iter()
            .enumerate()
            .map(|(i, tape)| {
                let conn = MemConn::new(&world).skewed(prepared.scenario.skew_ms(i));
                let Some(tape) = tape else { return Code { conn, future: None, behind: None } };
                let mut code = code_on(conn.playing(tape), prepared, i);
                // Its code runs through its tape to the op it is parked
                // on (which the slot holds) when it is next polled.
                code.behind = self.slots[i].parked.clone();
                code
            })
            .collect();
        let parts = Parts {
            world,
            slots: self.slots.clone(),
            codes,
            created_by: self.created_by.clone(),
            step: self.step,
        };
        (parts, self.progress.clone())
    }
}
