//! Wakeup trees: the races of a run ask for whole sequences, not first
//! moves (Abdulla, Aronis, Jonsson, Sagonas, "Source Sets: A Foundation
//! for Optimal Dynamic Partial Order Reduction", JACM 64(4), 2017,
//! Algorithm 2, "Optimal-DPOR").
//!
//! Source sets reverse a race by asking the decision before its first
//! event to try one mover that could go first in the reversed order, and
//! leave what follows to the default choices; those may walk into a
//! decision where everything is asleep, a run made for nothing (a
//! *redundant* run). Here a race `(e, e')` asks that decision for the
//! sequence `v`: the events after `e` that do not happen after it, in the
//! run's order, then `e'`. Each decision keeps the sequences asked of it
//! as a tree (its *wakeup tree*: under each option, the sequences to run
//! after it), and a new decision takes the tree under its parent's option
//! as the options it tries, in the order they were asked for.
//!
//! A sequence `v` is not added where its class is covered already:
//! - a mover asleep or tried at the decision is a *weak initial* of `v`
//!   (its first event in `v` follows none before it, or it has no event
//!   in `v` and commutes with all of them): every run from that option on
//!   was or will be made, and one of them reverses the race; or
//! - walking down the tree, each node whose mover is a weak initial of
//!   what is left of `v` (that event taken out) leads to a leaf: the run
//!   through that leaf, whatever follows it, is in `v`'s class as far as
//!   `v` goes. Otherwise what is left of `v` becomes a new branch where
//!   the walk stopped, after the branches there.
//!
//! How the model departs from the paper's, and what is done about it:
//! - A clock move need not happen (a run ends when no request can move),
//!   where the paper's processes all run to their end: a move is a weak
//!   initial of `v` only by its event in `v`, never by commuting with it
//!   (a run without the move is not in the class of one with it).
//! - What a step touches can depend on where it runs: a read of the clock
//!   against a window records how far it is from crossing it, so the same
//!   step after a long clock move may conflict with the move and before it
//!   not. A mover asleep, tried or planned here is a weak initial when its
//!   event in `v` commutes with those before it there *or* what it touched
//!   here does (the footprint sleep sets go by: asleep here, it would stay
//!   asleep up to its turn in `v`). On r7 under `safe` with one move this
//!   judges fewer runs than source sets, with the same outcomes (claim
//!   `wakeup-trees/r7-cache-without-stripe/safe/1`): the classes source
//!   sets run besides, as each run's own footprints order them, put a 1-
//!   or 3-day move beside a step that conflicts with it only as measured
//!   after it.
//! - A mover whose footprint at a node is not known (an option added by a
//!   fallback) is never taken for a weak initial by commuting: a branch
//!   more, never one fewer.
//! - An option is planned before the options before it have run, so what
//!   they touch is not yet known; when its turn comes, an option whose
//!   every branch is covered by an option asleep or tried there now is
//!   passed over (`Frame::planned_covered`), as if its sequences had been
//!   asked for then. Not when a later sequence was found covered by its
//!   subtree (`Wakeup::absorbed`): that sequence counts on the subtree
//!   running. (Passing over those too lost an outcome of r6 under
//!   `transactional` with one move.)
//! - A taken clock move uses up the bound, so no run below it races the
//!   other amounts: each is asked for, alone, at the decision where the
//!   move was made (source sets add them as options there).
//! - A sequence's first mover may not be runnable at the decision (the
//!   lock case of `dfs`'s module): every option there is tried, as source
//!   sets do. A planned option no longer runnable when its decision is
//!   made does the same there (`fallbacks` counts both).
//! - No prefix tries every option (there are no shards).
//! - Locks park requests, which the paper's processes never are, so a
//!   run where every option is asleep is not ruled out; none is made on
//!   any built-in under any strategy with one clock move (BENCHMARKS,
//!   "Wakeup trees").
//!
//! One thread, whole: a sequence asked of a decision below an option
//! shapes what that option's subtree runs, so no part of it can start
//! before every earlier option's subtree has finished (`tree` launches
//! parts sooner), and a shard's probes would miss what other shards ask.

use super::races::Asked;
use super::{Event, Frame, Mover};
use crate::drive::stepper::Footprint;
use crate::input::schedule::Token;

/// A node of a decision's wakeup tree: an option, what it touches when
/// known, and the sequences to run after it.
#[derive(Debug, Clone)]
pub(super) struct Wakeup {
    pub(super) token: Token,
    made: Option<Footprint>,
    pub(super) kids: Vec<Wakeup>,
    /// A sequence asked for later was found covered by this node's
    /// subtree (so the subtree must run: `Frame::planned_covered`).
    absorbed: bool,
}

impl Wakeup {
    /// An option with nothing planned after it.
    pub(super) fn leaf(token: Token) -> Wakeup {
        Wakeup { token, made: None, kids: Vec::new(), absorbed: false }
    }

    /// `v` as one branch.
    fn chain(v: &[Event]) -> Wakeup {
        let mut below: Vec<Wakeup> = Vec::new();
        for (mover, made) in v.iter().rev() {
            below =
                vec![Wakeup { token: mover.token(), made: Some(made.clone()), kids: below, absorbed: false }];
        }
        below.pop().expect("a sequence to run has an event")
    }

    /// Whether this node's mover is a weak initial of `v`.
    fn leads(&self, v: &[Event], max_ticks: usize) -> bool {
        weak_initial(Mover::of(self.token), self.made.as_ref(), v, max_ticks)
    }

