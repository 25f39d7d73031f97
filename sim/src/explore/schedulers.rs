//! The schedulers: who moves at each decision.
//!
//! - `random`: each decision picks a runnable request uniformly; now and
//!   then the clock moves instead.
//! - `pct`: probabilistic concurrency testing (Burckhardt et al.): random
//!   distinct priorities, the highest runnable moves, and at `depth - 1`
//!   random steps the running request drops below all others. Finds a bug
//!   of depth d with probability at least 1/(n·k^(d-1)).
//! - `exhaustive`: depth-first over every schedule (optionally bounded in
//!   preemptions and clock moves), replaying prefixes.

pub use cusim::rng::Rng;
use serde::Serialize;

use crate::drive::stepper::{Chooser, Footprint, Prepared, View};
use crate::input::schedule::Token;

/// The clock moves a scheduler chooses from: each reaches past a window a
/// design depends on. 1 ms (a tie broken), 1 s (the stale-write guard's
/// life), 5 s (legacy's Stripe key bucket), 24 h 1 s (Stripe's idempotency
/// window and the idempotency middleware's key) and 3 days 1 s (the cache TTL).
pub const CLOCK_MOVES_MS: [u64; 5] = [1, 1_000, 5_000, 86_401_000, 259_201_000];

/// The generator a scheduler's seed names.
pub fn seeded(seed: u64) -> Rng {
    Rng::from_state(seed ^ 0x9e37_79b9_7f4a_7c15)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SchedulerKind {
    Random,
    Pct { depth: usize },
    Exhaustive { max_preemptions: Option<usize> },
}

impl SchedulerKind {
    pub fn name(&self) -> &'static str {
        match self {
            SchedulerKind::Random => "random",
            SchedulerKind::Pct { .. } => "pct",
            SchedulerKind::Exhaustive { .. } => "exhaustive",
        }
    }
}

pub(super) struct RandomChooser {
    pub(super) rng: Rng,
    pub(super) max_ticks: usize,
}

impl Chooser for RandomChooser {
    fn choose(&mut self, view: &View<'_>) -> Option<Token> {
        if view.ticks_so_far < self.max_ticks && self.rng.below(8) == 0 {
            let ms = CLOCK_MOVES_MS[self.rng.below(CLOCK_MOVES_MS.len())];
            return Some(Token::Tick { ms });
        }
        Some(Token::run(view.runnable[self.rng.below(view.runnable.len())]))
    }
}

/// A random chooser for one schedule (for callers that drive runs themselves).
pub fn random_chooser(seed: u64, max_ticks: usize) -> impl Chooser {
    RandomChooser { rng: seeded(seed), max_ticks }
}

/// A pct chooser for one schedule of `prepared` (for callers that drive
/// runs themselves).
pub fn pct_chooser(prepared: &Prepared, seed: u64, depth: usize, max_ticks: usize) -> impl Chooser {
    PctChooser::new(seed, prepared.request_count(), depth.max(1), prepared.default_steps(), max_ticks)
}

pub(super) struct PctChooser {
    priorities: Vec<usize>,
    /// Steps at which the running request is demoted, with the priority it gets.
    change_points: Vec<(usize, usize)>,
    tick_at: Option<usize>,
    tick_ms: u64,
}

impl PctChooser {
    pub(super) fn new(
        seed: u64,
        requests: usize,
        depth: usize,
        expected_steps: usize,
        max_ticks: usize,
    ) -> PctChooser {
        let mut rng = seeded(seed);
        let mut priorities: Vec<usize> = (0..requests).map(|i| depth + i).collect();
        for i in (1..priorities.len()).rev() {
            let j = rng.below(i + 1);
            priorities.swap(i, j);
        }
        let k = expected_steps.max(1);
        let change_points = (1..depth).map(|d| (rng.below(k), depth - d)).collect();
        let tick_at = (max_ticks > 0 && rng.below(2) == 0).then(|| rng.below(k));
        let tick_ms = CLOCK_MOVES_MS[rng.below(CLOCK_MOVES_MS.len())];
        PctChooser { priorities, change_points, tick_at, tick_ms }
    }
}

impl Chooser for PctChooser {
    fn choose(&mut self, view: &View<'_>) -> Option<Token> {
        if self.tick_at == Some(view.step) && view.ticks_so_far == 0 {
            self.tick_at = None;
            return Some(Token::Tick { ms: self.tick_ms });
        }
        let highest =
            |p: &[usize]| *view.runnable.iter().max_by_key(|r| p[**r]).expect("something is runnable");
        for (at, lowered) in &self.change_points {
            if *at == view.step {
                let running = highest(&self.priorities);
                self.priorities[running] = *lowered;
            }
        }
        Some(Token::run(highest(&self.priorities)))
    }
}

