//! Exploration: many schedules of one prepared scenario, each run by the
//! stepper and judged, with the best witness kept per invariant; and
//! shrinking ([`shrink`]). The schedulers are in [`schedulers`]; the
//! exhaustive one says whether it covered the whole space.

pub mod schedulers;
pub mod shrink;

use std::collections::{BTreeMap, BTreeSet};

use cusim::backend::Point;

use cusim::flow::Strategy;
use serde::Serialize;

use crate::drive::stepper::Replay;
use crate::drive::stepper::{execute_run, Availability, Chooser, Execution, Prepared, RunOptions};
use crate::input::schedule::Schedule;
use crate::judge::races::{Race, Symptom};
use crate::judge::{judge, End, Invariant, Violation};

pub use schedulers::{pct_chooser, random_chooser, seeded, Reduction, Rng, SchedulerKind, CLOCK_MOVES_MS};
use schedulers::{Dfs, PctChooser, RandomChooser};

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
    /// Exhaustive only: how equivalent schedules are skipped.
    pub reduction: Reduction,
    /// Keep every distinct outcome (`ExploreReport::outcomes`).
    pub record_outcomes: bool,
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
            reduction: Reduction::None,
            record_outcomes: false,
        }
    }
}

/// The best witness found for one symptom: an invariant, and the catalog
/// race whose interleaving its run holds (each race is a witness of its
/// own, so one invariant broken two ways shows both).
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub invariant: Invariant,
    /// The catalog race (SPEC §8) whose interleaving the witness holds, if
    /// any: `None` is a failure the catalog does not describe.
    pub race: Option<Race>,
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
    pub shrunk: Option<shrink::Shrunk>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExploreReport {
    pub scenario: String,
    pub strategy: Strategy,
    pub scheduler: String,
    pub schedules_run: u64,
    /// Exhaustive only: every schedule (within no bound but `--max-ticks`
    /// clock moves) was run.
    pub exhausted: bool,
    /// Exhaustive only: every schedule within the bounds (preemptions,
    /// clock moves) was run: not cut short by `--seeds` or the step cap.
    pub covered: bool,
    pub violations: Vec<Found>,
    /// Summed over the schedules run.
    pub availability: Availability,
    /// Every (request, named point, occurrence) reached in any schedule run.
    #[serde(skip)]
    pub reached: BTreeSet<(usize, Point, u32)>,
    /// Every (settle read, named point, occurrence) reached in any schedule run.
    #[serde(skip)]
    pub settle_reached: BTreeSet<(usize, Point, u32)>,
    /// Exhaustive only: the reduction used.
    pub reduction: Option<Reduction>,
    /// Runs a reduction found redundant and cut (not in `schedules_run`).
    pub redundant_runs: u64,
    /// With `record_outcomes`: every distinct outcome of a schedule run
    /// (responses, settle reads, committed state, violations), as text.
    #[serde(skip)]
    pub outcomes: BTreeSet<String>,
}

/// A schedule's outcome, as text: what a reduction must not lose.
fn outcome_of(execution: &Execution, violations: &[Violation]) -> String {
    let o = &execution.observation;
    let violated: Vec<(Invariant, &str)> =
        violations.iter().map(|v| (v.invariant, v.message.as_str())).collect();
    format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        o.outcomes,
        o.retried,
        o.settles,
        o.end,
        o.state.customers,
        o.state.cache,
        o.state.stripe,
        o.state.breaches,
        violated
    )
}

/// Runs one schedule from a chooser and checks it.
pub fn run_and_check(
    prepared: &Prepared,
    chooser: &mut dyn Chooser,
    options: RunOptions,
) -> (Execution, Vec<Violation>) {
    let execution = execute_run(prepared, chooser, options).expect("explorers only choose runnable requests");
    let violations = judge(&prepared.scenario, &execution.observation);
    (execution, violations)
}

impl Found {
    pub fn symptom(&self) -> Symptom {
        Symptom { invariant: self.invariant, race: self.race }
    }
}

/// The symptom of each violation of a failing run: its trace (replayed
/// with one when the run kept none) matched against the catalog.
fn symptoms(
    prepared: &Prepared,
    execution: &Execution,
    violations: &[Violation],
    run: RunOptions,
) -> Vec<Symptom> {
    if violations.is_empty() {
        return Vec::new();
    }
    let replayed;
    let trace = if run.record_trace {
        &execution.trace
    } else {
        let options = RunOptions { record_trace: true, ..run };
        replayed = execute_run(prepared, &mut Replay::new(&execution.schedule), options)
            .expect("a run's own schedule replays");
        &replayed.trace
    };
    violations.iter().map(|v| Symptom::of(trace, v)).collect()
}

