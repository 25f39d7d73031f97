//! The exhaustive scheduler's reduction loses nothing, shown six ways:
//!
//! 1. Plain search against the reductions, outcome for outcome (every
//!    response, settle read, committed state, violation and the race it
//!    shows), on the built-in spaces whose plain search runs whole within
//!    a limit. The list of (scenario, strategy, clock moves) compared is
//!    written out ([`COMPARED`]), and the rest with it ([`NOT_COMPARED`]):
//!    a space that grows past the limit fails the test instead of
//!    silently dropping out of it. The search that caches states leaves
//!    the step out of the state and answers for the step cap by the
//!    longest run through the states it met: that must be the longest
//!    schedule plain search ran.
//! 2. The same on generated scenarios of up to three requests (the
//!    generator's seed is printed; a floor of cases actually compared is
//!    asserted).
//! 3. Three-request scenarios that insert, claim and wait: the reduced
//!    search runs whole (in shards, side by side); where plain search runs
//!    whole it reaches the same outcomes, and elsewhere every outcome of
//!    sampled plain schedules is among the reduced search's.
//! 4. Commutation, the dependency relation itself on spaces no plain
//!    search ends: on random runs of every built-in, two adjacent
//!    decisions of different movers whose footprints do not conflict are
//!    swapped, and the swapped schedule must replay to the same outcome.
//! 5. The state the search that caches states hashes: on random runs of
//!    every built-in, two runs that come to one state by different
//!    decisions must go on alike from it.
//! 6. Wakeup trees against source sets where plain search does not end:
//!    the same outcomes, with no more runs.
//!
//! Each test writes its claims to the ledger (`cusim_sim::claims`).

mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use cusim::flow::Strategy;
use cusim_sim::claims::{clock_moves, Bound, Claim};
use cusim_sim::corpus::builtin::BUILTINS;
use cusim_sim::drive::stepper::{execute_run, Chooser, Execution, Prepared, Replay, RunOptions, View};
use cusim_sim::explore::{
    explore, outcome_of, random_chooser, Completeness, ExploreConfig, ExploreReport, Reduction,
    SchedulerKind, Shard,
};
use cusim_sim::input::scenario::Scenario;
use cusim_sim::input::schedule::{Schedule, Token};
use cusim_sim::judge::judge;
use support::{builtin_scenario, generate, proptest_cases, proptest_seed, scenario};

use Strategy::{Legacy, Safe, Transactional};

/// The largest plain space compared.
const PLAIN_LIMIT: u64 = 200_000;

fn exhaust(prepared: &Prepared, reduction: Reduction, max_ticks: usize, limit: u64) -> ExploreReport {
    let config = ExploreConfig {
        record_outcomes: true,
        ..ExploreConfig::exhaustive(reduction, None, max_ticks, limit)
    };
    explore(prepared, &config, |_| {})
}

/// The reductions compared with plain search.
const REDUCTIONS: [Reduction; 4] =
    [Reduction::SourceSets, Reduction::SleepSets, Reduction::States, Reduction::WakeupTrees];

/// What of `outcomes` `reduction` must reach: all of it, but for a search
/// that caches states, which meets every state, and so every outcome, but
/// judges only the first run to each: a violation's race (read from that
/// run's order) is left out.
fn kept_by(reduction: Reduction, outcomes: &BTreeSet<String>) -> BTreeSet<String> {
    if reduction != Reduction::States {
        return outcomes.clone();
    }
    outcomes
        .iter()
        .map(|outcome| {
            let mut kept = String::with_capacity(outcome.len());
            let mut rest = outcome.as_str();
            while let Some(at) = rest.find("race: ") {
                let end = rest[at..].find(" }").map_or(rest.len(), |e| at + e);
                kept.push_str(&rest[..at]);
                kept.push_str("race: _");
                rest = &rest[end..];
            }
            kept.push_str(rest);
            kept
        })
        .collect()
}

/// What one comparison found: schedules plain, with each reduction, and
/// the outcomes all reached.
struct Compared {
    plain: u64,
    reduced: [u64; 4],
    outcomes: usize,
}

