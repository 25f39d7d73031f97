//! Differential fidelity, with the cache on a real Redis server. Each
//! generated scenario runs twice on Postgres + Redis:
//! - one request at a time, on its own (the flows on Postgres and Redis):
//!   the same responses, settle reads and final state as the model's
//!   default schedule;
//! - in lockstep with the model's default schedule (the gated replay):
//!   every operation answers the same, the database's and the cache's, and
//!   the final state and the live cache entries (key for key) are the same
//!   (the verdict is the model's: see `cusim_sim::drive::postgres`).
//!
//! The cache entries are compared in lockstep only: on its own, a request
//! takes its read stamp from the services' clocks as they are when it
//! starts, which the requests before it moved, while a stepper run stamps
//! from the model's clocks at its arrival (a decision of the schedule), so
//! a stale-write guard may judge a write differently; in lockstep both
//! take the model's clocks. A disagreement prints the scenario to replay.

use crate::generate;
use crate::support;

use std::cell::RefCell;

use cusim::flow::Strategy;
use cusim_pg::cache::{CacheStore, RedisCache};
use cusim_pg::schema;
use cusim_sim::drive::postgres::{replay_on_postgres, Target};
use cusim_sim::drive::stepper::RunOptions;
use cusim_sim::input::schedule::Schedule;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use support::*;

/// Scenarios compared per strategy.
const SCENARIOS: u32 = 300;

// One test per strategy: the test harness runs them side by side.
#[test]
fn generated_scenarios_agree_on_the_model_and_on_postgres_with_redis_legacy() {
    agree_on_postgres_with_redis(Strategy::Legacy);
}

#[test]
fn generated_scenarios_agree_on_the_model_and_on_postgres_with_redis_transactional() {
    agree_on_postgres_with_redis(Strategy::Transactional);
}

#[test]
fn generated_scenarios_agree_on_the_model_and_on_postgres_with_redis_safe() {
    agree_on_postgres_with_redis(Strategy::Safe);
}

fn agree_on_postgres_with_redis(strategy: Strategy) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    {
        let redis = runtime.block_on(RedisCache::connect(&redis_url(), &format!("diff_{strategy}"))).unwrap();
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
        let compared = std::cell::Cell::new(0usize);
        let result = runner.run(&generate::scenario(), |mut scenario| {
            scenario.faults.clear();
            scenario.settle_faults.clear();
            let expected = sequential_on_mem(&scenario, strategy);
            let cache = CacheStore::Redis(redis.clone());
            let actual = runtime.block_on(sequential_on_postgres_with(&database, &scenario, strategy, cache));
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
            let target = Target::postgres(database_url()).with_redis(Some(redis_url())).reusing_schema();
            let schema_name = format!("diff_lockstep_{strategy}");
            let (_, lockstep) =
                replay_on_postgres(&target, &schema_name, &scenario, strategy, &Schedule::default(), RunOptions::default())
                    .map_err(|e| TestCaseError::fail(format!("the lockstep replay could not run: {e}")))?;
            proptest::prop_assert!(
                lockstep.agrees(),
                "{} in lockstep, Postgres + Redis disagree with the model: {:?} (state agrees {}, cache agrees {}, \
                 verdict {:?}); scenario {}",
                strategy,
                lockstep.divergence,
                lockstep.state_agrees,
                lockstep.cache_agrees,
                lockstep.model_verdict,
                replay
            );
            compared.set(compared.get() + lockstep.compared);
            *agreed.borrow_mut() += 1;
            Ok(())
        });
        runtime.block_on(schema::drop(&database));
        runtime.block_on(redis.clear()).unwrap();
        let lockstep =
            schema::Database::named(&database_url(), &format!("diff_lockstep_{strategy}")).unwrap();
        runtime.block_on(schema::drop(&lockstep));
        if let Err(failure) = result {
            panic!("{strategy}: {failure}");
        }
        eprintln!(
            "{strategy}: {} of {SCENARIOS} generated scenarios agree on Postgres + Redis ({} operations compared in lockstep)",
            agreed.borrow(),
            compared.get()
        );
        assert!(*agreed.borrow() >= SCENARIOS);
    }
}
