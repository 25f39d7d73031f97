//! Exploration: many schedules of one prepared scenario, each run by the
//! stepper and judged, with the best witness kept per invariant; and
//! shrinking ([`shrink`]). The schedulers are in [`schedulers`]; the
//! exhaustive one says whether it covered the whole space.

mod dfs;
#[cfg(test)]
mod on_tree;
#[cfg(test)]
mod resumed;
pub mod schedulers;
pub mod shrink;
mod threads;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use cusim::backend::Point;

use cusim::flow::Strategy;
use serde::Serialize;

use crate::drive::stepper::Replay;
use crate::drive::stepper::{execute_run, Availability, Chooser, Execution, Prepared, RunOptions};
use crate::input::schedule::Schedule;
use crate::judge::races::{Race, Symptom};
use crate::judge::{judge, End, Invariant, Violation};

use dfs::Dfs;
pub use dfs::{Orders, Reduction};
pub use schedulers::{pct_chooser, random_chooser, seeded, Rng, SchedulerKind, CLOCK_MOVES_MS};
use schedulers::{PctChooser, RandomChooser};
pub use threads::explore_on;

/// What an exploration runs. It has no default: a caller names the search
/// (a sampler and how many seeds, or the exhaustive scheduler with its
/// reduction, preemption bound and budget) with [`ExploreConfig::sampled`]
/// or [`ExploreConfig::exhaustive`], so no claim rests on a search nobody
/// chose.
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
    /// Run only this part of the work (see [`Shard`]).
    pub shard: Option<Shard>,
}

