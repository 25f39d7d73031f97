#![allow(dead_code)]

pub mod generate;

/// The allocator the `cusim` tool runs with: the stepper spends much of a
/// schedule allocating and freeing small rows, and the long searches of
/// these tests are the tool's searches.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cusim::flow::Strategy;
use cusim_sim::corpus::builtin;
use cusim_sim::drive::stepper::Prepared;
use cusim_sim::explore::{explore, Completeness, ExploreConfig, ExploreReport, Reduction, SchedulerKind};
use cusim_sim::input::scenario::Scenario;
use cusim_sim::judge::Invariant;

pub fn builtin_scenario(name: &str) -> Scenario {
    builtin::find(name).unwrap_or_else(|| panic!("no built-in {name}")).scenario().unwrap()
}

pub fn scenario(json: &str) -> Scenario {
    Scenario::parse(json, std::path::Path::new("inline.json")).unwrap()
}

/// Plan case 20: two creates of one id, a paid default and Stripe asked
/// for on both.
pub fn paid_stripe_creates() -> Scenario {
    scenario(
        r#"{"name": "paid-stripe", "force_paid_default": true, "products": [
            {"id": "pro", "group": "main", "is_default": true, "kind": "paid", "features": {"words": 100}}],
          "requests": [{"op": "create", "id": "cus_1", "email": "a@example.com", "create_in_stripe": true},
                       {"op": "create", "id": "cus_1", "email": "a@example.com", "create_in_stripe": true}]}"#,
    )
}

pub fn exhaustive(
    scenario: &Scenario,
    strategy: Strategy,
    max_preemptions: Option<usize>,
    max_ticks: usize,
) -> ExploreReport {
    let prepared = Prepared::new(scenario, strategy).unwrap();
    // A reduced search is not complete within a preemption bound: a
    // bounded one is plain, so that `covered` means every schedule within it.
    let reduction = if max_preemptions.is_some() { Reduction::None } else { Reduction::SourceSets };
    let config = ExploreConfig::exhaustive(reduction, max_preemptions, max_ticks, 2_000_000);
    explore(&prepared, &config, |_| {})
}

pub fn pct(scenario: &Scenario, strategy: Strategy, seeds: u64) -> ExploreReport {
    let prepared = Prepared::new(scenario, strategy).unwrap();
    let config = ExploreConfig::sampled(SchedulerKind::Pct { depth: 3 }, seeds, 1);
    explore(&prepared, &config, |_| {})
}

pub fn violated(report: &ExploreReport) -> Vec<Invariant> {
    report.violations.iter().map(|f| f.invariant).collect()
}

/// The report breaks `invariant`, and its witness replays to the same verdict.
pub fn assert_breaks(report: &ExploreReport, scenario: &Scenario, invariant: Invariant) {
    let found = report.violations.iter().find(|f| f.invariant == invariant).unwrap_or_else(|| {
        panic!(
            "{} under {}: expected {invariant}, found {:?}",
            report.scenario,
            report.strategy,
            violated(report)
        )
    });
    let prepared = Prepared::new(scenario, report.strategy).unwrap();
    let schedule = cusim_sim::input::schedule::Schedule::parse(&found.schedule).unwrap();
    let run = cusim_sim::drive::stepper::execute_run(
        &prepared,
        &mut cusim_sim::drive::stepper::Replay::new(&schedule),
        Default::default(),
    )
    .unwrap();
    let again = cusim_sim::judge::judge(&prepared.scenario, &run.observation);
    assert!(
        again.iter().any(|v| v.invariant == invariant),
        "the witness {} does not replay to {invariant}",
        found.schedule
    );
}

/// The report is clean, and, when exhaustive, ran its whole space (or,
/// plain under a preemption bound, the whole space within it).
pub fn assert_holds(report: &ExploreReport) {
    assert!(
        report.violations.is_empty(),
        "{} under {} broke {:?}: {:#?}",
        report.scenario,
        report.strategy,
        violated(report),
        report.violations.iter().map(|f| (&f.schedule, &f.message)).collect::<Vec<_>>()
    );
    assert!(report.schedules_run > 0);
    let whole = matches!(
        report.completeness,
        Completeness::Sampled | Completeness::Complete | Completeness::CompleteWithinBound
    );
    assert!(
        whole,
        "{} under {}: {:?} after {} schedules: the space claimed was not run",
        report.scenario, report.strategy, report.completeness, report.schedules_run
    );
}

/// The seed of the property tests' generators: fixed, so CI runs the same
/// cases every time; `PROPTEST_RNG_SEED=N` searches elsewhere (and
/// `PROPTEST_CASES=N` wider). Printed, so a failure names it.
pub fn proptest_seed() -> proptest::test_runner::RngSeed {
    const FIXED: u64 = 20_261_130;
    let seed = std::env::var("PROPTEST_RNG_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(FIXED);
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| eprintln!("proptest seed {seed} (PROPTEST_RNG_SEED=N to change)"));
    proptest::test_runner::RngSeed::Fixed(seed)
}

/// `default`, unless `PROPTEST_CASES` asks for another number of cases.
pub fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// `work` applied to each of `items` on `threads` threads, each taking the
/// next item; the answers in `items`' order, whatever the threads did.
pub fn on_threads<T: Sync, R: Send>(items: &[T], threads: usize, work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads.clamp(1, items.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut answers: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        mine.push((i, work(item)));
                    }
                    mine
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("a worker thread panicked")).collect()
    });
    answers.sort_by_key(|(i, _)| *i);
    answers.into_iter().map(|(_, r)| r).collect()
}

/// [`on_threads`] with a thread per core.
pub fn on_every_core<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    on_threads(items, std::thread::available_parallelism().map_or(1, |n| n.get()), work)
}
