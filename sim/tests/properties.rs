//! Generated scenarios and schedules: `safe` holds every invariant; the
//! generator reaches every race class of SPEC §8 in the modelled strategies.

mod support;

use std::cell::RefCell;
use std::collections::BTreeSet;

use cusim::flow::Strategy;
use cusim_sim::drive::stepper::Lenient;
use cusim_sim::drive::stepper::{execute_run, Prepared, RunOptions};
use cusim_sim::input::scenario::Scenario;
use cusim_sim::input::schedule::Schedule;
use cusim_sim::judge::races::{classify, Race};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngAlgorithm, TestRng, TestRunner};
use support::{generate, proptest_cases, proptest_seed};

fn check(
    scenario: &Scenario,
    schedule: &Schedule,
    strategy: Strategy,
) -> (Vec<cusim_sim::judge::Violation>, BTreeSet<Race>) {
    let prepared = Prepared::new(scenario, strategy).expect("generated seed customers are valid");
    let options = RunOptions { record_trace: true, ..RunOptions::default() };
    let run =
        execute_run(&prepared, &mut Lenient::new(schedule), options).expect("lenient replays never fail");
    let violations = cusim_sim::judge::judge(&prepared.scenario, &run.observation);
    let races = classify(&run.trace, &violations);
    (violations, races)
}

proptest! {
    #![proptest_config(Config {
        cases: proptest_cases(2_000),
        rng_seed: proptest_seed(),
        // Relative to the package (tests run in `sim/`): committed, replayed first.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/properties.txt"))),
        ..Config::default()
    })]

    #[test]
    fn safe_holds_every_invariant_for_generated_scenarios_and_schedules((scenario, schedule) in generate::case()) {
        let (violations, _) = check(&scenario, &schedule, Strategy::Safe);
        prop_assert!(
            violations.is_empty(),
            "schedule {schedule}\nscenario {}\n{:#?}",
            serde_json::to_string(&scenario).unwrap(),
            violations.iter().map(|v| (v.invariant, &v.message)).collect::<Vec<_>>()
        );
    }
}

/// Each generated scenario is also run under this many pct schedules.
const PCT_SCHEDULES_PER_CASE: u64 = 8;

#[test]
fn the_generator_reaches_every_race_class_within_the_default_case_budget() {
    let config = Config::default();
    let budget = config.cases;
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let reached = RefCell::new(BTreeSet::new());
    runner
        .run(&(generate::case(), any::<u64>()), |((scenario, schedule), seed)| {
            for strategy in [Strategy::Legacy, Strategy::Transactional] {
                reached.borrow_mut().extend(check(&scenario, &schedule, strategy).1);
                // The generated schedule, and a few pct schedules of the same scenario.
                let prepared = Prepared::new(&scenario, strategy).unwrap();
                for i in 0..PCT_SCHEDULES_PER_CASE {
                    let options = RunOptions { record_trace: true, ..RunOptions::default() };
                    let mut pct = cusim_sim::explore::pct_chooser(&prepared, seed.wrapping_add(i), 3, 1);
                    let run = execute_run(&prepared, &mut pct, options).unwrap();
                    let violations = cusim_sim::judge::judge(&prepared.scenario, &run.observation);
                    reached.borrow_mut().extend(classify(&run.trace, &violations));
                }
            }
            Ok(())
        })
        .unwrap();
    let reached = reached.into_inner();
    let missing: Vec<Race> = Race::ALL.into_iter().filter(|r| !reached.contains(r)).collect();
    assert!(
        missing.is_empty(),
        "within {budget} cases the generator never reached {missing:?} (reached {reached:?})"
    );
}