/// Exhausts `prepared` plainly (at most `limit` schedules) and with each
/// reduction, and asserts they reach the same outcomes; `None` when the
/// plain space is over `limit`.
fn compare(prepared: &Prepared, name: &str, max_ticks: usize, limit: u64) -> Option<Compared> {
    let strategy = prepared.strategy;
    let plain = exhaust(prepared, Reduction::None, max_ticks, limit);
    if plain.completeness != Completeness::Complete {
        return None;
    }
    let mut reduced = [0; 4];
    for (k, reduction) in REDUCTIONS.into_iter().enumerate() {
        let report = exhaust(prepared, reduction, max_ticks, limit);
        let at = format!("{name} under {strategy}, {max_ticks} clock moves, {reduction:?}");
        assert_eq!(report.completeness, Completeness::Complete, "{at}");
        let (want, got) = (kept_by(reduction, &plain.outcomes), kept_by(reduction, &report.outcomes));
        assert_eq!(
            got.len(),
            want.len(),
            "{at}: outcomes differ; missing {:?}",
            want.difference(&got).next()
        );
        assert_eq!(got, want, "{at}");
        assert!(report.schedules_run <= plain.schedules_run, "{at}");
        if reduction == Reduction::States {
            // Its states leave the step out: the longest run through the
            // states it met answers for the step cap (`dfs::reach`), and
            // is the longest schedule of the space.
            assert_eq!(report.longest_run, Some(plain.longest_schedule), "{at}: the longest run");
        }
        reduced[k] = report.schedules_run;
    }
    Some(Compared { plain: plain.schedules_run, reduced, outcomes: plain.outcomes.len() })
}

/// Every built-in (scenario, strategy, clock moves) whose plain space runs
/// whole within [`PLAIN_LIMIT`], compared with the reductions.
const COMPARED: &[(&str, Strategy, usize)] = &[
    ("r1-same-id-create", Legacy, 0),
    ("r1-same-id-create", Transactional, 0),
    ("r1-same-id-create", Safe, 0),
    ("r1-same-id-create", Legacy, 1),
    ("r2-stale-cache", Legacy, 0),
    ("r2-stale-cache", Transactional, 0),
    ("r2-stale-cache", Safe, 0),
    ("r3-crash-before-defaults", Legacy, 0),
    ("r3-crash-before-defaults", Transactional, 0),
    ("r3-crash-before-defaults", Safe, 0),
    ("r3-crash-before-defaults", Legacy, 1),
    ("r3-crash-before-defaults", Transactional, 1),
    ("r3-crash-before-defaults", Safe, 1),
    ("r4-idless-duplicates", Legacy, 0),
    ("r4-idless-duplicates", Transactional, 0),
    ("r4-idless-duplicates", Safe, 0),
    ("r4-idless-duplicates", Legacy, 1),
    ("r4-idless-duplicates", Transactional, 1),
    ("r4-idless-duplicates", Safe, 1),
    ("r5-double-claim", Legacy, 0),
    ("r5-double-claim", Transactional, 0),
    ("r5-double-claim", Safe, 0),
    ("r5-double-claim", Legacy, 1),
    ("r5-double-claim", Transactional, 1),
    ("r5-double-claim", Safe, 1),
    ("r6-two-stripe-customers", Legacy, 0),
    ("r6-two-stripe-customers", Transactional, 0),
    ("r7-cache-without-stripe", Legacy, 0),
    ("r8-lost-usage-overwrite", Legacy, 0),
    ("r8-lost-usage-overwrite", Transactional, 0),
    ("r8-lost-usage-overwrite", Safe, 0),
    ("r8-lost-usage-overwrite", Legacy, 1),
    ("r8-lost-usage-overwrite", Transactional, 1),
    ("r9-lost-usage-invalidation", Legacy, 0),
    ("r9-lost-usage-invalidation", Transactional, 0),
    ("r9-lost-usage-invalidation", Safe, 0),
    ("r9-lost-usage-invalidation", Transactional, 1),
    ("w1-keyed-retry-after-lost-response", Legacy, 0),
    ("w1-keyed-retry-after-lost-response", Transactional, 0),
    ("w1-keyed-retry-after-lost-response", Safe, 0),
    ("w1-keyed-retry-after-lost-response", Legacy, 1),
    ("w1-keyed-retry-after-lost-response", Transactional, 1),
    ("w1-keyed-retry-after-lost-response", Safe, 1),
    ("w2-cache-evicted-before-sync", Legacy, 0),
    ("w2-cache-evicted-before-sync", Transactional, 0),
    ("w2-cache-evicted-before-sync", Safe, 0),
    ("w2-cache-evicted-before-sync", Legacy, 1),
    ("w2-cache-evicted-before-sync", Transactional, 1),
    ("w2-cache-evicted-before-sync", Safe, 1),
    ("w3-skewed-instances", Legacy, 0),
    ("w3-skewed-instances", Transactional, 0),
    ("w3-skewed-instances", Safe, 0),
    ("w3-skewed-instances", Legacy, 1),
    ("w3-skewed-instances", Transactional, 1),
    ("w3-skewed-instances", Safe, 1),
    ("w4-stripe-window", Legacy, 0),
    ("w4-stripe-window", Transactional, 0),
    ("w4-stripe-window", Legacy, 1),
];

