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

#[test]
fn sleep_sets_reach_every_outcome_plain_search_reaches() {
    let mut compared = 0;
    for builtin in BUILTINS {
        let scenario = builtin.scenario().unwrap();
        for strategy in Strategy::ALL {
            let prepared = Prepared::new(&scenario, strategy).unwrap();
            let plain = exhaust(&prepared, Reduction::None, 0, PLAIN_LIMIT);
            if !plain.exhausted {
                eprintln!(
                    "{} under {strategy}: plain space over {PLAIN_LIMIT}, not compared",
                    builtin.name()
                );
                continue;
            }
            let reduced = exhaust(&prepared, Reduction::SleepSets, 0, PLAIN_LIMIT);
            assert!(reduced.exhausted, "{} under {strategy}", builtin.name());
            assert_eq!(
                reduced.outcomes.len(),
                plain.outcomes.len(),
                "{} under {strategy}: outcomes differ; missing {:?}",
                builtin.name(),
                plain.outcomes.difference(&reduced.outcomes).next()
            );
            assert_eq!(reduced.outcomes, plain.outcomes, "{} under {strategy}", builtin.name());
            assert!(reduced.schedules_run <= plain.schedules_run);
            eprintln!(
                "{} under {strategy}: {} schedules plain, {} reduced ({} redundant runs cut), {} outcomes",
                builtin.name(),
                plain.schedules_run,
                reduced.schedules_run,
                reduced.redundant_runs,
                plain.outcomes.len()
            );
            compared += 1;
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
fn sleep_sets_reach_every_outcome_plain_search_reaches_in_generated_scenarios() {
    use proptest::test_runner::{Config, TestRunner};
    let config = Config {
        cases: proptest_cases(GENERATED),
        rng_seed: proptest_seed(),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let compared = std::cell::Cell::new(0);
    let result = runner.run(&(generate::scenario(), 0..3usize), |(scenario, strategy)| {
        let strategy = Strategy::ALL[strategy];
        if scenario.requests.len() > 2 {
            return Ok(());
        }
        let Ok(prepared) = Prepared::new(&scenario, strategy) else { return Ok(()) };
        let plain = exhaust(&prepared, Reduction::None, 0, GENERATED_LIMIT);
        if !plain.exhausted {
            return Ok(());
        }
        let reduced = exhaust(&prepared, Reduction::SleepSets, 0, GENERATED_LIMIT);
        let scenario_json = serde_json::to_string(&scenario).unwrap();
        proptest::prop_assert!(reduced.exhausted, "{strategy}: {scenario_json}");
        proptest::prop_assert_eq!(
            &reduced.outcomes,
            &plain.outcomes,
            "{} under {}: {} plain outcomes, {} reduced; scenario {}",
            scenario.name,
            strategy,
            plain.outcomes.len(),
            reduced.outcomes.len(),
            scenario_json
        );
        compared.set(compared.get() + 1);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    eprintln!("{} generated scenarios compared", compared.get());
    assert!(compared.get() >= 10, "too few generated spaces ran whole: {}", compared.get());
}
