//! The exhaustive scheduler's reduction loses nothing: on every built-in
//! scenario whose plain space is small enough to run whole, the reduced
//! exploration reaches exactly the same outcomes (every response, settle
//! read, committed state and violation), and runs fewer schedules; and so
//! on generated scenarios (the generator's seed is printed).

mod support;

use cusim::flow::Strategy;
use cusim_sim::corpus::builtin::BUILTINS;
use cusim_sim::drive::stepper::Prepared;
use cusim_sim::explore::{explore, ExploreConfig, ExploreReport, Reduction};
use cusim_sim::input::scenario::Scenario;
use support::{generate, proptest_cases, proptest_seed};

/// Plain spaces larger than this are not compared (named in the output).
const PLAIN_LIMIT: u64 = 60_000;

fn exhaust(prepared: &Prepared, reduction: Reduction, max_ticks: usize, limit: u64) -> ExploreReport {
    let config = ExploreConfig {
        record_outcomes: true,
        ..ExploreConfig::exhaustive(reduction, None, max_ticks, limit)
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

/// Compares the reductions with plain search on every built-in under
/// `strategy`, with up to `max_ticks` clock moves, where the plain space
/// is at most `limit`. One test per strategy, so the harness runs them
/// side by side.
fn compare_builtins(strategy: Strategy, max_ticks: usize, limit: u64) {
    let mut compared = 0;
    for builtin in BUILTINS {
        let scenario = builtin.scenario().unwrap();
        let prepared = Prepared::new(&scenario, strategy).unwrap();
        compared += usize::from(compare(&prepared, builtin.name(), max_ticks, limit));
    }
    assert!(compared > 0);
}

#[test]
fn reductions_reach_every_outcome_plain_search_reaches_legacy() {
    compare_builtins(Strategy::Legacy, 0, PLAIN_LIMIT);
}

#[test]
fn reductions_reach_every_outcome_plain_search_reaches_transactional() {
    compare_builtins(Strategy::Transactional, 0, PLAIN_LIMIT);
}

#[test]
fn reductions_reach_every_outcome_plain_search_reaches_safe() {
    compare_builtins(Strategy::Safe, 0, PLAIN_LIMIT);
}

/// With a clock move allowed, plain spaces grow about thirtyfold: those
/// up to this size are compared.
const TICK_LIMIT: u64 = 120_000;

#[test]
fn reductions_reach_every_outcome_plain_search_reaches_with_a_clock_move_legacy() {
    compare_builtins(Strategy::Legacy, 1, TICK_LIMIT);
}

#[test]
fn reductions_reach_every_outcome_plain_search_reaches_with_a_clock_move_transactional() {
    compare_builtins(Strategy::Transactional, 1, TICK_LIMIT);
}

#[test]
fn reductions_reach_every_outcome_plain_search_reaches_with_a_clock_move_safe() {
    compare_builtins(Strategy::Safe, 1, TICK_LIMIT);
}

/// Generated scenarios drawn per strategy; those of up to three requests
/// whose plain space runs whole are compared.
const GENERATED: u32 = 60;
/// The largest plain space a generated scenario may have to be compared.
/// Most generated spaces are far larger than any limit a test can afford
/// (they run to the limit and are skipped); those that run whole are
/// small (under 2,000 schedules in the seeds drawn), so a low limit loses
/// few comparisons and cuts most of the time (the built-ins are compared
/// up to 60,000 and 120,000 above).
const GENERATED_LIMIT: u64 = 5_000;

/// Compares the reductions with plain search on generated scenarios under
/// `strategy`. One test per strategy, so the harness runs them side by side.
fn compare_generated(strategy: Strategy) {
    use proptest::test_runner::{Config, TestRunner};
    let config = Config {
        cases: proptest_cases(GENERATED),
        rng_seed: proptest_seed(),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let compared = std::cell::Cell::new(0);
    let result = runner.run(&(generate::scenario(), 0..2usize), |(scenario, max_ticks)| {
        if scenario.requests.len() > 3 {
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
    eprintln!("{strategy}: {} generated scenarios compared", compared.get());
    assert!(compared.get() >= 5, "{strategy}: too few generated spaces ran whole: {}", compared.get());
}

#[test]
fn reductions_reach_every_outcome_plain_search_reaches_in_generated_scenarios_legacy() {
    compare_generated(Strategy::Legacy);
}

#[test]
fn reductions_reach_every_outcome_plain_search_reaches_in_generated_scenarios_transactional() {
    compare_generated(Strategy::Transactional);
}

#[test]
fn reductions_reach_every_outcome_plain_search_reaches_in_generated_scenarios_safe() {
    compare_generated(Strategy::Safe);
}

/// Three `check`s: of one existing customer, or of three.
fn three_checks(same: bool) -> Scenario {
    let ids = if same { ["cus_a", "cus_a", "cus_a"] } else { ["cus_a", "cus_b", "cus_c"] };
    let customers: Vec<String> =
        ["cus_a", "cus_b", "cus_c"].iter().map(|id| format!(r#"{{"id": "{id}", "name": "N"}}"#)).collect();
    let requests: Vec<String> = ids
        .iter()
        .map(|id| format!(r#"{{"op": "check", "customer_id": "{id}", "feature_id": "words"}}"#))
        .collect();
    let text = format!(
        r#"{{"name": "three-checks", "products": [{{"id": "free", "group": "main", "is_default": true,
            "kind": "free", "features": {{"words": 1000}}}}], "customers": [{}], "requests": [{}]}}"#,
        customers.join(","),
        requests.join(",")
    );
    Scenario::parse(&text, std::path::Path::new("three-checks.json")).unwrap()
}

/// Plain spaces at least this big must shrink a hundredfold.
const LARGE_SPACE: u64 = 10_000;

/// Three-request spaces whose plain search runs whole: the reduced one
/// reaches the same outcomes, and every large one in at least a hundred
/// times fewer schedules.
#[test]
fn three_requests_reduce_large_spaces_at_least_a_hundredfold() {
    let mut large = 0;
    for same in [true, false] {
        let scenario = three_checks(same);
        for strategy in Strategy::ALL {
            let prepared = Prepared::new(&scenario, strategy).unwrap();
            let name = if same { "three checks of one customer" } else { "three checks of three customers" };
            assert!(compare(&prepared, name, 0, PLAIN_LIMIT), "{name} under {strategy}: plain space too big");
            let plain = exhaust(&prepared, Reduction::None, 0, PLAIN_LIMIT);
            let reduced = exhaust(&prepared, Reduction::SourceSets, 0, PLAIN_LIMIT);
            let factor = plain.schedules_run as f64 / reduced.schedules_run as f64;
            eprintln!("{name} under {strategy}: reduced {factor:.0} times");
            if plain.schedules_run >= LARGE_SPACE {
                large += 1;
                assert!(
                    plain.schedules_run >= 100 * reduced.schedules_run,
                    "{name} under {strategy}: {} plain, {} reduced",
                    plain.schedules_run,
                    reduced.schedules_run
                );
            }
        }
    }
    assert!(large >= 3, "only {large} large spaces");
}
