//! The exhaustive scheduler: depth-first search over schedules by prefix
//! replay, with partial-order reduction.
//!
//! A run goes on from the last snapshot its frames kept at or before its
//! first new decision (`drive::stepper::Snapshot`: the world and every
//! request's record, their codes made again from what they heard) rather
//! than making every decision of its prefix again; which frames keep one
//! is `Dfs::snapshots_at`'s. A search reports the same with snapshots or
//! without (`resumed`'s test).
//!
//! A schedule is a sequence of decisions, each made by a *mover*: a
//! request taking its next step, or the clock moving by one of
//! `CLOCK_MOVES_MS` (each amount is a mover of its own). Two decisions of
//! different movers *conflict* when their footprints do
//! (`drive::stepper::Footprint`); schedules that differ only in the order
//! of adjacent non-conflicting decisions are equivalent (same world, same
//! responses), and a reduction runs at least one schedule of each class.
//!
//! - `none`: every order (plain depth-first search).
//! - `sleep_sets` (Godefroid): at each decision every option is tried,
//!   except those *asleep*: an option explored at an ancestor (or a
//!   sibling) that commutes with everything done since.
//! - `source_sets` (Abdulla, Aronis, Jonsson, Sagonas, "Optimal Dynamic
//!   Partial Order Reduction", POPL 2014, Algorithm 1, with sleep sets):
//!   each decision starts with one option; after every run, each *race*
//!   (two conflicting decisions of different movers with nothing ordered
//!   between them) asks the decision before the first of them to also try
//!   a mover that could go first in the reversed order, unless one such
//!   mover is already tried there.
//! - `wakeup_trees` (the same paper's Algorithm 2, "Optimal-DPOR", as in
//!   its JACM 2017 version; `wakeup`): each race asks for the whole
//!   sequence that reverses it, kept per decision as a tree, and not where
//!   an option asleep or tried there covers it; so no run walks into a
//!   decision where every option sleeps. The same outcomes as the others
//!   (`sim/tests/reduction.rs`), no redundant run on any built-in under
//!   `safe` (BENCHMARKS, "Wakeup trees"). One thread, no shards.
//! - `states`: sleep sets, and a run that comes to a state an earlier run
//!   was in (its hash: `drive::stepper::state`) stops there unless some
//!   option that slept there at every visit so far is awake now; it then
//!   runs only those (Godefroid, "Partial-Order Methods for the
//!   Verification of Concurrent Systems", LNCS 1032, 1996: sleep sets with
//!   state caching). Why no outcome is missed: from each state met, every
//!   option runs except those asleep at every visit so far; an option
//!   asleep at a visit commutes with everything done since it was tried
//!   at an ancestor (or a sibling), so where it leads is reached the other
//!   way round from that ancestor, by a run made or still to make; and an
//!   option awake at a later visit runs then. The other way round leads to
//!   the same state, or to one the state tells apart but nothing after it
//!   can (commuting decisions may leave a read stamp's logical time equal
//!   to now's or below it, and with a clock move, other kept times: the
//!   relation's argument, `drive::stepper::footprint`), whose outcomes are
//!   the same. So it meets every outcome, but not every state the state's
//!   hash tells apart (r8 under legacy, no clock move: 164 of the 828 plain
//!   search meets), nor every schedule of each class, nor every race a
//!   schedule to a violation may show (a run to a state met before is not
//!   judged). One thread, no shards: a part would keep states of its own.
//!   (Before sleep sets, every option ran from every new state: three
//!   auto-creating tracks with no clock move took 699,779 runs, now
//!   161,060.)
//!
//! How the model's world fits the algorithm:
//! - A request parked on a lock is not runnable. A race whose second
//!   mover was not runnable before the first decision but was right after
//!   it (the first woke it) cannot be reversed, and is not one. If no
//!   mover that could go first is runnable there for any other reason,
//!   every option of that decision is tried (never fewer schedules than
//!   correct).
//! - The clock may move at any decision and need not move at all: a run
//!   ends when no request can move. Each clock move still allowed at the
//!   end of a run is treated as a decision after its last one, so its
//!   races with the run's decisions place it everywhere it matters.
//! - With `--max-preemptions`, an option the bound rules out is not tried
//!   and the run is not exhaustive (`pruned`). A bounded run with
//!   reduction is *not* complete within its bound: an equivalence class
//!   may have schedules within the bound while the one the reduction
//!   picked exceeds it. Use `--reduction none` for a complete bounded
//!   search.