    /// Adds `v`, to run after this node, unless the tree covers it
    /// (then marks the nodes down to where it is covered, and says so).
    fn graft(&mut self, v: Vec<Event>, max_ticks: usize) -> bool {
        // A leaf covers what is left; so does a branch longer than it.
        if v.is_empty() || self.kids.is_empty() {
            self.absorbed = true;
            return true;
        }
        match self.kids.iter().position(|kid| kid.leads(&v, max_ticks)) {
            Some(k) => {
                let rest = without(v, Mover::of(self.kids[k].token));
                let absorbed = self.kids[k].graft(rest, max_ticks);
                self.absorbed |= absorbed;
                absorbed
            }
            None => {
                self.kids.push(Wakeup::chain(&v));
                false
            }
        }
    }

    /// Each sequence from this node to a leaf, if what each node touches
    /// is known.
    fn branches(&self, above: &mut Vec<Event>, into: &mut Vec<Vec<Event>>) -> Option<()> {
        above.push((Mover::of(self.token), self.made.clone()?));
        if self.kids.is_empty() {
            into.push(above.clone());
        }
        for kid in &self.kids {
            kid.branches(above, into)?;
        }
        above.pop();
        Some(())
    }
}

/// Whether `mover`, which touches `made` here when known, is a weak
/// initial of `v`: its first event in `v` follows none of the events
/// before it, or it has none in `v` and commutes with every one.
fn weak_initial(mover: Mover, made: Option<&Footprint>, v: &[Event], max_ticks: usize) -> bool {
    let commutes =
        |made: &Footprint, events: &[Event]| events.iter().all(|(_, f)| !f.conflicts_among(made, max_ticks));
    if let Some(k) = v.iter().position(|(m, _)| *m == mover) {
        // What a mover touches can depend on where it moves (a clock read
        // against a threshold, after a clock move or before it): its event
        // in `v` commutes with those before it, or what it touches here
        // does, which is what the sleep sets along `v` would go by (asleep
        // here, it would stay asleep up to its turn in `v`).
        return commutes(&v[k].1, &v[..k]) || made.is_some_and(|made| commutes(made, &v[..k]));
    }
    // A clock move need not happen: a run with no move at all is not in
    // the class of one that moves (the paper's processes run to their end).
    match (made, mover) {
        (Some(made), Mover::Request(_)) => commutes(made, v),
        _ => false,
    }
}

/// `v` with `mover`'s first event taken out (if it has one).
fn without(mut v: Vec<Event>, mover: Mover) -> Vec<Event> {
    if let Some(k) = v.iter().position(|(m, _)| *m == mover) {
        v.remove(k);
    }
    v
}

impl Frame {
    /// Whether a sleeping or tried option here covers every sequence
    /// planned under option `k` (see `insert`): what the options tried
    /// since they were planned touched is known now, and may show it.
    pub(super) fn planned_covered(&self, k: usize, max_ticks: usize) -> bool {
        let plan = &self.backtrack[k];
        if plan.absorbed || plan.made.is_none() {
            return false;
        }
        let (mut branches, mut above) = (Vec::new(), Vec::new());
        if plan.branches(&mut above, &mut branches).is_none() {
            return false;
        }
        branches.iter().all(|v| self.covers(v, max_ticks))
    }

    /// Whether an option asleep or tried here is a weak initial of `v`.
    fn covers(&self, v: &[Event], max_ticks: usize) -> bool {
        let covered =
            |(token, made): &(Token, Footprint)| weak_initial(Mover::of(*token), Some(made), v, max_ticks);
        self.sleep.iter().chain(&self.done).any(covered)
    }

    /// Asks this decision to run `v` (a race's reversal), unless what
    /// was tried or is planned here covers it (see the module).
    pub(super) fn insert(&mut self, v: Vec<Event>, max_ticks: usize) -> Asked {
        if self.covers(&v, max_ticks) {
            return Asked::default();
        }
        if let Some(k) = (self.at + 1..self.backtrack.len()).find(|&k| self.backtrack[k].leads(&v, max_ticks))
        {
            let rest = without(v, Mover::of(self.backtrack[k].token));
            self.backtrack[k].graft(rest, max_ticks);
            return Asked::default();
        }
        let first = v[0].0.token();
        if self.options.contains(&first) && !self.tries(&first) {
            self.backtrack.push(Wakeup::chain(&v));
            return Asked::default();
        }
        // Its first mover cannot go here: a race no runnable mover
        // reverses, as with source sets.
        self.ask(&[v[0].0])
    }
}

/// The options a decision tries under wakeup trees, with their plans:
/// what its parent planned under the option it took (`planned`), each
/// that is offered here and awake (a planned option asleep here is
/// covered elsewhere); every awake option after them when a planned
/// option is not offered (as for a race no mover can reverse); and with
/// nothing planned, the first awake option. Also whether a planned
/// option was not offered. (No decision is in a prefix that tries every
/// option: the search has no shards.)
pub(super) fn planned_options(
    planned: Vec<Wakeup>,
    awake: &[Token],
    offered: impl Fn(&Token) -> bool,
) -> (Vec<Wakeup>, bool) {
    let lost = planned.iter().any(|w| !offered(&w.token));
    let mut plans: Vec<Wakeup> = planned.into_iter().filter(|w| awake.contains(&w.token)).collect();
    for &token in awake {
        if (lost || plans.is_empty()) && !plans.iter().any(|w| w.token == token) {
            plans.push(Wakeup::leaf(token));
        }
    }
    (plans, lost)
}