fn record(
    found: &mut BTreeMap<Symptom, Found>,
    prepared: &Prepared,
    (execution, violations): (&Execution, Vec<Violation>),
    run: RunOptions,
    seed: Option<u64>,
    count: u64,
) {
    let schedule = execution.minimal_schedule();
    let symptoms = symptoms(prepared, execution, &violations, run);
    for (violation, symptom) in violations.into_iter().zip(symptoms) {
        let candidate = Found {
            invariant: violation.invariant,
            race: symptom.race,
            schedule: schedule.to_string(),
            seed,
            message: violation.message.clone(),
            first_at: count,
            preemptions: execution.preemptions,
            violation,
            shrunk: None,
        };
        match found.get_mut(&symptom) {
            None => {
                found.insert(symptom, candidate);
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

/// Shrinks every violation of `report` (found on `prepared`'s scenario).
pub fn shrink_all(report: &mut ExploreReport, prepared: &Prepared, max_attempts: usize) {
    for found in &mut report.violations {
        let schedule = Schedule::parse(&found.schedule).expect("explorers record valid schedules");
        let case =
            shrink::Case { scenario: prepared.scenario.clone(), strategy: prepared.strategy, schedule };
        found.shrunk = shrink::shrink(&case, found.symptom(), max_attempts);
    }
}

/// Explores `prepared` with the configured scheduler; `progress` is told
/// how many schedules have run.
pub fn explore(prepared: &Prepared, config: &ExploreConfig, mut progress: impl FnMut(u64)) -> ExploreReport {
    let mut found: BTreeMap<Symptom, Found> = BTreeMap::new();
    let mut availability = Availability::default();
    let mut reached = BTreeSet::new();
    let mut settle_reached = BTreeSet::new();
    let mut outcomes = BTreeSet::new();
    let mut redundant_runs = 0;
    let mut run_count = 0;
    let mut exhausted = false;
    let mut covered = false;
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
                        &mut RandomChooser { rng: schedulers::seeded(seed), max_ticks: config.max_ticks },
                        config.run,
                    ),
                };
                run_count += 1;
                progress(run_count);
                availability.add(execution.availability);
                reached.extend(execution.reached.iter().copied());
                settle_reached.extend(execution.settle_reached.iter().copied());
                let broke = !violations.is_empty();
                record(&mut found, prepared, (&execution, violations), config.run, Some(seed), run_count);
                if broke && config.stop_at_first {
                    break;
                }
            }
        }
        SchedulerKind::Exhaustive { max_preemptions } => {
            let mut capped = false;
            let sleep_sets = config.reduction == Reduction::SleepSets;
            let mut dfs = Dfs::new(max_preemptions, config.max_ticks, sleep_sets);
            loop {
                let execution = execute_run(prepared, &mut dfs, config.run)
                    .expect("explorers only choose runnable requests");
                if dfs.blocked {
                    redundant_runs += 1;
                    if !dfs.backtrack(&execution.footprints) {
                        covered = !capped;
                        exhausted = covered && !dfs.pruned;
                        break;
                    }
                    continue;
                }
                let violations = judge(&prepared.scenario, &execution.observation);
                if config.record_outcomes {
                    outcomes.insert(outcome_of(&execution, &violations));
                }
                capped |= matches!(execution.observation.end, End::StepCap { .. });
                run_count += 1;
                progress(run_count);
                availability.add(execution.availability);
                reached.extend(execution.reached.iter().copied());
                settle_reached.extend(execution.settle_reached.iter().copied());
                let broke = !violations.is_empty();
                record(&mut found, prepared, (&execution, violations), config.run, None, run_count);
                if broke && config.stop_at_first {
                    break;
                }
                if !dfs.backtrack(&execution.footprints) {
                    // A run cut off by the step cap leaves its subtree unexplored.
                    covered = !capped;
                    exhausted = covered && !dfs.pruned;
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
        covered,
        violations: found.into_values().collect(),
        availability,
        reached,
        settle_reached,
        reduction: match config.scheduler {
            SchedulerKind::Exhaustive { .. } => Some(config.reduction),
            _ => None,
        },
        redundant_runs,
        outcomes,
    }
}