mod decision;
mod races;
mod reach;
pub(super) mod tree;
mod wakeup;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

use super::Shard;
use crate::drive::stepper::{Chooser, Footprint, Snapshot, View};
use crate::input::schedule::Token;
use reach::Reach;
use wakeup::Wakeup;

/// How the exhaustive scheduler avoids running equivalent schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reduction {
    /// Plain depth-first search: every order.
    None,
    /// Sleep sets only: one order of each pair of commuting decisions.
    SleepSets,
    /// Source sets with sleep sets (dynamic partial-order reduction).
    SourceSets,
    /// Wakeup trees with sleep sets: a race asks for the whole sequence
    /// that reverses it (optimal dynamic partial-order reduction; `wakeup`).
    WakeupTrees,
    /// Sleep sets, and a run that comes to a state an earlier run was in
    /// stops there (unless an option asleep at every earlier visit is
    /// awake now).
    States,
}

impl Reduction {
    /// Whether a search under this reduction runs on one thread and whole
    /// (no shards, no threads): states cached would be kept per part, and
    /// a wakeup tree shapes a subtree from every earlier one (`wakeup`).
    pub fn runs_whole(self) -> bool {
        matches!(self, Reduction::States | Reduction::WakeupTrees)
    }

    /// Whether a run's races ask for more options (source sets, wakeup
    /// trees) rather than every awake option being tried.
    fn races(self) -> bool {
        matches!(self, Reduction::SourceSets | Reduction::WakeupTrees)
    }
}

/// Who makes a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mover {
    Request(usize),
    Clock(u64),
}

impl Mover {
    fn of(token: Token) -> Mover {
        match token {
            Token::Run { request, .. } => Mover::Request(request),
            Token::Tick { ms } => Mover::Clock(ms),
        }
    }

    fn token(self) -> Token {
        match self {
            Mover::Request(request) => Token::run(request),
            Mover::Clock(ms) => Token::Tick { ms },
        }
    }
}

/// One decision of a sequence a race asks for (wakeup trees): who moves,
/// and what it touches there.
type Event = (Mover, Footprint);

/// A set of decisions of one run, by index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Bits(Vec<u64>);