/// The rest of the built-in spaces: their plain search does not run whole
/// within [`PLAIN_LIMIT`]. Their evidence is the commutation test (and,
/// for three requests, the scenarios of `three_requests_…`).
const NOT_COMPARED: &[(&str, Strategy, usize)] = &[
    ("r1-same-id-create", Transactional, 1),
    ("r1-same-id-create", Safe, 1),
    ("r2-stale-cache", Legacy, 1),
    ("r2-stale-cache", Transactional, 1),
    ("r2-stale-cache", Safe, 1),
    ("r6-two-stripe-customers", Safe, 0),
    ("r6-two-stripe-customers", Legacy, 1),
    ("r6-two-stripe-customers", Transactional, 1),
    ("r6-two-stripe-customers", Safe, 1),
    ("r7-cache-without-stripe", Transactional, 0),
    ("r7-cache-without-stripe", Safe, 0),
    ("r7-cache-without-stripe", Legacy, 1),
    ("r7-cache-without-stripe", Transactional, 1),
    ("r7-cache-without-stripe", Safe, 1),
    ("r8-lost-usage-overwrite", Safe, 1),
    ("r9-lost-usage-invalidation", Legacy, 1),
    ("r9-lost-usage-invalidation", Safe, 1),
    ("w4-stripe-window", Safe, 0),
    ("w4-stripe-window", Transactional, 1),
    ("w4-stripe-window", Safe, 1),
    ("clean-distinct-ids", Legacy, 0),
    ("clean-distinct-ids", Transactional, 0),
    ("clean-distinct-ids", Safe, 0),
    ("clean-distinct-ids", Legacy, 1),
    ("clean-distinct-ids", Transactional, 1),
    ("clean-distinct-ids", Safe, 1),
    ("clean-same-id-two-orgs", Legacy, 0),
    ("clean-same-id-two-orgs", Transactional, 0),
    ("clean-same-id-two-orgs", Safe, 0),
    ("clean-same-id-two-orgs", Legacy, 1),
    ("clean-same-id-two-orgs", Transactional, 1),
    ("clean-same-id-two-orgs", Safe, 1),
];

