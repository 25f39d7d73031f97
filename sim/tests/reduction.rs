//! The exhaustive scheduler's reduction loses nothing: on every built-in
//! scenario whose plain space is small enough to run whole, the reduced
//! exploration reaches exactly the same outcomes (every response, settle
//! read, committed state and violation), and runs fewer schedules; and so
//! on generated scenarios (the generator's seed is printed).

mod support;

use cusim::flow::Strategy;
use cusim_sim::corpus::builtin::BUILTINS;
use cusim_sim::drive::stepper::Prepared;
use cusim_sim::explore::{explore, ExploreConfig, ExploreReport, Reduction, SchedulerKind};
use support::{generate, proptest_cases, proptest_seed};

/// Plain spaces larger than this are not compared (named in the output).
const PLAIN_LIMIT: u64 = 60_000;

fn exhaust(prepared: &Prepared, reduction: Reduction, max_ticks: usize, limit: u64) -> ExploreReport {
    let config = ExploreConfig {
        scheduler: SchedulerKind::Exhaustive { max_preemptions: None },
        schedules: limit,
        max_ticks,
        reduction,
        record_outcomes: true,
        ..ExploreConfig::default()
    };
    explore(prepared, &config, |_| {})
}

/// The reductions compared with plain search.
const REDUCTIONS: [Reduction; 2] = [Reduction::SourceSets, Reduction::SleepSets];

/// Exhausts `prepared` plainly and with each reduction, and asserts they
/// reach the same outcomes; false when the plain space is over `limit`.
fn compare(prepared: &Prepared, name: &str, max_ticks: usize, limit: u64) -> bool {
    let strategy = prepared.strategy;
    let plain = exhaust(prepared, Reduction::None, max_ticks, limit);
    if !plain.exhausted {
        eprintln!("{name} under {strategy}, {max_ticks} clock moves: plain space over {limit}, not compared");
        return false;
    }
    for reduction in REDUCTIONS {
        let reduced = exhaust(prepared, reduction, max_ticks, limit);
        let at = format!("{name} under {strategy}, {max_ticks} clock moves, {reduction:?}");
        assert!(reduced.exhausted, "{at}");
        assert_eq!(
            reduced.outcomes.len(),
            plain.outcomes.len(),
            "{at}: outcomes differ; missing {:?}",
            plain.outcomes.difference(&reduced.outcomes).next()
        );
        assert_eq!(reduced.outcomes, plain.outcomes, "{at}");
        assert!(reduced.schedules_run <= plain.schedules_run, "{at}");
        eprintln!(
            "{at}: {} schedules plain, {} reduced ({} redundant runs cut), {} outcomes",
            plain.schedules_run,
            reduced.schedules_run,
            reduced.redundant_runs,
            plain.outcomes.len()
        );
    }
    true
}

#[test]
fn reductions_reach_every_outcome_plain_search_reaches() {
    let mut compared = 0;
    for builtin in BUILTINS {
        let scenario = builtin.scenario().unwrap();
        for strategy in Strategy::ALL {
            let prepared = Prepared::new(&scenario, strategy).unwrap();
            compared += usize::from(compare(&prepared, builtin.name(), 0, PLAIN_LIMIT));
        }
    }
    assert!(compared > 0);
}

/// With a clock move allowed, plain spaces grow about thirtyfold: those
/// up to this size are compared.
const TICK_LIMIT: u64 = 120_000;

#[test]
fn reductions_reach_every_outcome_plain_search_reaches_with_a_clock_move() {
    let mut compared = 0;
    for builtin in BUILTINS {
        let scenario = builtin.scenario().unwrap();
        for strategy in Strategy::ALL {
            let prepared = Prepared::new(&scenario, strategy).unwrap();
            compared += usize::from(compare(&prepared, builtin.name(), 1, TICK_LIMIT));
        }
    }
    assert!(compared > 0);
}

/// Generated scenarios drawn; those of one or two requests whose plain
/// space runs whole are compared.
const GENERATED: u32 = 60;
/// The largest plain space a generated scenario may have to be compared.
const GENERATED_LIMIT: u64 = 20_000;

#[test]
fn reductions_reach_every_outcome_plain_search_reaches_in_generated_scenarios() {
    use proptest::test_runner::{Config, TestRunner};
    let config = Config {
        cases: proptest_cases(GENERATED),
        rng_seed: proptest_seed(),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let compared = std::cell::Cell::new(0);
    let result =
        runner.run(&(generate::scenario(), 0..3usize, 0..2usize), |(scenario, strategy, max_ticks)| {
            let strategy = Strategy::ALL[strategy];
            if scenario.requests.len() > 2 {
                return Ok(());
            }
            let Ok(prepared) = Prepared::new(&scenario, strategy) else { return Ok(()) };
            let plain = exhaust(&prepared, Reduction::None, max_ticks, GENERATED_LIMIT);
            if !plain.exhausted {
                return Ok(());
            }
            let scenario_json = serde_json::to_string(&scenario).unwrap();
            for reduction in REDUCTIONS {
                let reduced = exhaust(&prepared, reduction, max_ticks, GENERATED_LIMIT);
                proptest::prop_assert!(reduced.exhausted, "{strategy}, {reduction:?}: {scenario_json}");
                proptest::prop_assert_eq!(
                    &reduced.outcomes,
                    &plain.outcomes,
                    "{} under {}, {} clock moves, {:?}: {} plain outcomes, {} reduced; scenario {}",
                    scenario.name,
                    strategy,
                    max_ticks,
                    reduction,
                    plain.outcomes.len(),
                    reduced.outcomes.len(),
                    scenario_json
                );
            }
            compared.set(compared.get() + 1);
            Ok(())
        });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    eprintln!("{} generated scenarios compared", compared.get());
    assert!(compared.get() >= 10, "too few generated spaces ran whole: {}", compared.get());
}