impl Bits {
    fn with_len(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn has(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn union(&mut self, other: &Bits) {
        for (w, o) in self.0.iter_mut().zip(&other.0) {
            *w |= o;
        }
    }

    fn meets(&self, other: &Bits) -> bool {
        self.0.iter().zip(&other.0).any(|(a, b)| a & b != 0)
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0
            .iter()
            .enumerate()
            .flat_map(|(k, &w)| (0..64).filter(move |b| w & (1 << b) != 0).map(move |b| k * 64 + b))
    }
}

/// One decision of the search.
struct Frame {
    /// What may be chosen here (within the preemption bound), the
    /// non-preempting choice first.
    options: Vec<Token>,
    /// Runnable requests the preemption bound keeps out of `options`.
    bounded_out: Vec<usize>,
    /// The options to try, in order, each with what to run after it
    /// (wakeup trees only: `wakeup`; leaves otherwise); `backtrack[at]` is
    /// being tried.
    backtrack: Vec<Wakeup>,
    at: usize,
    /// Options covered elsewhere, with what they touch here.
    sleep: Vec<(Token, Footprint)>,
    /// Options tried here, with what they touched.
    done: Vec<(Token, Footprint)>,
    /// The decisions of the current run before this one that happen
    /// before it (source sets only).
    before: Bits,
    /// Requests arriving here (their next decision runs their code up to
    /// their first operation).
    arriving: Vec<usize>,
    /// When the current option is a unit: whether this shard owns it.
    owned: bool,
    /// A clock move tried here is the run's last, and the run may go on
    /// after it (within its step cap, with no runnable request left out
    /// by the preemption bound): what `idle_move` asks about.
    last_move: bool,
    /// What the current option touched, once a run made it (a run that
    /// goes on from a snapshot does not make the decisions before it).
    made: Option<Footprint>,
    /// The run as it was here, before this decision, when kept: the next
    /// option here goes on from it.
    snapshot: Option<Snapshot>,
    /// The search's counts before this decision: preemptions, operations,
    /// and whether the run was probing.
    counts: (usize, usize, bool),
    /// The state the run was in here, when it hashes states.
    state: Option<u128>,
}

impl Frame {
    /// This frame as a thread's search starts from it (`tree`): all but
    /// its snapshot.
    fn copy(&self) -> Frame {
        Frame {
            options: self.options.clone(),
            bounded_out: self.bounded_out.clone(),
            backtrack: self.backtrack.clone(),
            at: self.at,
            sleep: self.sleep.clone(),
            done: self.done.clone(),
            before: self.before.clone(),
            arriving: self.arriving.clone(),
            owned: self.owned,
            last_move: self.last_move,
            made: self.made.clone(),
            snapshot: None,
            counts: self.counts,
            state: self.state,
        }
    }

    fn current(&self) -> Token {
        self.backtrack[self.at].token
    }

    fn asleep(&self, token: &Token) -> bool {
        self.sleep.iter().any(|(t, _)| t == token)
    }

    /// Moves to the next option to try; false when none is left.
    fn advance(&mut self, max_ticks: usize) -> bool {
        self.at += 1;
        self.skip(max_ticks)
    }

    /// Moves past options asleep here, idle clock moves (`idle_move`) and
    /// options whose plans are covered (`planned_covered`); false when
    /// none is left.
    fn skip(&mut self, max_ticks: usize) -> bool {
        while self.at < self.backtrack.len()
            && (self.asleep(&self.backtrack[self.at].token)
                || self.idle_move(self.backtrack[self.at].token, max_ticks)
                || self.planned_covered(self.at, max_ticks))
        {
            self.at += 1;
        }
        self.at < self.backtrack.len()
    }

    /// Whether `token` is a clock move after which every option sleeps, so
    /// that the run trying it would stop at the next decision and run
    /// nothing: the last move the bound allows (no other is offered after
    /// it), and every request's option here was tried here or sleeps here
    /// and commutes with it (so it sleeps after it: `inherited_sleep`).
    /// A move does not change who may move, and its footprint is known
    /// before it is made. Not making that run leaves the search as it was
    /// (a state first met with every option asleep is left as if never
    /// met: the next visit runs whatever is awake then either way), and
    /// saves a run to the frame: three auto-creating tracks under `safe`
    /// with one clock move, states cached, made 2,142,707 runs, and make
    /// 832,379 without them (BENCHMARKS, "Snapshots and idle clock
    /// moves").
    fn idle_move(&self, token: Token, max_ticks: usize) -> bool {
        let Token::Tick { ms } = token else { return false };
        if !self.last_move {
            return false;
        }
        let tick = Footprint::of_move(ms);
        self.options.iter().filter(|o| matches!(o, Token::Run { .. })).all(|o| {
            self.sleep.iter().chain(&self.done).any(|(t, f)| t == o && !f.conflicts_among(&tick, max_ticks))
        })
    }

    fn runnable(&self, request: usize) -> bool {
        self.options.contains(&Token::run(request)) || self.bounded_out.contains(&request)
    }

    /// Whether `token` is among the options to try here.
    fn tries(&self, token: &Token) -> bool {
        self.backtrack.iter().any(|w| w.token == *token)
    }

    fn add(&mut self, token: Token) {
        if !self.tries(&token) {
            self.backtrack.push(Wakeup::leaf(token));
        }
    }

    /// Whether choosing `token` here keeps the run in the prefix: an
    /// arrival or a clock move, not a request's operation.
    fn keeps_open(&self, token: Token) -> bool {
        match token {
            Token::Run { request, .. } => self.arriving.contains(&request),
            Token::Tick { .. } => true,
        }
    }
}

/// Depth-first enumeration of schedules by prefix replay (see the module).
///
/// Every decision of a run's *prefix* (its decisions up to its
/// [`UNIT_OPERATIONS`]-th operation: arrivals, clock moves and the
/// operations before it) tries every awake option, whatever the
/// reduction, so that what is tried there does not depend on what was
/// found below. The decision that makes that operation is the run's
/// *unit*: the subtrees below the units are what a sharded search
/// divides, the `k`-th unit met (in the search's order, which every shard
/// follows alike) going to shard `k mod N`. Every shard runs the
/// prefixes; a shard runs the subtrees of the units it owns, and of the
/// others only the unit's decision (a *probe*, not counted), to know what
/// it touches, so that the sleep sets of its own subtrees are what they
/// are in the whole search: the shards together run exactly its
/// schedules. A run with fewer operations is the first shard's.
pub(super) struct Dfs {
    frames: Vec<Frame>,
    depth: usize,
    preemptions: usize,
    max_preemptions: Option<usize>,
    max_ticks: usize,
    reduction: Reduction,
    /// The first frame whose decision is new in the current run.
    fresh: usize,
    /// The part of the units this search runs (see above).
    shard: Option<Shard>,
    /// On threads (`threads`): the units are the first come's among the
    /// threads of one search, which share the next unit not taken yet;
    /// and whether this is the first thread (which runs the runs with no
    /// operation).
    taken: Option<(Arc<AtomicU64>, bool)>,
    /// The current run only probes a unit another shard owns.
    pub(super) probing: bool,
    /// Operations the current run has made so far.
    operations: usize,
    /// Units met so far (each numbered once, when first made).
    units: u64,
    /// Some option was left out by the preemption bound.
    pub(super) pruned: bool,
    /// Every option of the current decision is asleep: the run is
    /// redundant; it is finished by default choices and not counted.
    pub(super) blocked: bool,
    /// The current run came to a state met before and stops there.
    pub(super) cut: bool,
    /// Races no runnable mover could reverse, answered by trying every
    /// option (a measure of how far the model is from the algorithm's).
    pub(super) fallbacks: u64,
    /// The states met so far (`Reduction::States`), each with the options
    /// that slept at it every time it was met (none of them ran from it).
    visited: HashMap<u128, Vec<Token>>,
    /// The states met and where each led, and the step cap (`reach`).
    reach: Reach,
    max_steps: usize,
    /// The search has run every schedule it would run.
    pub(super) ended: bool,
    /// The frame just made keeps a snapshot of the run (see `keep`).
    snapshot_here: bool,
    /// On threads (`tree`): the part of the search this one runs.
    task: Option<tree::Task>,
}

impl Dfs {
    pub(super) fn new(
        max_preemptions: Option<usize>,
        max_ticks: usize,
        reduction: Reduction,
        shard: Option<Shard>,
    ) -> Dfs {
        assert!(!reduction.runs_whole() || shard.is_none(), "a search under {reduction:?} runs whole");
        Dfs {
            shard,
            taken: None,
            probing: false,
            operations: 0,
            units: 0,
            frames: Vec::new(),
            depth: 0,
            preemptions: 0,
            max_preemptions,
            max_ticks,
            reduction,
            fresh: 0,
            pruned: false,
            blocked: false,
            cut: false,
            fallbacks: 0,
            visited: HashMap::new(),
            reach: Reach::default(),
            max_steps: usize::MAX,
            ended: false,
            snapshot_here: false,
            task: None,
        }
    }

    /// The same search as one of the threads that share `taken` (the
    /// first of them when `first`): it runs the units it takes first.
    pub(super) fn sharing(self, taken: Arc<AtomicU64>, first: bool) -> Dfs {
        assert!(!self.reduction.runs_whole(), "a search under {:?} runs on one thread", self.reduction);
        Dfs { taken: Some((taken, first)), ..self }
    }

    /// Whether this search runs unit `k`, which it meets now: its shard
    /// owns it, and on threads, no other thread took it first. Every
    /// thread meets the units in the same order, so a thread at unit `k`
    /// has passed every unit before it, and the next unit not taken is
    /// `k` unless another thread took `k` already.
    fn takes(&self, k: u64) -> bool {
        self.shard.is_none_or(|shard| shard.owns(k))
            && self.taken.as_ref().is_none_or(|(next, _)| next.fetch_max(k + 1, Ordering::Relaxed) <= k)
    }

    /// Whether the frame at `depth`, just made, keeps a snapshot of the run
    /// for later runs to go on from (`Chooser::resume`). Where the options
    /// to try are known when the frame is made (sleep sets, states), a
    /// frame with one keeps none; where races add options later (source
    /// sets), every frame keeps one. A run that would go on from
    /// a frame without one goes on from the last one before it.
    fn snapshots_at(&self, depth: usize) -> bool {
        let frame = &self.frames[depth];
        match self.reduction {
            Reduction::None | Reduction::SleepSets | Reduction::States => {
                frame.backtrack.len() > frame.at + 1
            }
            Reduction::SourceSets | Reduction::WakeupTrees => true,
        }
    }

    /// Whether runs must keep footprints.
    pub(super) fn needs_footprints(&self) -> bool {
        self.reduction != Reduction::None
    }

    /// The distinct states met so far, when the search caches them.
    pub(super) fn states_met(&self) -> Option<u64> {
        (self.reduction == Reduction::States).then_some(self.visited.len() as u64)
    }

    /// Whether runs must hash their states.
    pub(super) fn needs_states(&self) -> bool {
        self.reduction == Reduction::States
    }

    /// The runs' step cap (the decisions after which a run is cut).
    pub(super) fn max_steps(&self) -> usize {
        self.max_steps
    }

    /// A search that caches states and has ended: the most decisions a run
    /// of the space makes (`reach`), none if a state leads back to itself.
    pub(super) fn longest_run(&self) -> Option<usize> {
        (self.reduction == Reduction::States && self.ended).then(|| self.reach.longest()).flatten()
    }

    /// Where the run just made falls in the whole search's order: its
    /// *group*, `2k + 1` for a run below unit `k`, and `2k` for a run with
    /// no operation made after `k` units. Each group's runs are consecutive
    /// in the whole search and all in one shard (unit `k`'s in its owner's,
    /// those with no operation in the first), in the order that shard runs
    /// them; so the groups' sizes place every run of every shard in the
    /// whole search's order (`threads`).
    pub(super) fn group(&self) -> u64 {
        // A thread's part of the tree is one group (`tree` places it).
        if self.task.is_some() {
            return 0;
        }
        if self.operations >= UNIT_OPERATIONS {
            2 * (self.units - 1) + 1
        } else {
            2 * self.units
        }
    }

    /// Whether the run just made belongs to another shard (a probe, or a
    /// run with no operation while this is not the first shard).
    pub(super) fn skips_run(&self) -> bool {
        let first = self.shard.is_none_or(|shard| shard.index == 0)
            && self.taken.as_ref().is_none_or(|(_, first)| *first);
        self.probing || (self.operations < UNIT_OPERATIONS && !first)
    }
}

/// Which operation's decision is a run's unit (see [`Dfs`]): its first.
/// (At the second, two threads ran r7 under `safe` with one clock move
/// 1.61 times as fast as one, against 1.45 at the first, and three same-id
/// creates 1.71 against 1.46: BENCHMARKS, "Snapshots and idle clock
/// moves"; but r1 under legacy then split in two shards as 184 runs and
/// none. Not kept. Threads outside a shard now share the search's tree
/// instead: `tree`.)
pub(super) const UNIT_OPERATIONS: usize = 1;

impl Chooser for Dfs {
    fn choose(&mut self, view: &View<'_>) -> Option<Token> {
        self.snapshot_here = false;
        // A probe ends after the unit it probes.
        if self.probing {
            self.blocked = true;
        }
        if self.blocked {
            return None;
        }
        let last_runnable = view.last.filter(|l| view.runnable.contains(l));
        let token = if self.depth < self.frames.len() {
            self.frames[self.depth].current()
        } else {
            match self.new_frame(view, last_runnable) {
                Some(token) => {
                    self.snapshot_here = self.snapshots_at(self.depth);
                    token
                }
                None => {
                    self.blocked = true;
                    return None;
                }
            }
        };
        if !self.frames[self.depth].keeps_open(token) {
            self.operations += 1;
            if self.operations == UNIT_OPERATIONS {
                // The run's unit: numbered when first made.
                if self.depth >= self.fresh {
                    self.frames[self.depth].owned = self.takes(self.units);
                    self.units += 1;
                }
                self.probing = !self.frames[self.depth].owned;
            }
            if let Some(task) = self.task.as_mut() {
                task.reached(self.operations, self.depth);
            }
        }
        if let Token::Run { request, .. } = token {
            if last_runnable.is_some_and(|l| l != request) && !view.arriving(request) {
                self.preemptions += 1;
            }
        }
        self.depth += 1;
        Some(token)
    }

    /// A run to a state met before stops there; so does a probe after its
    /// unit: what it touched there is all it is for (its decisions after
    /// have no frames, and its races are the owner's).
    fn cut(&self) -> bool {
        self.cut || (self.probing && self.blocked)
    }

    fn wants_state(&self) -> bool {
        self.reduction == Reduction::States && self.depth >= self.frames.len()
    }

    fn snapshots(&self) -> bool {
        true
    }

    fn wants_snapshot(&self) -> bool {
        self.snapshot_here
    }

    fn keep(&mut self, snapshot: Snapshot) {
        self.snapshot_here = false;
        self.frames[self.depth - 1].snapshot = Some(snapshot);
    }

    /// The next run goes on from the last snapshot kept at or before the
    /// frame whose option is new (and makes the decisions between again).
    fn resume(&mut self) -> Option<&Snapshot> {
        if self.depth != 0 {
            return None;
        }
        let at = self.frames.iter().take(self.fresh + 1).rposition(|f| f.snapshot.is_some())?;
        (self.preemptions, self.operations, self.probing) = self.frames[at].counts;
        self.depth = at;
        self.frames[at].snapshot.as_ref()
    }
}

impl Dfs {
    /// Moves to the next schedule to run; false when none is left.
    /// `footprints` are what each decision of the run just made touched,
    /// from decision `resumed_at` (where it went on from a snapshot).
    pub(super) fn backtrack(&mut self, footprints: Vec<Footprint>, resumed_at: usize) -> bool {
        let probed = std::mem::take(&mut self.probing);
        let keep_footprints = self.needs_footprints();
        if keep_footprints {
            // The decisions new in this run: what each touched (the
            // others' are the frames' already).
            assert!(resumed_at <= self.fresh, "a run goes on from its first new decision or before");
            for (d, footprint) in footprints.into_iter().enumerate().map(|(k, f)| (k + resumed_at, f)) {
                if (self.fresh..self.frames.len()).contains(&d) {
                    self.frames[d].made = Some(footprint);
                }
            }
        }
        if let Some(task) = self.task.as_mut() {
            task.ended(self.frames.len());
        }
        if self.reduction.races() {
            self.add_reversals(probed);
        }
        if self.task.as_ref().is_some_and(|task| !task.published) {
            self.publish();
        }
        self.stream();
        self.depth = 0;
        self.preemptions = 0;
        self.blocked = false;
        self.cut = false;
        self.operations = 0;
        let floor = self.task.as_ref().map_or(0, tree::Task::floor);
        while let Some(d) = self.frames.len().checked_sub(1).filter(|&d| d >= floor) {
            let frame = &mut self.frames[d];
            if keep_footprints {
                let made = frame.made.clone().expect("every decision of the run was made once");
                frame.done.push((frame.current(), made));
            }
            if frame.advance(self.max_ticks) {
                self.fresh = d;
                if self.task.is_some() {
                    self.lend();
                }
                return true;
            }
            self.frames.pop();
        }
        self.ended = true;
        false
    }
}

/// Every order of a run's decisions within a preemption bound, by plain
/// depth-first search over prefixes, for drivers whose runs are not the
/// model's and so have no footprints (`cusim drive`): each run follows
/// the prefix the search is at, and [`Orders::advance`] moves to the next.
/// No clock moves are tried. A run that does not repeat its prefix's
/// choices (a real server may not) is the caller's to notice.
pub struct Orders {
    dfs: Dfs,
}

impl Orders {
    pub fn new(max_preemptions: Option<usize>) -> Orders {
        Orders { dfs: Dfs::new(max_preemptions, 0, Reduction::None, None) }
    }

    /// Moves to the next schedule; false when every one has run.
    pub fn advance(&mut self) -> bool {
        self.dfs.backtrack(Vec::new(), 0)
    }

    /// Whether the preemption bound left some order out.
    pub fn pruned(&self) -> bool {
        self.dfs.pruned
    }
}

impl Chooser for Orders {
    fn choose(&mut self, view: &View<'_>) -> Option<Token> {
        self.dfs.choose(view)
    }
}
