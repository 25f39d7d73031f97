//! Differential fidelity: generated scenarios, run one request at a time,
//! on the in-memory model (the stepper's default schedule) and on Postgres
//! give the same responses, the same settle reads and the same final
//! state. A disagreement prints the scenario to replay.
//!
//! Interleaved schedules need the gated Postgres driver (not built yet);
//! this compares every operation's consequences in sequence.

#[path = "../../sim/tests/support/generate.rs"]
#[allow(dead_code)]
mod generate;
mod support;

use std::cell::RefCell;

use cusim::flow::Strategy;
use cusim_pg::schema;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use support::*;

/// Scenarios compared per strategy.
const SCENARIOS: u32 = 300;

#[test]
fn generated_scenarios_agree_on_the_model_and_on_postgres() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for strategy in Strategy::ALL {
        let database = runtime
            .block_on(schema::create(
                &database_url(),
                &format!("diff_{strategy}"),
                strategy,
                &Default::default(),
            ))
            .unwrap();
        let config = Config { cases: SCENARIOS, failure_persistence: None, ..Config::default() };
        let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
        let agreed = RefCell::new(0u32);
        let result = runner.run(&generate::scenario(), |mut scenario| {
            scenario.faults.clear();
            scenario.settle_faults.clear();
            let expected = sequential_on_mem(&scenario, strategy);
            let actual = runtime.block_on(sequential_on_postgres(&database, &scenario, strategy));
            let replay = serde_json::to_string(&scenario).unwrap();
            proptest::prop_assert_eq!(
                &actual.0,
                &expected.0,
                "{} responses differ; scenario {}",
                strategy,
                replay
            );
            proptest::prop_assert_eq!(
                &actual.1,
                &expected.1,
                "{} settle reads differ; scenario {}",
                strategy,
                replay
            );
            proptest::prop_assert_eq!(
                &actual.2,
                &expected.2,
                "{} final state differs; scenario {}",
                strategy,
                replay
            );
            *agreed.borrow_mut() += 1;
            Ok(())
        });
        runtime.block_on(schema::drop(&database));
        if let Err(failure) = result {
            panic!("{strategy}: {failure}");
        }
        eprintln!("{strategy}: {} of {SCENARIOS} generated scenarios agree", agreed.borrow());
        assert!(*agreed.borrow() >= SCENARIOS);
    }
}
