//! The schedulers: who moves at each decision.
//!
//! - `random`: each decision picks a runnable request uniformly; now and
//!   then the clock moves instead.
//! - `pct`: probabilistic concurrency testing (Burckhardt et al.): random
//!   distinct priorities, the highest runnable moves, and at `depth - 1`
//!   random steps the running request drops below all others. Finds a bug
//!   of depth d with probability at least 1/(n·k^(d-1)).
//! - `exhaustive`: depth-first over every schedule (optionally bounded in
//!   preemptions and clock moves), replaying prefixes, with partial-order
//!   reduction (`dfs`).

pub use cusim::rng::Rng;
use serde::Serialize;

use crate::drive::stepper::{Chooser, Prepared, View};
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

/// A pct chooser for one schedule of `requests` requests expected to take
/// about `expected_steps` decisions, with no clock move (for drivers whose
/// clock is not theirs, `cusim drive`).
pub fn pct_without_ticks(seed: u64, requests: usize, depth: usize, expected_steps: usize) -> impl Chooser {
    PctChooser::new(seed, requests, depth.max(1), expected_steps, 0)
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
