//! A new decision of the search: its options, its sleep set, and which of
//! them it tries, by the reduction (see the module above).

use std::collections::hash_map::Entry;

use super::wakeup::{self, Wakeup};
use super::{Bits, Dfs, Frame, Reduction, UNIT_OPERATIONS};
use crate::drive::stepper::{Footprint, View};
use crate::explore::schedulers::CLOCK_MOVES_MS;
use crate::input::schedule::Token;

impl Dfs {
    /// The sleep set of a new frame: what slept at its parent or was
    /// tried there before, and commutes with the parent's decision.
    fn inherited_sleep(&self, done: Option<&Footprint>) -> Vec<(Token, Footprint)> {
        let (Some(parent), Some(done)) = (self.frames.last(), done) else { return Vec::new() };
        parent
            .sleep
            .iter()
            .chain(&parent.done)
            .filter(|(_, footprint)| !footprint.conflicts_among(done, self.max_ticks))
            .cloned()
            .collect()
    }

    /// Makes the decision the run has come to: its options (the
    /// non-preempting choice first), its sleep set, what it tries, and
    /// the first of those (none when every option is asleep).
    pub(super) fn new_frame(&mut self, view: &View<'_>, last_runnable: Option<usize>) -> Option<Token> {
        let sleep = match self.reduction {
            Reduction::None => Vec::new(),
            _ => self.inherited_sleep(view.done),
        };
        // A state met before: only what slept there then and is awake now
        // is left to run from it (see the module).
        let asleep_now = |token: &Token| sleep.iter().any(|(t, _)| t == token);
        let mut left: Option<Vec<Token>> = None;
        self.max_steps = view.max_steps;
        if let (Reduction::States, Some(state)) = (self.reduction, view.state) {
            self.reach.met(self.frames.last().and_then(|parent| parent.state), state);
            match self.visited.entry(state) {
                Entry::Vacant(entry) => {
                    entry.insert(sleep.iter().map(|(t, _)| *t).collect());
                }
                Entry::Occupied(mut entry) => {
                    let slept = entry.get_mut();
                    left = Some(slept.iter().copied().filter(|t| !asleep_now(t)).collect());
                    slept.retain(asleep_now);
                }
            }
        }
        let mut options: Vec<Token> = Vec::new();
        let mut bounded_out = Vec::new();
        // The non-preempting choice first: the first schedule is the plainest.
        if let Some(last) = last_runnable {
            options.push(Token::run(last));
        }
        let may_preempt = self.max_preemptions.is_none_or(|max| self.preemptions < max);
        for &r in view.runnable {
            if Some(r) != last_runnable {
                // An arrival preempts nobody (see the stepper's count).
                if last_runnable.is_none() || may_preempt || view.arriving(r) {
                    options.push(Token::run(r));
                } else {
                    bounded_out.push(r);
                }
            }
        }
        if view.ticks_so_far < self.max_ticks {
            options.extend(CLOCK_MOVES_MS.map(|ms| Token::Tick { ms }));
        }
        let awake = options
            .iter()
            .copied()
            .filter(|o| !asleep_now(o))
            .filter(|o| left.as_ref().is_none_or(|left| left.contains(o)));
        let in_prefix = self.operations < UNIT_OPERATIONS;
        let backtrack: Vec<Wakeup> = match self.reduction {
            Reduction::SourceSets if !in_prefix => awake.take(1).map(Wakeup::leaf).collect(),
            Reduction::WakeupTrees => {
                // What the parent's option planned after it (see `wakeup`).
                let planned = match self.frames.last_mut() {
                    Some(parent) => std::mem::take(&mut parent.backtrack[parent.at].kids),
                    None => Vec::new(),
                };
                let offered = |t: &Token| {
                    options.contains(t)
                        || matches!(t, Token::Run { request, .. } if bounded_out.contains(request))
                };
                // No prefix: the search runs whole (`Reduction::runs_whole`).
                let (backtrack, lost) = wakeup::planned_options(planned, &awake.collect::<Vec<_>>(), offered);
                self.fallbacks += u64::from(lost);
                backtrack
            }
            _ => awake.map(Wakeup::leaf).collect(),
        };
        let arriving: Vec<usize> = view.runnable.iter().copied().filter(|&r| view.arriving(r)).collect();
        // The bound cut an option the search would have tried: plain and
        // sleep sets try every awake option; source sets, when nothing
        // else is awake (the decision would otherwise count as blocked).
        let asleep = |r: &usize| sleep.iter().any(|(t, _)| *t == Token::run(*r));
        let cut = bounded_out.iter().any(|r| !asleep(r));
        if cut && (!self.reduction.races() || backtrack.is_empty()) {
            self.pruned = true;
        }
        // Sleep sets and states only: source sets try a move only where a
        // race asks for it, and finish a blocked run for its races.
        let last_move = matches!(self.reduction, Reduction::SleepSets | Reduction::States)
            && view.ticks_so_far + 1 == self.max_ticks
            && view.step + 1 < view.max_steps
            && bounded_out.is_empty();
        let mut frame = Frame {
            options,
            bounded_out,
            backtrack,
            at: 0,
            sleep,
            done: Vec::new(),
            before: Bits::default(),
            arriving,
            owned: true,
            last_move,
            made: None,
            snapshot: None,
            counts: (self.preemptions, self.operations, self.probing),
            state: view.state,
        };
        if !frame.skip(self.max_ticks) {
            // Nothing left to run from here: everything after it ran from
            // elsewhere.
            self.cut = self.reduction == Reduction::States;
            return None;
        }
        let first = frame.current();
        self.frames.push(frame);
        Some(first)
    }
}