/// How the exhaustive scheduler avoids running equivalent schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reduction {
    /// Plain depth-first search: every order.
    None,
    /// Sleep sets over the model's footprints (`drive::stepper::Footprint`):
    /// one order of each pair of commuting decisions.
    SleepSets,
}

impl Reduction {
    pub fn name(self) -> &'static str {
        match self {
            Reduction::None => "none",
            Reduction::SleepSets => "sleep_sets",
        }
    }
}

/// One decision of the depth-first search: its options, the one being
/// explored, and (with sleep sets) the decisions asleep there and those
/// already explored from it, each with what it touched.
pub(super) struct Frame {
    options: Vec<Token>,
    index: usize,
    sleep: Vec<(Token, Footprint)>,
    done: Vec<(Token, Footprint)>,
}

/// Depth-first enumeration by prefix replay; with `sleep_sets`, Godefroid's
/// sleep sets: after one order of two decisions that commute (their
/// footprints do not conflict) has been explored, the other is not. A run
/// whose every option is asleep is redundant (`blocked`): it is finished by
/// default choices and not counted.
pub(super) struct Dfs {
    pub(super) frames: Vec<Frame>,
    pub(super) depth: usize,
    pub(super) preemptions: usize,
    pub(super) max_preemptions: Option<usize>,
    pub(super) max_ticks: usize,
    pub(super) pruned: bool,
    pub(super) sleep_sets: bool,
    pub(super) blocked: bool,
}

impl Dfs {
    pub(super) fn new(max_preemptions: Option<usize>, max_ticks: usize, sleep_sets: bool) -> Dfs {
        Dfs {
            frames: Vec::new(),
            depth: 0,
            preemptions: 0,
            max_preemptions,
            max_ticks,
            pruned: false,
            sleep_sets,
            blocked: false,
        }
    }

    /// The sleep set of a new frame: what slept at its parent or was
    /// explored there before, and commutes with the parent's decision.
    fn inherited_sleep(&self, done: Option<&Footprint>) -> Vec<(Token, Footprint)> {
        let (Some(parent), Some(done)) = (self.frames.last(), done) else { return Vec::new() };
        parent
            .sleep
            .iter()
            .chain(&parent.done)
            .filter(|(_, footprint)| !footprint.conflicts(done))
            .cloned()
            .collect()
    }
}

impl Chooser for Dfs {
    fn choose(&mut self, view: &View<'_>) -> Option<Token> {
        if self.blocked {
            return None;
        }
        let last_runnable = view.last.filter(|l| view.runnable.contains(l));
        let token = if self.depth < self.frames.len() {
            let frame = &self.frames[self.depth];
            frame.options[frame.index]
        } else {
            let mut options: Vec<Token> = Vec::new();
            // The non-preempting choice first: the first schedule is the plainest.
            if let Some(last) = last_runnable {
                options.push(Token::run(last));
            }
            let may_preempt = self.max_preemptions.is_none_or(|max| self.preemptions < max);
            for &r in view.runnable {
                if Some(r) != last_runnable {
                    if last_runnable.is_none() || may_preempt {
                        options.push(Token::run(r));
                    } else {
                        self.pruned = true;
                    }
                }
            }
            if view.ticks_so_far < self.max_ticks {
                options.extend(CLOCK_MOVES_MS.map(|ms| Token::Tick { ms }));
            }
            let sleep = if self.sleep_sets { self.inherited_sleep(view.done) } else { Vec::new() };
            options.retain(|o| !sleep.iter().any(|(asleep, _)| asleep == o));
            let Some(&first) = options.first() else {
                self.blocked = true;
                return None;
            };
            self.frames.push(Frame { options, index: 0, sleep, done: Vec::new() });
            first
        };
        if let Token::Run { request, .. } = token {
            if last_runnable.is_some_and(|l| l != request) {
                self.preemptions += 1;
            }
        }
        self.depth += 1;
        Some(token)
    }
}

impl Dfs {
    /// Moves to the next unexplored schedule; false when none is left.
    /// `footprints` are what each decision of the run just made touched.
    pub(super) fn backtrack(&mut self, footprints: &[Footprint]) -> bool {
        self.depth = 0;
        self.preemptions = 0;
        self.blocked = false;
        while let Some(depth) = self.frames.len().checked_sub(1) {
            let frame = &mut self.frames[depth];
            if frame.index + 1 < frame.options.len() {
                if self.sleep_sets {
                    frame.done.push((frame.options[frame.index], footprints[depth].clone()));
                }
                frame.index += 1;
                return true;
            }
            self.frames.pop();
        }
        false
    }
}
