//! Schedulers and the exploration loop.
//!
//! - `random`: each decision picks a runnable request uniformly; now and
//!   then the clock moves instead.
//! - `pct`: probabilistic concurrency testing (Burckhardt et al.): random
//!   distinct priorities, the highest runnable moves, and at `depth - 1`
//!   random steps the running request drops below all others. Finds a bug
//!   of depth d with probability at least 1/(n·k^(d-1)).
//! - `exhaustive`: depth-first over every schedule (optionally bounded in
//!   preemptions and clock moves), replaying prefixes; says whether the
//!   whole space was covered.

use std::collections::BTreeMap;

use cusim::flow::Strategy;
use serde::Serialize;

use crate::oracle::{self, Invariant, Violation};
use crate::schedule::{Schedule, Token};
use crate::stepper::{execute_run, Chooser, Execution, Prepared, RunOptions, View};

/// How far one clock move jumps: the Stripe idempotency bucket (and more
/// than the stale-write guard's life).
pub const TICK_MS: u64 = 5_000;

/// A small seeded generator (SplitMix64), so runs depend on nothing but the seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
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

struct RandomChooser {
    rng: Rng,
    max_ticks: usize,
}

impl Chooser for RandomChooser {
    fn choose(&mut self, view: &View<'_>) -> Option<Token> {
        if view.ticks_so_far < self.max_ticks && self.rng.below(8) == 0 {
            return Some(Token::Tick { ms: TICK_MS });
        }
        Some(Token::run(view.runnable[self.rng.below(view.runnable.len())]))
    }
}

/// A random chooser for one schedule (for callers that drive runs themselves).
pub fn random_chooser(seed: u64, max_ticks: usize) -> impl Chooser {
    RandomChooser { rng: Rng::new(seed), max_ticks }
}

/// A pct chooser for one schedule of `prepared` (for callers that drive
/// runs themselves).
pub fn pct_chooser(prepared: &Prepared, seed: u64, depth: usize, max_ticks: usize) -> impl Chooser {
    PctChooser::new(seed, prepared.request_count(), depth.max(1), prepared.default_steps(), max_ticks)
}

struct PctChooser {
    priorities: Vec<usize>,
    /// Steps at which the running request is demoted, with the priority it gets.
    change_points: Vec<(usize, usize)>,
    tick_at: Option<usize>,
}

impl PctChooser {
    fn new(seed: u64, requests: usize, depth: usize, expected_steps: usize, max_ticks: usize) -> PctChooser {
        let mut rng = Rng::new(seed);
        let mut priorities: Vec<usize> = (0..requests).map(|i| depth + i).collect();
        for i in (1..priorities.len()).rev() {
            let j = rng.below(i + 1);
            priorities.swap(i, j);
        }
        let k = expected_steps.max(1);
        let change_points = (1..depth).map(|d| (rng.below(k), depth - d)).collect();
        let tick_at = (max_ticks > 0 && rng.below(2) == 0).then(|| rng.below(k));
        PctChooser { priorities, change_points, tick_at }
    }
}

