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
use std::rc::Rc;

use cusim::flow::{execute, Strategy};
use cusim_pg::{schema, services, PgConn};
use cusim_sim::oracle::State;
use cusim_sim::scenario::Scenario;
use cusim_sim::schedule::Schedule;
use cusim_sim::stepper::{
    execute_run, settle_keys, settle_request, Prepared, Replay, RequestOutcome, RunOptions,
};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use support::*;

/// Scenarios compared per strategy.
const SCENARIOS: u32 = 300;

type Run = (Vec<Answer>, Vec<Answer>, Vec<Seen>);

fn on_mem(scenario: &Scenario, strategy: Strategy) -> Run {
    let prepared = Prepared::new(scenario, strategy).expect("generated seeds are valid");
    let run = execute_run(&prepared, &mut Replay::new(&Schedule::default()), RunOptions::default()).unwrap();
    let state = State::of_world(&run.world);
    let ordinals = ordinals(&state.customers);
    let answers = run
        .outcomes
        .iter()
        .map(|o| match o {
            RequestOutcome::Responded(result) => answer(result, &ordinals),
            other => panic!("no faults, yet {other:?}"),
        })
        .collect();
    let settles = run.settles.iter().map(|s| answer(&s.result, &ordinals)).collect();
    (answers, settles, state.customers.iter().map(|c| seen(c, &ordinals)).collect())
}

async fn on_postgres(database: &schema::Database, scenario: &Scenario, strategy: Strategy) -> Run {
    schema::reset(database, &scenario.catalog()).await.unwrap();
    let shared = services(0, strategy.constraints());
    let n = scenario.requests.len();
    for (i, customer) in scenario.customers.iter().enumerate() {
        let conn = PgConn::connect(&database.options, Rc::clone(&shared), n + i).await.unwrap();
        execute(&conn, Strategy::Safe, &customer.as_request()).await.expect("seeds are created");
    }
    let mut results = Vec::new();
    for (i, request) in scenario.requests.iter().enumerate() {
        let conn = PgConn::connect(&database.options, Rc::clone(&shared), i).await.unwrap();
        results.push(execute(&conn, strategy, request).await);
    }
    let reader = PgConn::connect(&database.options, Rc::clone(&shared), 10_000).await.unwrap();
    let rows: Vec<_> = schema::committed(&reader).await.unwrap().into_iter().map(|c| c.customer).collect();
    let mut settled = Vec::new();
    for (k, (scope, key)) in settle_keys(scenario, &rows).into_iter().enumerate() {
        let conn = PgConn::connect(&database.options, Rc::clone(&shared), 20_000 + k).await.unwrap();
        settled.push(execute(&conn, strategy, &settle_request(&scope, &key)).await);
    }
    let customers = schema::committed(&reader).await.unwrap();
    let ordinals = ordinals(&customers);
    (
        results.iter().map(|r| answer(r, &ordinals)).collect(),
        settled.iter().map(|r| answer(r, &ordinals)).collect(),
        customers.iter().map(|c| seen(c, &ordinals)).collect(),
    )
}

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
            let expected = on_mem(&scenario, strategy);
            let actual = runtime.block_on(on_postgres(&database, &scenario, strategy));
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