/// Part `index` (from 0) of `count` of an exploration's work: for random
/// and pct, a range of its seeds; for exhaustive, the subtrees below the
/// units (each run's first operation) it owns: the k-th unit met goes to
/// part k mod N (see `dfs`). The parts are disjoint and
/// together they are the whole: their schedule counts add up to the
/// unsharded run's, and their violations are its violations. Written
/// `I/N`, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Reads `I/N` (1 ≤ I ≤ N).
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("expected I/N with 1 <= I <= N, as in 2/4; got {text:?}");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (i, n): (usize, usize) =
            (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if i == 0 || i > n {
            return Err(bad());
        }
        Ok(Shard { index: i - 1, count: n })
    }

    /// Whether the `k`-th unit of work (from 0) is this shard's.
    pub fn owns(self, k: u64) -> bool {
        k % self.count as u64 == self.index as u64
    }

    /// This shard's range of `total` consecutive units.
    pub fn range(self, total: u64) -> std::ops::Range<u64> {
        let at = |i: usize| (u128::from(total) * i as u128 / self.count as u128) as u64;
        at(self.index)..at(self.index + 1)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

impl Serialize for Shard {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// How much of its space an exploration covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Completeness {
    /// random, pct: a sample.
    Sampled,
    /// exhaustive: every schedule (with a reduction, one of every class of
    /// equivalent schedules) with at most `--max-ticks` clock moves.
    Complete,
    /// exhaustive, plain, with a preemption bound that cut schedules:
    /// every schedule within the bound.
    CompleteWithinBound,
    /// exhaustive, reduced, with a preemption bound that cut schedules:
    /// no claim (a reduced search is not complete within a bound).
    Bounded,
    /// exhaustive, cut short by the schedule budget, the step cap or the
    /// first violation.
    Partial,
}

impl Completeness {
    /// How much of its space a search with `config` covered, that ran
    /// every schedule (`exhausted`), or every one within its bounds
    /// (`covered`).
    pub(crate) fn of(config: &ExploreConfig, exhausted: bool, covered: bool) -> Completeness {
        match config.scheduler {
            SchedulerKind::Random | SchedulerKind::Pct { .. } => Completeness::Sampled,
            SchedulerKind::Exhaustive { .. } if exhausted => Completeness::Complete,
            SchedulerKind::Exhaustive { .. } if covered && config.reduction == Reduction::None => {
                Completeness::CompleteWithinBound
            }
            SchedulerKind::Exhaustive { .. } if covered => Completeness::Bounded,
            SchedulerKind::Exhaustive { .. } => Completeness::Partial,
        }
    }
}

impl ExploreConfig {
    /// `seeds` schedules drawn by `scheduler` (random or pct), from seed
    /// 0, each with up to `max_ticks` clock moves: a sample.
    pub fn sampled(scheduler: SchedulerKind, seeds: u64, max_ticks: usize) -> ExploreConfig {
        assert!(!matches!(scheduler, SchedulerKind::Exhaustive { .. }), "a sample is drawn by random or pct");
        ExploreConfig::with(scheduler, seeds, max_ticks, Reduction::None)
    }

    /// The exhaustive scheduler: every schedule with up to `max_ticks`
    /// clock moves and at most `max_preemptions` preemptions, one of each
    /// class of equivalent schedules under `reduction`, at most `budget`
    /// of them. (A reduced search under a preemption bound proves nothing
    /// within it: see [`Completeness::Bounded`].)
    pub fn exhaustive(
        reduction: Reduction,
        max_preemptions: Option<usize>,
        max_ticks: usize,
        budget: u64,
    ) -> ExploreConfig {
        ExploreConfig::with(SchedulerKind::Exhaustive { max_preemptions }, budget, max_ticks, reduction)
    }

    fn with(
        scheduler: SchedulerKind,
        schedules: u64,
        max_ticks: usize,
        reduction: Reduction,
    ) -> ExploreConfig {
        ExploreConfig {
            scheduler,
            schedules,
            first_seed: 0,
            max_ticks,
            run: RunOptions::default(),
            stop_at_first: false,
            reduction,
            record_outcomes: false,
            shard: None,
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
    /// Exhaustive: where the run that first broke it, and the witness's
    /// run, fall in the search's order (`threads` merges by them).
    #[serde(skip)]
    pub(crate) first_run: RunAt,
    #[serde(skip)]
    pub(crate) witness_run: RunAt,
}

/// Where an exhaustive search's run falls in its order: its group (see
/// `Dfs::group`) and its place among the group's runs, from 0. (Samples
/// number their runs in one group.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RunAt {
    pub(crate) group: u64,
    pub(crate) offset: u64,
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
    /// How much of the space was run.
    pub completeness: Completeness,
    /// The part of the work this run did, if not all of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// Runs a reduction found redundant and cut (not in `schedules_run`).
    pub redundant_runs: u64,
    /// A search that caches states: the distinct states it met (every
    /// state reachable within its bounds, when it ran whole).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub states_met: Option<u64>,
    /// The most decisions a schedule run had.
    #[serde(skip)]
    pub longest_schedule: usize,
    /// A search that caches states and ran to its end: the most decisions
    /// a run of the whole space makes, by the states it met (`dfs::reach`:
    /// what answers for the step the states leave out); none if a state
    /// leads back to itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longest_run: Option<usize>,
    /// With `record_outcomes`: every distinct outcome of a schedule run
    /// (responses, settle reads, committed state, violations and the
    /// races they show), as text.
    #[serde(skip)]
    pub outcomes: BTreeSet<String>,
    /// Exhaustive: the runs of each group of the search's order.
    #[serde(skip)]
    pub(crate) groups: BTreeMap<u64, u64>,
}

/// A schedule's outcome, as text: what a reduction must not lose. Each
/// violation comes with its symptom (the race its run shows, read from a
/// traced replay when the run kept no trace): a reduced search must show
/// the same races as a plain one. The times rows, products and Stripe
/// customers were made at are left out: nothing compares them, so where a
/// clock move falls against the readings that kept them is no difference
/// (the dependency relation's windows: `drive::stepper::footprint`).
pub fn outcome_of(
    prepared: &Prepared,
    execution: &Execution,
    violations: &[Violation],
    run: RunOptions,
) -> String {
    outcome_text(execution, violations, &symptoms_of(prepared, execution, violations, run))
}

/// [`outcome_of`] with the symptoms of `violations` already read.
fn outcome_text(execution: &Execution, violations: &[Violation], symptoms: &[Symptom]) -> String {
    let mut raw = String::new();
    write_outcome(&mut raw, execution, violations, symptoms);
    without_kept_times(&raw)
}

/// Writes the outcome's text, kept times and all, to `out`.
fn write_outcome(out: &mut String, execution: &Execution, violations: &[Violation], symptoms: &[Symptom]) {
    use std::fmt::Write;
    let o = &execution.observation;
    let violated: Vec<(Symptom, &str)> =
        symptoms.iter().copied().zip(violations.iter().map(|v| v.message.as_str())).collect();
    // Per attempt: whether a deduction counted, and whether a keyed one ran
    // at the DB; not when (only the judge compares those times, within the
    // idempotency window: its verdict is in the outcome).
    let deducted: Option<Vec<Vec<(bool, bool)>>> = o.deducted.as_ref().map(|requests| {
        requests.iter().map(|a| a.iter().map(|d| (d.counted, d.keyed_at_ms.is_some())).collect()).collect()
    });
    write!(
        out,
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        o.outcomes,
        o.retried,
        deducted,
        o.settles,
        o.end,
        o.state.customers,
        o.state.cache,
        o.state.stripe,
        o.state.breaches,
        violated
    )
    .expect("a String takes any text");
}

/// Where an exploration writes each run's outcome (kept from run to run,
/// so that an outcome met before costs no allocation).
#[derive(Default)]
struct OutcomeBuffers {
    raw: String,
    text: String,
}

/// `text` with the value of every field named for a kept creation time
/// (`created_at`, `created_at_ms`, as `Debug` or JSON prints it) put as `_`,
/// in one pass.
fn without_kept_times(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    strip_kept_times(text, &mut out);
    out
}

/// [`without_kept_times`], appended to `out`.
fn strip_kept_times(text: &str, out: &mut String) {
    const NAME: &str = "created_at";
    let mut rest = text;
    while let Some(at) = rest.find(NAME) {
        let after = &rest[at + NAME.len()..];
        // `created_at: 5`, `created_at_ms: 5`, `"created_at":5`.
        let tail = after.strip_prefix("_ms").unwrap_or(after);
        let separator = [": ", "\":"].into_iter().find(|sep| tail.starts_with(sep));
        let (value, digits) = match separator {
            Some(sep) => {
                let value = rest.len() - tail.len() + sep.len();
                (value, rest[value..].bytes().take_while(u8::is_ascii_digit).count())
            }
            None => (at + NAME.len(), 0),
        };
        out.push_str(&rest[..value]);
        if digits > 0 {
            out.push('_');
        }
        rest = &rest[value + digits..];
    }
    out.push_str(rest);
}

/// With `record_outcomes`, adds the run's outcome to `outcomes`, and
/// gives back the symptoms read for it, so the witness need not read them
/// again (a replay of each violating run that recorded no trace). `run`:
/// the options the run was made with.
fn note_outcome(
    prepared: &Prepared,
    (config, run): (&ExploreConfig, RunOptions),
    (execution, violations): (&Execution, &[Violation]),
    (outcomes, buffers): (&mut BTreeSet<String>, &mut OutcomeBuffers),
) -> Option<Vec<Symptom>> {
    config.record_outcomes.then(|| {
        let symptoms = symptoms_of(prepared, execution, violations, run);
        buffers.raw.clear();
        write_outcome(&mut buffers.raw, execution, violations, &symptoms);
        buffers.text.clear();
        strip_kept_times(&buffers.raw, &mut buffers.text);
        if !outcomes.contains(buffers.text.as_str()) {
            outcomes.insert(buffers.text.clone());
        }
        symptoms
    })
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

/// Whether a run whose schedule is `key` (length, preemptions) would be a
/// better witness of `symptom` than the one `found` holds.
fn improves(found: &BTreeMap<Symptom, Found>, symptom: &Symptom, key: (usize, usize)) -> bool {
    found.get(symptom).is_none_or(|best| key < best.key())
}

/// The symptom of each violation of a failing run: its trace (replayed
/// with one when the run kept none) matched against the catalog. `None`
/// when no symptom its violations may show would take a better witness
/// from it (the replay is skipped: nothing it could say is kept).
fn symptoms(
    prepared: &Prepared,
    (execution, violations): (&Execution, &[Violation]),
    run: RunOptions,
    found: &BTreeMap<Symptom, Found>,
) -> Option<Vec<Symptom>> {
    let key = (execution.minimal_schedule().len(), execution.preemptions);
    let useful = violations
        .iter()
        .any(|v| Symptom::possible(v.invariant).iter().any(|symptom| improves(found, symptom, key)));
    if !useful {
        return None;
    }
    Some(symptoms_of(prepared, execution, violations, run))
}

/// The symptom of each of `violations` of `execution`: its trace (replayed
/// with one, and each decision's past, when the run kept none) matched
/// against the catalog.
fn symptoms_of(
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
        let options = RunOptions { record_trace: true, bare_trace: true, ..run };
        replayed = execute_run(prepared, &mut Replay::new(&execution.schedule), options)
            .expect("a run's own schedule replays");
        &replayed.trace
    };
    violations.iter().map(|v| Symptom::of(trace, v)).collect()
}

impl Found {
    /// How good a witness it is: shorter schedules first, then fewer preemptions.
    fn key(&self) -> (usize, usize) {
        (Schedule::parse(&self.schedule).map_or(usize::MAX, |s| s.len()), self.preemptions)
    }
}

fn record(
    found: &mut BTreeMap<Symptom, Found>,
    prepared: &Prepared,
    (execution, violations, known): (&Execution, Vec<Violation>, Option<Vec<Symptom>>),
    run: RunOptions,
    seed: Option<u64>,
    (count, at): (u64, RunAt),
) {
    let Some(symptoms) = known.or_else(|| symptoms(prepared, (execution, &violations), run, found)) else {
        return;
    };
    let schedule = execution.minimal_schedule();
    let key = (schedule.len(), execution.preemptions);
    for (violation, symptom) in violations.into_iter().zip(symptoms) {
        if !improves(found, &symptom, key) {
            continue;
        }
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
            first_run: at,
            witness_run: at,
        };
        let (first_at, first_run) =
            found.get(&symptom).map_or((count, at), |best| (best.first_at, best.first_run));
        found.insert(symptom, Found { first_at, first_run, ..candidate });
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
pub fn explore(prepared: &Prepared, config: &ExploreConfig, progress: impl FnMut(u64)) -> ExploreReport {
    explore_sharing(prepared, config, None, progress)
}

/// What a search's judged runs add up to.
#[derive(Default)]
struct Tally {
    found: BTreeMap<Symptom, Found>,
    availability: Availability,
    reached: BTreeSet<(usize, Point, u32)>,
    settle_reached: BTreeSet<(usize, Point, u32)>,
    outcomes: BTreeSet<String>,
    buffers: OutcomeBuffers,
    runs: u64,
    longest_schedule: usize,
}

/// What only an exhaustive search reports.
struct Searched {
    exhausted: bool,
    covered: bool,
    redundant_runs: u64,
    states_met: Option<u64>,
    longest_run: Option<usize>,
    groups: BTreeMap<u64, u64>,
}

impl Tally {
    /// A run judged (made with `run`), with the violations found in it,
    /// where it falls in the search's order, and its seed (a sample's).
    fn add(
        &mut self,
        prepared: &Prepared,
        (config, run): (&ExploreConfig, RunOptions),
        (execution, violations): (&Execution, Vec<Violation>),
        (seed, at): (Option<u64>, RunAt),
    ) {
        let known = note_outcome(
            prepared,
            (config, run),
            (execution, &violations),
            (&mut self.outcomes, &mut self.buffers),
        );
        self.runs += 1;
        self.longest_schedule = self.longest_schedule.max(execution.schedule.0.len());
        self.availability.add(execution.availability);
        self.reached.extend(execution.reached.iter().copied());
        self.settle_reached.extend(execution.settle_reached.iter().copied());
        record(&mut self.found, prepared, (execution, violations, known), config.run, seed, (self.runs, at));
    }

    /// The report of a sample (`searched` none) or of an exhaustive search.
    fn report(
        self,
        prepared: &Prepared,
        config: &ExploreConfig,
        searched: Option<Searched>,
    ) -> ExploreReport {
        let Tally { found, availability, reached, settle_reached, outcomes, runs, longest_schedule, .. } =
            self;
        let (exhausted, covered) = searched.as_ref().map_or((false, false), |s| (s.exhausted, s.covered));
        let (redundant_runs, states_met, longest_run, groups) = searched
            .map_or((0, None, None, BTreeMap::new()), |s| {
                (s.redundant_runs, s.states_met, s.longest_run, s.groups)
            });
        ExploreReport {
            scenario: prepared.scenario.name.clone(),
            strategy: prepared.strategy,
            scheduler: config.scheduler.name().to_owned(),
            schedules_run: runs,
            exhausted,
            covered,
            completeness: Completeness::of(config, exhausted, covered),
            shard: config.shard,
            violations: found.into_values().collect(),
            availability,
            reached,
            settle_reached,
            reduction: matches!(config.scheduler, SchedulerKind::Exhaustive { .. })
                .then_some(config.reduction),
            redundant_runs,
            states_met,
            longest_schedule,
            longest_run,
            outcomes,
            groups,
        }
    }
}

/// [`explore`], as one of the threads of one search that share `taken`
/// (see `threads`), the first of them when it says so.
fn explore_sharing(
    prepared: &Prepared,
    config: &ExploreConfig,
    taken: Option<(Arc<AtomicU64>, bool)>,
    mut progress: impl FnMut(u64),
) -> ExploreReport {
    let requests = prepared.request_count();
    let reduced =
        matches!(config.scheduler, SchedulerKind::Exhaustive { .. }) && config.reduction != Reduction::None;
    assert!(
        !(reduced && config.run.first_come_first_served),
        "first come, first served waking runs a woken waiter's statement inside the releasing request's \
         decision, which breaks the program order a reduction's happens-before relies on: explore it plainly"
    );
    if let SchedulerKind::Exhaustive { max_preemptions } = config.scheduler {
        let mut dfs = Dfs::new(max_preemptions, config.max_ticks, config.reduction, config.shard);
        if let Some((taken, first)) = taken {
            dfs = dfs.sharing(taken, first);
        }
        let report = exhaust(prepared, config, &mut dfs, &mut progress);
        // States without their step stand if no run of the space can
        // reach the step cap (`dfs::reach`); if one may, the search runs
        // again with it. (A search that has not ended claims nothing of
        // the space.)
        let cap_out_of_reach = report.longest_run.is_some_and(|longest| longest < dfs.max_steps());
        if dfs.needs_states() && !config.run.state_step && dfs.ended && !cap_out_of_reach {
            let config =
                ExploreConfig { run: RunOptions { state_step: true, ..config.run }, ..config.clone() };
            let mut dfs = Dfs::new(max_preemptions, config.max_ticks, config.reduction, config.shard);
            return exhaust(prepared, &config, &mut dfs, progress);
        }
        return report;
    }
    let mut tally = Tally::default();
    let expected_steps = match config.scheduler {
        SchedulerKind::Pct { .. } => prepared.default_steps(),
        _ => 0,
    };
    let seeds = config.shard.map_or(0..config.schedules, |shard| shard.range(config.schedules));
    for i in seeds {
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
        let broke = !violations.is_empty();
        let at = RunAt { group: 0, offset: tally.runs };
        tally.add(prepared, (config, config.run), (&execution, violations), (Some(seed), at));
        progress(tally.runs);
        if broke && config.stop_at_first {
            break;
        }
    }
    tally.report(prepared, config, None)
}

/// The exhaustive search `dfs` (the whole search, a shard's, or a
/// thread's part: `dfs::tree`).
fn exhaust(
    prepared: &Prepared,
    config: &ExploreConfig,
    dfs: &mut Dfs,
    mut progress: impl FnMut(u64),
) -> ExploreReport {
    let mut tally = Tally::default();
    let mut redundant_runs = 0;
    let mut groups = BTreeMap::new();
    let (mut exhausted, mut covered, mut capped) = (false, false, false);
    let run = RunOptions { footprints: dfs.needs_footprints(), states: dfs.needs_states(), ..config.run };
    // A search that records outcomes reads the races of each
    // violating run from a trace: one the run recorded (bare), or
    // a replay's. Runs next to each other in the search's order
    // mostly agree on whether they violate, so a run records one
    // when the run judged before it violated. (The reduction
    // tests' three-request spaces, most of whose plain runs
    // violate, took 134 CPU-s with a replay for each violating
    // run, 105 so; recording in every run made the generated
    // scenarios' comparisons, where few violate, take 37 instead
    // of 25.) What it reads is the same either way.
    let mut trace_next = false;
    loop {
        let run = if trace_next && !run.record_trace {
            RunOptions { record_trace: true, bare_trace: true, ..run }
        } else {
            run
        };
        let mut execution = execute_run(prepared, dfs, run).expect("explorers only choose runnable requests");
        if dfs.skips_run() || dfs.blocked {
            redundant_runs += u64::from(!dfs.skips_run());
            if dfs.cut {
                // What it reached before the state met again: the
                // points after it, the first run there reached.
                tally.reached.extend(execution.reached.iter().copied());
            }
            if !dfs.backtrack(std::mem::take(&mut execution.footprints), execution.resumed_at) {
                covered = !capped;
                exhausted = covered && !dfs.pruned;
                break;
            }
            continue;
        }
        let violations = judge(&prepared.scenario, &execution.observation);
        let broke = !violations.is_empty();
        trace_next = config.record_outcomes && broke;
        capped |= matches!(execution.observation.end, End::StepCap { .. });
        let group = dfs.group();
        let runs = groups.entry(group).or_insert(0);
        let at = RunAt { group, offset: *runs };
        *runs += 1;
        tally.add(prepared, (config, run), (&execution, violations), (None, at));
        progress(tally.runs);
        if broke && config.stop_at_first {
            break;
        }
        if !dfs.backtrack(std::mem::take(&mut execution.footprints), execution.resumed_at) {
            // A run cut off by the step cap leaves its subtree unexplored.
            covered = !capped;
            exhausted = covered && !dfs.pruned;
            break;
        }
        if tally.runs >= config.schedules {
            break;
        }
    }
    let states_met = dfs.states_met();
    let longest_run = dfs.longest_run();
    tally.report(
        prepared,
        config,
        Some(Searched { exhausted, covered, redundant_runs, states_met, longest_run, groups }),
    )
}

/// What [`search`] found.
pub struct Search {
    /// The first run that was wanted.
    pub found: Option<Execution>,
    pub schedules_run: u64,
    /// Whether the whole space ran (none found is then a proof).
    pub exhausted: bool,
}

/// Runs every schedule of `prepared` with up to `max_ticks` clock moves,
/// no preemption bound, reduced (source sets: every outcome is reached),
/// until a run is `wanted`, at most `limit` runs, each run with `options`.
pub fn search(
    prepared: &Prepared,
    max_ticks: usize,
    limit: u64,
    options: RunOptions,
    mut wanted: impl FnMut(&Execution) -> bool,
) -> Search {
    assert!(
        !options.first_come_first_served,
        "a reduced search cannot wake first come, first served (see `explore`)"
    );
    let mut dfs = Dfs::new(None, max_ticks, Reduction::SourceSets, None);
    let run = RunOptions { footprints: dfs.needs_footprints(), ..options };
    let mut schedules_run = 0;
    let mut capped = false;
    loop {
        let mut execution =
            execute_run(prepared, &mut dfs, run).expect("explorers only choose runnable requests");
        if dfs.skips_run() || dfs.blocked {
            if !dfs.backtrack(std::mem::take(&mut execution.footprints), execution.resumed_at) {
                return Search { found: None, schedules_run, exhausted: !capped && !dfs.pruned };
            }
            continue;
        }
        schedules_run += 1;
        capped |= matches!(execution.observation.end, End::StepCap { .. });
        if wanted(&execution) {
            return Search { found: Some(execution), schedules_run, exhausted: false };
        }
        if !dfs.backtrack(std::mem::take(&mut execution.footprints), execution.resumed_at) {
            return Search { found: None, schedules_run, exhausted: !capped && !dfs.pruned };
        }
        if schedules_run >= limit {
            return Search { found: None, schedules_run, exhausted: false };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::without_kept_times;

    #[test]
    fn kept_creation_times_are_left_out_of_an_outcome_and_nothing_else() {
        let text = r#"Row { id: "cus_1", created_at: 86401000 }|Stripe { created_at_ms: 5 }|{"created_at":7,"n":3}|updated_at: 9"#;
        assert_eq!(
            without_kept_times(text),
            r#"Row { id: "cus_1", created_at: _ }|Stripe { created_at_ms: _ }|{"created_at":_,"n":3}|updated_at: 9"#
        );
        assert_eq!(without_kept_times("created_at: none"), "created_at: none");
        assert_eq!(without_kept_times("created_at7 created_at_ms"), "created_at7 created_at_ms");
    }
}