impl Chooser for PctChooser {
    fn choose(&mut self, view: &View<'_>) -> Option<Token> {
        if self.tick_at == Some(view.step) && view.ticks_so_far == 0 {
            self.tick_at = None;
            return Some(Token::Tick { ms: TICK_MS });
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

/// Depth-first enumeration by prefix replay.
struct Dfs {
    frames: Vec<(Vec<Token>, usize)>,
    depth: usize,
    preemptions: usize,
    max_preemptions: Option<usize>,
    max_ticks: usize,
    pruned: bool,
}

impl Chooser for Dfs {
    fn choose(&mut self, view: &View<'_>) -> Option<Token> {
        let last_runnable = view.last.filter(|l| view.runnable.contains(l));
        let token = if self.depth < self.frames.len() {
            let (options, index) = &self.frames[self.depth];
            options[*index]
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
                options.push(Token::Tick { ms: TICK_MS });
            }
            let first = options[0];
            self.frames.push((options, 0));
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
    fn backtrack(&mut self) -> bool {
        self.depth = 0;
        self.preemptions = 0;
        while let Some((options, index)) = self.frames.last_mut() {
            if *index + 1 < options.len() {
                *index += 1;
                return true;
            }
            self.frames.pop();
        }
        false
    }
}

#[derive(Debug, Clone)]
pub struct ExploreConfig {
    pub scheduler: SchedulerKind,
    /// Schedules to run (for exhaustive: the most to run).
    pub schedules: u64,
    /// The first seed (random and pct); seed i is `first_seed + i`.
    pub first_seed: u64,
    /// Clock moves a schedule may contain.
    pub max_ticks: usize,
    pub run: RunOptions,
    /// Stop at the first violation.
    pub stop_at_first: bool,
}

impl Default for ExploreConfig {
    fn default() -> ExploreConfig {
        ExploreConfig {
            scheduler: SchedulerKind::Pct { depth: 3 },
            schedules: 1_000,
            first_seed: 0,
            max_ticks: 1,
            run: RunOptions::default(),
            stop_at_first: false,
        }
    }
}

/// The best witness found for one invariant.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub invariant: Invariant,
    /// The shortest schedule that broke it (replayable).
    pub schedule: String,
    /// The seed that produced it (random and pct).
    pub seed: Option<u64>,
    pub message: String,
    /// How many schedules had run when it first broke (1 = the first).
    #[serde(rename = "found_after")]
    pub first_at: u64,
    #[serde(skip)]
    pub violation: Violation,
    #[serde(skip)]
    pub preemptions: usize,
    /// The smallest case that still breaks it (`--shrink`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shrunk: Option<crate::shrink::Shrunk>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExploreReport {
    pub scenario: String,
    pub strategy: Strategy,
    pub scheduler: String,
    pub schedules_run: u64,
    /// Exhaustive only: every schedule (within no bound) was run.
    pub exhausted: bool,
    pub violations: Vec<Found>,
}

/// Runs one schedule from a chooser and checks it.
pub fn run_and_check(
    prepared: &Prepared,
    chooser: &mut dyn Chooser,
    options: RunOptions,
) -> (Execution, Vec<Violation>) {
    let execution = execute_run(prepared, chooser, options).expect("explorers only choose runnable requests");
    let violations = oracle::check(prepared, &execution);
    (execution, violations)
}

fn record(
    found: &mut BTreeMap<Invariant, Found>,
    execution: &Execution,
    violations: Vec<Violation>,
    seed: Option<u64>,
    count: u64,
) {
    let schedule = execution.minimal_schedule();
    for violation in violations {
        let candidate = Found {
            invariant: violation.invariant,
            schedule: schedule.to_string(),
            seed,
            message: violation.message.clone(),
            first_at: count,
            preemptions: execution.preemptions,
            violation,
            shrunk: None,
        };
        match found.get_mut(&candidate.invariant) {
            None => {
                found.insert(candidate.invariant, candidate);
            }
            Some(best) => {
                let shorter = (schedule.len(), candidate.preemptions)
                    < (Schedule::parse(&best.schedule).map_or(usize::MAX, |s| s.len()), best.preemptions);
                if shorter {
                    let first_at = best.first_at;
                    *best = Found { first_at, ..candidate };
                }
            }
        }
    }
}

/// Explores `prepared` with the configured scheduler; `progress` is told
/// how many schedules have run.
/// Shrinks every violation of `report` (found on `prepared`'s scenario).
pub fn shrink_all(report: &mut ExploreReport, prepared: &Prepared, max_attempts: usize) {
    for found in &mut report.violations {
        let schedule = Schedule::parse(&found.schedule).expect("explorers record valid schedules");
        let case = crate::shrink::Case {
            scenario: prepared.scenario.clone(),
            strategy: prepared.strategy,
            schedule,
        };
        found.shrunk = crate::shrink::shrink(&case, found.invariant, max_attempts);
    }
}

pub fn explore(prepared: &Prepared, config: &ExploreConfig, mut progress: impl FnMut(u64)) -> ExploreReport {
    let mut found: BTreeMap<Invariant, Found> = BTreeMap::new();
    let mut run_count = 0;
    let mut exhausted = false;
    let requests = prepared.request_count();
    match config.scheduler {
        SchedulerKind::Random | SchedulerKind::Pct { .. } => {
            let expected_steps = match config.scheduler {
                SchedulerKind::Pct { .. } => prepared.default_steps(),
                _ => 0,
            };
            for i in 0..config.schedules {
                let seed = config.first_seed.wrapping_add(i);
                let (execution, violations) = match config.scheduler {
                    SchedulerKind::Pct { depth } => {
                        let mut chooser =
                            PctChooser::new(seed, requests, depth.max(1), expected_steps, config.max_ticks);
                        run_and_check(prepared, &mut chooser, config.run)
                    }
                    _ => run_and_check(
                        prepared,
                        &mut RandomChooser { rng: Rng::new(seed), max_ticks: config.max_ticks },
                        config.run,
                    ),
                };
                run_count += 1;
                progress(run_count);
                let broke = !violations.is_empty();
                record(&mut found, &execution, violations, Some(seed), run_count);
                if broke && config.stop_at_first {
                    break;
                }
            }
        }
        SchedulerKind::Exhaustive { max_preemptions } => {
            let mut capped = false;
            let mut dfs = Dfs {
                frames: Vec::new(),
                depth: 0,
                preemptions: 0,
                max_preemptions,
                max_ticks: config.max_ticks,
                pruned: false,
            };
            loop {
                let (execution, violations) = run_and_check(prepared, &mut dfs, config.run);
                capped |= matches!(execution.end, crate::stepper::End::StepCap { .. });
                run_count += 1;
                progress(run_count);
                let broke = !violations.is_empty();
                record(&mut found, &execution, violations, None, run_count);
                if broke && config.stop_at_first {
                    break;
                }
                if !dfs.backtrack() {
                    // A run cut off by the step cap leaves its subtree unexplored.
                    exhausted = !dfs.pruned && !capped;
                    break;
                }
                if run_count >= config.schedules {
                    break;
                }
            }
        }
    }
    ExploreReport {
        scenario: prepared.scenario.name.clone(),
        strategy: prepared.strategy,
        scheduler: config.scheduler.name().to_owned(),
        schedules_run: run_count,
        exhausted,
        violations: found.into_values().collect(),
    }
}