/// Compares the reductions with plain search on the listed built-in
/// spaces under `strategy` (one test per strategy, so they run side by
/// side), and writes a claim per space.
fn compare_builtins(strategy: Strategy) {
    let started = Instant::now();
    for &(name, _, max_ticks) in COMPARED.iter().filter(|(_, s, _)| *s == strategy) {
        let one = Instant::now();
        let prepared = Prepared::new(&builtin_scenario(name), strategy).unwrap();
        let compared = compare(&prepared, name, max_ticks, PLAIN_LIMIT).unwrap_or_else(|| {
            panic!(
                "{name} under {strategy}, {max_ticks} clock moves: the plain space grew past {PLAIN_LIMIT}; \
                 move it to NOT_COMPARED and say what backs it instead"
            )
        });
        eprintln!(
            "{name} under {strategy}, {max_ticks} clock moves: {} schedules plain, {} with source sets, {} with \
             sleep sets, {} with states cached, {} with wakeup trees, {} outcomes",
            compared.plain,
            compared.reduced[0],
            compared.reduced[1],
            compared.reduced[2],
            compared.reduced[3],
            compared.outcomes
        );
        Claim::new(
            format!("reduction/{name}/{strategy}/{max_ticks}"),
            "source sets, wakeup trees and sleep sets reach every outcome (answers, state, violations, races) \
             plain search reaches; the search that caches states, every one but for the races",
            format!("{name}, {strategy}, {}", clock_moves(max_ticks)),
            Bound::Complete,
        )
        .figure("plain", compared.plain)
        .figure("source_sets", compared.reduced[0])
        .figure("sleep_sets", compared.reduced[1])
        .figure("states", compared.reduced[2])
        .figure("wakeup_trees", compared.reduced[3])
        .record(one);
    }
    eprintln!("{strategy}: built-ins compared in {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn every_builtin_space_is_listed_as_compared_or_not() {
    let mut listed = BTreeSet::new();
    for &(name, strategy, ticks) in COMPARED.iter().chain(NOT_COMPARED) {
        assert!(BUILTINS.iter().any(|b| b.name() == name), "{name} is no built-in");
        assert!(listed.insert((name, strategy.as_str(), ticks)), "{name} {strategy} {ticks} listed twice");
    }
    for builtin in BUILTINS {
        for strategy in Strategy::ALL {
            for ticks in [0, 1] {
                assert!(
                    listed.contains(&(builtin.name(), strategy.as_str(), ticks)),
                    "{} under {strategy} with {ticks} clock moves is in neither list",
                    builtin.name()
                );
            }
        }
    }
}

#[test]
fn reductions_reach_every_outcome_plain_search_reaches_legacy() {
    compare_builtins(Legacy);
}

#[test]
fn reductions_reach_every_outcome_plain_search_reaches_transactional() {
    compare_builtins(Transactional);
}

#[test]
fn reductions_reach_every_outcome_plain_search_reaches_safe() {
    compare_builtins(Safe);
}

/// Generated scenarios drawn per strategy; those of up to three requests
/// whose plain space runs whole are compared.
const GENERATED: u32 = 60;
/// The largest plain space a generated scenario may have to be compared.
/// Most generated spaces are far larger than any limit a test can afford
/// (they run to the limit and are skipped); those that run whole are
/// small, so a low limit loses few comparisons and cuts most of the time.
const GENERATED_LIMIT: u64 = 5_000;
/// Generated scenarios that must be compared per strategy (the rest are
/// skipped: too many requests, or a plain space over the limit).
const GENERATED_FLOOR: usize = 5;

/// Compares the reductions with plain search on generated scenarios under
/// `strategy`. One test per strategy, so the harness runs them side by side.
fn compare_generated(strategy: Strategy) {
    use proptest::test_runner::{Config, TestRunner};
    let started = Instant::now();
    let config = Config {
        cases: proptest_cases(GENERATED),
        rng_seed: proptest_seed(),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let compared = std::cell::Cell::new(0);
    let schedules = std::cell::Cell::new(0);
    let result = runner.run(&(generate::scenario(), 0..2usize), |(scenario, max_ticks)| {
        if scenario.requests.len() > 3 {
            return Ok(());
        }
        let Ok(prepared) = Prepared::new(&scenario, strategy) else { return Ok(()) };
        let plain = exhaust(&prepared, Reduction::None, max_ticks, GENERATED_LIMIT);
        if plain.completeness != Completeness::Complete {
            return Ok(());
        }
        let scenario_json = serde_json::to_string(&scenario).unwrap();
        for reduction in REDUCTIONS {
            let reduced = exhaust(&prepared, reduction, max_ticks, GENERATED_LIMIT);
            proptest::prop_assert_eq!(
                reduced.completeness,
                Completeness::Complete,
                "{}, {:?}: {}",
                strategy,
                reduction,
                scenario_json
            );
            proptest::prop_assert_eq!(
                kept_by(reduction, &reduced.outcomes),
                kept_by(reduction, &plain.outcomes),
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
        schedules.set(schedules.get() + plain.schedules_run);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let compared = compared.get();
    eprintln!("{strategy}: {compared} generated scenarios compared");
    assert!(compared >= GENERATED_FLOOR, "{strategy}: too few generated spaces ran whole: {compared}");
    Claim::new(
        format!("generated-reduction/{strategy}"),
        "on generated scenarios of up to three requests, the reductions reach every outcome plain search reaches",
        format!("{} generated scenarios drawn, {strategy}, up to 1 clock move", proptest_cases(GENERATED)),
        Bound::Sampled(compared as u64),
    )
    .figure("plain", schedules.get())
    .record(started);
}

#[test]
fn reductions_reach_every_outcome_plain_search_reaches_in_generated_scenarios_legacy() {
    compare_generated(Legacy);
}

#[test]
fn reductions_reach_every_outcome_plain_search_reaches_in_generated_scenarios_transactional() {
    compare_generated(Transactional);
}

#[test]
fn reductions_reach_every_outcome_plain_search_reaches_in_generated_scenarios_safe() {
    compare_generated(Safe);
}

/// Three requests that insert, claim and wait: two creates of one id and
/// a create of another id with the same email, beside an id-less customer
/// with it (claims of one row, waits on the row and on the id index).
fn two_creates_and_a_claim() -> Scenario {
    scenario(
        r#"{"name": "two-creates-and-a-claim",
          "products": [{"id": "free", "group": "main", "is_default": true, "kind": "free", "features": {"words": 100}}],
          "customers": [{"id": null, "email": "ann@example.com", "name": "Ann"}],
          "requests": [{"op": "create", "id": "cus_1", "email": "ann@example.com"},
                       {"op": "create", "id": "cus_1", "email": "ann@example.com"},
                       {"op": "create", "id": "cus_2", "email": "ann@example.com"}]}"#,
    )
}

/// Two id-less creates of one email (in two spellings) and a create of an
/// id with it: inserts that wait on the email index, and a claim.
fn two_idless_and_a_claim() -> Scenario {
    scenario(
        r#"{"name": "two-idless-and-a-claim",
          "products": [{"id": "free", "group": "main", "is_default": true, "kind": "free", "features": {"words": 100}}],
          "requests": [{"op": "create", "id": null, "email": "ann@example.com"},
                       {"op": "create", "id": null, "email": "ANN@example.com"},
                       {"op": "create", "id": "cus_1", "email": "ann@example.com"}]}"#,
    )
}

/// Two tracks and a check that fills the customer's empty name (an
/// invalidation; under `safe` a row lock the tracks wait on).
fn tracks_and_an_invalidation() -> Scenario {
    scenario(
        r#"{"name": "tracks-and-an-invalidation",
          "products": [{"id": "free", "group": "main", "is_default": true, "kind": "free", "features": {"words": 100}}],
          "customers": [{"id": "cus_1", "email": "ann@example.com"}],
          "requests": [{"op": "track", "customer_id": "cus_1", "feature_id": "words", "value": 3},
                       {"op": "track", "customer_id": "cus_1", "feature_id": "words", "value": 2},
                       {"op": "check", "customer_id": "cus_1", "feature_id": "words", "customer_data": {"name": "Ann"}}]}"#,
    )
}

/// Shards a large three-request space runs in, side by side.
const THREE_REQUEST_SHARDS: usize = 2;
/// Random and pct schedules each, sampled where the plain space is not run.
const SAMPLED_PLAIN: u64 = 3_000;
/// The three-request spaces whose plain search is run whole (in shards):
/// the others' plain spaces are larger than any test can afford (each of
/// them passes 2,000,000 schedules, or runs past 100 s).
const THREE_REQUEST_PLAIN: &[(&str, Strategy)] = &[("two-creates-and-a-claim", Legacy)];
/// The three-request spaces the search that caches states is not compared
/// on: two legacy tracks and a check have 979,312 runs to it (46 s), each
/// track hearing its balance in the cache; states under legacy are
/// compared on every built-in space plain search runs whole.
const THREE_REQUEST_STATES_LEFT_OUT: &[(&str, Strategy)] = &[("tracks-and-an-invalidation", Legacy)];
/// The most schedules a plain three-request space may have.
const THREE_REQUEST_PLAIN_LIMIT: u64 = 2_500_000;

/// `prepared` explored with `reduction` (no clock move), in shards on
/// threads of their own: schedules run, and the union of their outcomes;
/// every shard must run whole.
fn in_shards(prepared: &Prepared, reduction: Reduction, limit: u64) -> (u64, BTreeSet<String>) {
    let reports: Vec<ExploreReport> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREE_REQUEST_SHARDS)
            .map(|index| {
                scope.spawn(move || {
                    let shard = Shard { index, count: THREE_REQUEST_SHARDS };
                    let search = ExploreConfig::exhaustive(reduction, None, 0, limit);
                    let config = ExploreConfig { record_outcomes: true, shard: Some(shard), ..search };
                    explore(prepared, &config, |_| {})
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a shard does not panic")).collect()
    });
    for report in &reports {
        assert_eq!(
            report.completeness,
            Completeness::Complete,
            "{} ({reduction:?}): a shard did not run whole",
            prepared.scenario.name
        );
    }
    let schedules = reports.iter().map(|r| r.schedules_run).sum();
    (schedules, reports.into_iter().flat_map(|r| r.outcomes).collect())
}

/// Three-request spaces that insert, claim and wait (no clock move): the
/// reduced search runs whole; plain search reaches no outcome it misses
/// (every outcome, where plain is run whole: [`THREE_REQUEST_PLAIN`];
/// every outcome of sampled random and pct schedules, elsewhere).
#[test]
fn three_requests_that_insert_claim_and_wait_lose_no_outcome() {
    for scenario in [two_creates_and_a_claim(), two_idless_and_a_claim(), tracks_and_an_invalidation()] {
        for strategy in Strategy::ALL {
            let started = Instant::now();
            let prepared = Prepared::new(&scenario, strategy).unwrap();
            let (reduced, outcomes) = in_shards(&prepared, Reduction::SourceSets, 5_000_000);
            let at = format!("{} under {strategy}", scenario.name);
            // The search that caches states meets every outcome source sets meet.
            let states =
                (!THREE_REQUEST_STATES_LEFT_OUT.contains(&(scenario.name.as_str(), strategy))).then(|| {
                    let states = exhaust(&prepared, Reduction::States, 0, 5_000_000);
                    assert_eq!(states.completeness, Completeness::Complete, "{at}: states cached");
                    assert_eq!(
                        kept_by(Reduction::States, &states.outcomes),
                        kept_by(Reduction::States, &outcomes),
                        "{at}: source sets and states cached reach different outcomes"
                    );
                    states.schedules_run
                });
            let (bound, evidence) = if THREE_REQUEST_PLAIN.contains(&(scenario.name.as_str(), strategy)) {
                let (plain, plain_outcomes) =
                    in_shards(&prepared, Reduction::None, THREE_REQUEST_PLAIN_LIMIT);
                assert_eq!(plain_outcomes, outcomes, "{at}: plain and reduced outcomes differ");
                (Bound::Complete, ("plain", plain))
            } else {
                let mut sampled_outcomes = BTreeSet::new();
                for sampler in [SchedulerKind::Random, SchedulerKind::Pct { depth: 3 }] {
                    let sample = ExploreConfig {
                        record_outcomes: true,
                        ..ExploreConfig::sampled(sampler, SAMPLED_PLAIN, 0)
                    };
                    sampled_outcomes.extend(explore(&prepared, &sample, |_| {}).outcomes);
                }
                let missing: Vec<&String> = sampled_outcomes.difference(&outcomes).collect();
                assert!(
                    missing.is_empty(),
                    "{at}: a sampled schedule reached {:?}, the reduced search did not",
                    missing[0]
                );
                (Bound::Sampled(2 * SAMPLED_PLAIN), ("sampled_outcomes", sampled_outcomes.len() as u64))
            };
            eprintln!(
                "{at}: {reduced} schedules reduced, {} outcomes; {bound}: {evidence:?}",
                outcomes.len()
            );
            let claim = Claim::new(
                format!("three-requests/{}/{strategy}", scenario.name),
                "three-request spaces that insert, claim and wait: the reduced search reaches every outcome plain \
                 search reaches (all of them where plain runs whole, those of sampled schedules elsewhere); so \
                 does the search that caches states but for the races, where it is run",
                format!("{}, {strategy}, no clock move", scenario.name),
                bound,
            )
            .figure("reduced", reduced);
            let claim = match states {
                Some(runs) => claim.figure("states", runs),
                None => claim,
            };
            claim.figure(evidence.0, evidence.1).figure("outcomes", outcomes.len() as u64).record(started);
        }
    }
}

/// Random runs per (built-in, strategy) in the commutation test, and the
/// most swaps tried in one run; a built-in with few independent pairs (one
/// request: only clock moves commute with its steps) runs more, up to
/// [`MAX_COMMUTATION_RUNS`], until it has tried [`MIN_SWAPS`].
const COMMUTATION_RUNS: u64 = 100;
const MAX_COMMUTATION_RUNS: u64 = 3_000;
const SWAPS_PER_RUN: usize = 10;
const MIN_SWAPS: u64 = 1_000;

/// The dependency relation, decision by decision: in random runs (up to
/// one clock move), each pair of adjacent decisions of different movers
/// whose footprints do not conflict is swapped (up to [`SWAPS_PER_RUN`]
/// per run, spread over it, and every clock move next to a step that read
/// the time within a longer window), and the swapped schedule must replay
/// (neither enabled nor disabled the other) to the same outcome: answers,
/// retried attempts, deductions, settle reads, the end, the committed
/// state (times only kept left out), the cache, Stripe, violations and the
/// races they show.
#[test]
fn decisions_the_relation_calls_independent_commute_in_every_builtin() {
    let options = RunOptions { footprints: true, ..RunOptions::default() };
    let (mut total, mut total_across) = (0, 0);
    for builtin in BUILTINS {
        let scenario = builtin.scenario().unwrap();
        let started = Instant::now();
        let (mut runs, mut swaps, mut moves_across_windows) = (0, 0, 0);
        let prepared: Vec<Prepared> = Strategy::ALL.map(|s| Prepared::new(&scenario, s).unwrap()).to_vec();
        for seed in 0..MAX_COMMUTATION_RUNS {
            if seed >= COMMUTATION_RUNS && swaps >= MIN_SWAPS {
                break;
            }
            for prepared in &prepared {
                let strategy = prepared.strategy;
                let run = execute_run(prepared, &mut random_chooser(seed, 1), options).unwrap();
                let outcome = outcome_of(prepared, &run, &judge(&scenario, &run.observation), options);
                let tokens = &run.schedule.0;
                let mover = |t: &Token| match t {
                    Token::Run { request, .. } => Some(*request),
                    Token::Tick { .. } => None,
                };
                let independent: Vec<usize> = (0..tokens.len().saturating_sub(1))
                    .filter(|&k| {
                        mover(&tokens[k]) != mover(&tokens[k + 1])
                            && !run.footprints[k].conflicts(&run.footprints[k + 1])
                    })
                    .collect();
                // Every clock move next to a step whose reading of the time
                // is compared within a window longer than the move (the
                // windows of `footprint`), and a spread of the other pairs.
                let across_window = |k: usize| {
                    let (a, b) = (&run.footprints[k], &run.footprints[k + 1]);
                    (a.moves.is_some() && b.window.is_some()) || (b.moves.is_some() && a.window.is_some())
                };
                let step = independent.len().div_ceil(SWAPS_PER_RUN).max(1);
                let spread = independent.iter().copied().step_by(step);
                let mut chosen: Vec<usize> =
                    spread.chain(independent.iter().copied().filter(|&k| across_window(k))).collect();
                chosen.sort_unstable();
                chosen.dedup();
                for k in chosen {
                    let mut swapped = tokens.clone();
                    swapped.swap(k, k + 1);
                    let swapped = Schedule(swapped);
                    let again =
                        execute_run(prepared, &mut Replay::new(&swapped), options).unwrap_or_else(|e| {
                            panic!(
                            "{} under {strategy}, seed {seed}: decisions {k} and {} were called independent, \
                             but swapped ({swapped}) the run cannot follow them: {e}",
                            builtin.name(),
                            k + 1
                        )
                        });
                    let swapped_outcome =
                        outcome_of(prepared, &again, &judge(&scenario, &again.observation), options);
                    assert_eq!(
                        swapped_outcome,
                        outcome,
                        "{} under {strategy}, seed {seed}: swapping decisions {k} and {} ({} → {swapped}) changed \
                         the outcome",
                        builtin.name(),
                        k + 1,
                        run.schedule
                    );
                    swaps += 1;
                    moves_across_windows += u64::from(across_window(k));
                }
                runs += 1;
            }
        }
        assert!(swaps >= MIN_SWAPS, "{}: only {swaps} swaps in {runs} runs", builtin.name());
        eprintln!(
            "{}: {swaps} swaps in {runs} runs ({moves_across_windows} of a clock move across a reading of the \
             time within a longer window), each to the same outcome",
            builtin.name()
        );
        total += swaps;
        total_across += moves_across_windows;
        Claim::new(
            format!("commutation/{}", builtin.name()),
            "two adjacent decisions the dependency relation calls independent, swapped, give the same outcome",
            format!("{}, every strategy, random runs with up to 1 clock move", builtin.name()),
            Bound::Sampled(swaps),
        )
        .figure("runs", runs)
        .figure("moves_across_windows", moves_across_windows)
        .record(started);
    }
    eprintln!("{total} swaps in all, {total_across} of them a clock move across a longer window");
    assert!(
        total_across > 0,
        "no clock move was swapped across a reading of the time: the windows go untested"
    );
}

/// Random runs per (built-in, strategy) in the test of states, and the
/// most pairs of prefixes to one state it follows per (built-in, strategy).
const STATE_RUNS: u64 = 300;
const STATE_PAIRS: u64 = 400;

/// A chooser that also notes the state at each decision.
struct Noting<C> {
    inner: C,
    /// (decisions made before it, the state there).
    states: Vec<(usize, u128)>,
    made: usize,
}

impl<C: Chooser> Chooser for Noting<C> {
    fn choose(&mut self, view: &View<'_>) -> Option<Token> {
        if let Some(state) = view.state {
            self.states.push((self.made, state));
        }
        self.made += 1;
        self.inner.choose(view)
    }

    fn wants_state(&self) -> bool {
        true
    }
}

/// What the search that caches states relies on, shown directly (the
/// fifth way of the module's list): two runs in the same state (by its
/// hash: `drive::stepper::state`) go on alike. On random runs of every
/// built-in with up to one clock move, when a run comes to a state an
/// earlier run came to by other decisions, the earlier run's decisions up
/// to there followed by this run's from there must be a run (every
/// decision possible) with this run's outcome, but for the race a
/// violation shows. A state that leaves out something a later step reads
/// (a time compared after all, what a request heard) fails here where the
/// two prefixes differ in it.
#[test]
fn runs_in_the_same_state_go_on_alike() {
    let options = RunOptions { states: true, ..RunOptions::default() };
    let started = Instant::now();
    let mut total = 0;
    for builtin in BUILTINS {
        let scenario = builtin.scenario().unwrap();
        for strategy in Strategy::ALL {
            let prepared = Prepared::new(&scenario, strategy).unwrap();
            let mut first: HashMap<u128, Vec<Token>> = HashMap::new();
            let mut pairs = 0;
            for seed in 0..STATE_RUNS {
                let mut noting = Noting { inner: random_chooser(seed, 1), states: Vec::new(), made: 0 };
                let run = execute_run(&prepared, &mut noting, options).unwrap();
                let outcome = |run: &Execution| {
                    let outcome = outcome_of(&prepared, run, &judge(&scenario, &run.observation), options);
                    kept_by(Reduction::States, &BTreeSet::from([outcome]))
                };
                let here = outcome(&run);
                let tokens = &run.schedule.0;
                for &(made, state) in &noting.states {
                    let prefix = &tokens[..made];
                    let earlier = first.entry(state).or_insert_with(|| prefix.to_vec());
                    if earlier.as_slice() == prefix || pairs >= STATE_PAIRS {
                        continue;
                    }
                    let joined = Schedule(earlier.iter().chain(&tokens[made..]).copied().collect());
                    let at = format!(
                        "{} under {strategy}, seed {seed}: {} and {} come to one state",
                        builtin.name(),
                        Schedule(earlier.clone()),
                        Schedule(prefix.to_vec())
                    );
                    let again = execute_run(&prepared, &mut Replay::new(&joined), options)
                        .unwrap_or_else(|e| panic!("{at}, but {joined} cannot be run: {e}"));
                    assert_eq!(
                        outcome(&again),
                        here,
                        "{at}, but {joined} ends otherwise than {}",
                        run.schedule
                    );
                    pairs += 1;
                }
            }
            assert!(pairs > 0, "{} under {strategy}: no two runs came to one state", builtin.name());
            total += pairs;
        }
    }
    eprintln!(
        "{total} pairs of runs in one state, each going on alike, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Claim::new(
        "states/go-on-alike",
        "two runs in the same state (as the search that caches states hashes it) go on alike: the one's decisions \
         up to it and the other's from it make a run with the other's outcome",
        format!("every built-in under every strategy, {STATE_RUNS} random runs each with up to 1 clock move"),
        Bound::Sampled(total),
    )
    .figure("pairs", total)
    .record(started);
}

/// What the comparisons of wakeup trees with source sets claim.
const WAKEUP_CLAIM: &str =
    "where plain search does not end, wakeup trees reach every outcome source sets reach and \
                            no other, with no more runs";

/// The most runs judged a source-set search of a space plain search does
/// not end may take to be compared with wakeup trees.
const SOURCE_LIMIT: u64 = 30_000;

/// Wakeup trees against source sets on the built-in spaces plain search
/// does not end ([`NOT_COMPARED`]) whose source-set search runs whole
/// within [`SOURCE_LIMIT`]: the same outcomes, and never more runs.
#[test]
fn wakeup_trees_reach_what_source_sets_reach_where_plain_search_does_not_end() {
    let started = Instant::now();
    let (mut compared, mut source_runs, mut wakeup_runs, mut cut_short) = (0u64, 0, 0, 0);
    for &(name, strategy, max_ticks) in NOT_COMPARED {
        let prepared = Prepared::new(&builtin_scenario(name), strategy).unwrap();
        let source = exhaust(&prepared, Reduction::SourceSets, max_ticks, SOURCE_LIMIT);
        if source.completeness != Completeness::Complete {
            continue;
        }
        let wakeup = exhaust(&prepared, Reduction::WakeupTrees, max_ticks, SOURCE_LIMIT);
        let at = format!("{name} under {strategy}, {}", clock_moves(max_ticks));
        assert_eq!(wakeup.completeness, Completeness::Complete, "{at}");
        let missing: Vec<_> = source.outcomes.difference(&wakeup.outcomes).take(1).collect();
        let extra: Vec<_> = wakeup.outcomes.difference(&source.outcomes).take(1).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{at}: missing {missing:?}, not reached by source sets {extra:?}"
        );
        let (source_all, wakeup_all) =
            (source.schedules_run + source.redundant_runs, wakeup.schedules_run + wakeup.redundant_runs);
        assert!(
            wakeup_all <= source_all,
            "{at}: {wakeup_all} runs with wakeup trees, {source_all} with source sets"
        );
        compared += 1;
        source_runs += source_all;
        wakeup_runs += wakeup_all;
        cut_short += wakeup.redundant_runs;
    }
    eprintln!("{compared} spaces: {source_runs} runs with source sets, {wakeup_runs} with wakeup trees");
    assert!(compared >= 10, "only {compared} spaces ran whole within {SOURCE_LIMIT} runs with source sets");
    Claim::new(
        "wakeup-trees/not-compared-plainly",
        WAKEUP_CLAIM,
        format!(
            "the built-in spaces plain search does not end within {PLAIN_LIMIT} runs whose source-set search \
             ends within {SOURCE_LIMIT} runs judged"
        ),
        Bound::Complete,
    )
    .figure("spaces", compared)
    .figure("source_set_runs", source_runs)
    .figure("wakeup_tree_runs", wakeup_runs)
    .figure("wakeup_tree_runs_cut_short", cut_short)
    .record(started);
}

/// The space where wakeup trees judge fewer runs than source sets (see
/// `dfs/wakeup.rs`): r7 under safe with one clock move, the same outcomes.
#[test]
fn wakeup_trees_reach_what_source_sets_reach_on_r7_with_a_clock_move() {
    let started = Instant::now();
    let prepared = Prepared::new(&builtin_scenario("r7-cache-without-stripe"), Safe).unwrap();
    let source = exhaust(&prepared, Reduction::SourceSets, 1, u64::MAX);
    let wakeup = exhaust(&prepared, Reduction::WakeupTrees, 1, u64::MAX);
    assert_eq!(source.completeness, Completeness::Complete);
    assert_eq!(wakeup.completeness, Completeness::Complete);
    assert_eq!(wakeup.outcomes, source.outcomes);
    assert_eq!(wakeup.violations.len(), source.violations.len());
    assert!(wakeup.schedules_run + wakeup.redundant_runs <= source.schedules_run + source.redundant_runs);
    Claim::new(
        "wakeup-trees/r7-cache-without-stripe/safe/1",
        WAKEUP_CLAIM,
        "r7-cache-without-stripe, safe, up to 1 clock move",
        Bound::Complete,
    )
    .figure("outcomes", source.outcomes.len() as u64)
    .figure("source_sets_judged", source.schedules_run)
    .figure("source_sets_cut_short", source.redundant_runs)
    .figure("wakeup_trees_judged", wakeup.schedules_run)
    .figure("wakeup_trees_cut_short", wakeup.redundant_runs)
    .record(started);
}
