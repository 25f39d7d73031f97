//! Gated replay: stepper schedules run on Postgres in lockstep with the
//! model. Every saved regression (each a minimal schedule that breaks an
//! invariant) and hundreds of generated (scenario, schedule) pairs must
//! agree on every operation's answer and the final state (the verdict is
//! the model's: see `cusim_sim::drive::postgres`). A disagreement prints
//! the command that replays it. The corpus tests write their claims to the
//! ledger (`cusim_sim::claims`).

use crate::generate;
use crate::support;

use std::cell::RefCell;

use cusim::backend::Point;
use cusim::flow::Strategy;
use cusim_sim::claims::{Bound, Claim};
use cusim_sim::corpus::regression::Regression;
use cusim_sim::drive::postgres::{replay_on_postgres, PgReplay, Target};
use cusim_sim::drive::stepper::{execute_run, Chooser, Prepared, Replay, RunOptions, View};
use cusim_sim::explore::pct_chooser;
use cusim_sim::input::scenario::{FaultKind, FaultSpec, Scenario};
use cusim_sim::input::schedule::{Schedule, Token};
use cusim_sim::judge::trace::EventKind;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use support::{database_url, redis_url};

/// Generated pairs per strategy (three strategies: 3 × this in all).
const PAIRS: u32 = 110;

fn replay(scenario: &Scenario, strategy: Strategy, schedule: &Schedule, schema: &str) -> PgReplay {
    replay_on(&Target::postgres(database_url()), scenario, strategy, schedule, schema)
}

/// The same with the cache on the test Redis server.
fn replay_on_redis(scenario: &Scenario, strategy: Strategy, schedule: &Schedule, schema: &str) -> PgReplay {
    let target = Target::postgres(database_url()).with_redis(Some(redis_url()));
    let report = replay_on(&target, scenario, strategy, schedule, schema);
    assert!(report.on_redis);
    report
}

fn replay_on(
    target: &Target,
    scenario: &Scenario,
    strategy: Strategy,
    schedule: &Schedule,
    schema: &str,
) -> PgReplay {
    let options = RunOptions { record_trace: true, ..RunOptions::default() };
    // Many replays in a row on one schema name: emptied, not made again.
    let target = target.clone().reusing_schema();
    let (_, report) = replay_on_postgres(&target, schema, scenario, strategy, schedule, options)
        .unwrap_or_else(|e| panic!("the replay could not run: {e}"));
    report
}

fn explain(report: &PgReplay, scenario: &Scenario, strategy: Strategy, schedule: &Schedule) -> String {
    format!(
        "Postgres disagrees with the model: {:?} (state agrees: {}, cache agrees: {}, failure: {:?}, verdict {:?})\n\
         replay: echo '{}' > /tmp/case.json && cusim replay --scenario /tmp/case.json --strategy {strategy} \
         --schedule '{schedule}' --backend postgres --database-url $DATABASE_URL",
        report.divergence,
        report.state_agrees,
        report.cache_agrees,
        report.failure,
        report.model_verdict,
        serde_json::to_string(scenario).unwrap()
    )
}

#[test]
fn every_saved_regression_replays_identically_on_postgres() {
    let started = std::time::Instant::now();
    let files = Regression::corpus().unwrap();
    assert!(files.len() >= 9, "the corpus has a case per race");
    let (mut waits, mut compared) = (0, 0);
    for (file, regression) in &files {
        let schedule = Schedule::parse(&regression.schedule).unwrap();
        let report = replay(&regression.scenario, regression.strategy, &schedule, "replay_corpus");
        assert!(
            report.agrees(),
            "{}: {}",
            file.display(),
            explain(&report, &regression.scenario, regression.strategy, &schedule)
        );
        // Postgres agreed on every answer and on the state the verdict reads.
        assert!(
            report.model_verdict.contains(&regression.invariant),
            "{}: the schedule breaks {}",
            file.display(),
            regression.invariant
        );
        waits += report.waits;
        compared += report.compared;
    }
    eprintln!("{} saved regressions agree on Postgres ({waits} lock waits parked)", files.len());
    Claim::new(
        "postgres/regressions",
        "Postgres (and Redis) answer every operation of a schedule as the model does, and commit the same state",
        "every saved regression schedule, the cache in memory",
        Bound::Complete,
    )
    .figure("schedules", files.len() as u64)
    .figure("operations", compared as u64)
    .figure("waits", waits as u64)
    .record(started);
}

/// The saved regressions again, with the cache on Redis: the cache races
/// (R2, R7, R8, R9, and the evictions of w2) happen on the real cache, and
/// every answer, the final state and the cache entries agree.
#[test]
fn every_saved_regression_replays_identically_on_postgres_and_redis() {
    let started = std::time::Instant::now();
    let files = Regression::corpus().unwrap();
    let (mut compared, mut evicting) = (0, 0);
    for (file, regression) in &files {
        let schedule = Schedule::parse(&regression.schedule).unwrap();
        let report =
            replay_on_redis(&regression.scenario, regression.strategy, &schedule, "replay_corpus_redis");
        let explained = explain(&report, &regression.scenario, regression.strategy, &schedule);
        assert!(report.agrees(), "{}: {explained}", file.display());
        assert!(report.model_verdict.contains(&regression.invariant), "{}: {explained}", file.display());
        compared += report.compared;
        evicting += usize::from(regression.scenario.faults.iter().any(|f| f.kind == FaultKind::CacheEvict));
    }
    eprintln!(
        "{} saved regressions agree on Postgres + Redis ({compared} operations compared, {evicting} with an eviction)",
        files.len()
    );
    assert!(evicting > 0, "some regression evicts a key: a real DEL");
    Claim::new(
        "postgres/regressions-redis",
        "Postgres (and Redis) answer every operation of a schedule as the model does, and commit the same state",
        "every saved regression schedule, the cache on Redis",
        Bound::Complete,
    )
    .figure("schedules", files.len() as u64)
    .figure("operations", compared as u64)
    .record(started);
}

/// Generated pairs per strategy on Postgres + Redis.
const PAIRS_ON_REDIS: u32 = 60;

/// Generated (scenario, schedule) pairs with the cache on Redis: the
/// faults at cache points are real (`cache_down` a closed connection,
/// `cache_evict` a `DEL`, `lost_response` a script that ran and whose
/// reply is dropped), and every pair agrees with the model.
#[test]
fn generated_schedules_agree_on_the_model_and_on_postgres_and_redis() {
    let mut faults: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    let mut total = 0;
    for strategy in Strategy::ALL {
        let config = Config { cases: PAIRS_ON_REDIS, failure_persistence: None, ..Config::default() };
        let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::XorShift));
        let agreed = RefCell::new(Vec::new());
        let schema = format!("replay_redis_{strategy}");
        let result = runner.run(&(generate::scenario(), any::<u64>()), |(scenario, seed)| {
            let prepared = Prepared::new(&scenario, strategy).unwrap();
            let mut chooser = pct_chooser(&prepared, seed, 3, 1);
            let schedule = execute_run(&prepared, &mut chooser, RunOptions::default()).unwrap().schedule;
            let report = replay_on_redis(&scenario, strategy, &schedule, &schema);
            prop_assert!(report.agrees(), "{}", explain(&report, &scenario, strategy, &schedule));
            let cache_faults = scenario
                .faults
                .iter()
                .filter(|f| f.at.is_cache() || matches!(f.at, Point::Deduct | Point::SyncUsage))
                .map(|f| format!("{} at {}", f.kind.as_str(), f.at));
            agreed.borrow_mut().extend(cache_faults);
            Ok(())
        });
        if let Err(failure) = result {
            panic!("{strategy} on Redis: {failure}");
        }
        for fault in agreed.into_inner() {
            *faults.entry(fault).or_default() += 1;
        }
        total += PAIRS_ON_REDIS;
    }
    eprintln!(
        "agreement on Postgres + Redis: {total} of {total} pairs; faults at cache points placed: {faults:?}"
    );
    assert!(faults.keys().any(|f| f.starts_with("cache_down")), "some pair takes the cache down: {faults:?}");
}

#[test]
fn generated_schedules_agree_on_the_model_and_on_postgres() {
    let mut total = 0u32;
    let mut waits = 0usize;
    let mut faulted = 0usize;
    let mut deadlocks = 0usize;
    for strategy in Strategy::ALL {
        let config = Config { cases: PAIRS, failure_persistence: None, ..Config::default() };
        let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
        let agreed = RefCell::new((0u32, 0usize, 0usize, 0usize));
        let schema = format!("replay_generated_{strategy}");
        let result = runner.run(&(generate::scenario(), any::<u64>()), |(scenario, seed)| {
            // The schedule: a pct run of the scenario on the model.
            let prepared = Prepared::new(&scenario, strategy).unwrap();
            let mut chooser = pct_chooser(&prepared, seed, 3, 1);
            let schedule = execute_run(&prepared, &mut chooser, RunOptions::default()).unwrap().schedule;
            let report = replay(&scenario, strategy, &schedule, &schema);
            prop_assert!(report.agrees(), "{}", explain(&report, &scenario, strategy, &schedule));
            let mut agreed = agreed.borrow_mut();
            agreed.0 += 1;
            agreed.1 += report.waits;
            agreed.2 += usize::from(!scenario.faults.is_empty());
            agreed.3 += report.deadlocks;
            Ok(())
        });
        if let Err(failure) = result {
            panic!("{strategy}: {failure}");
        }
        let (n, w, f, d) = agreed.into_inner();
        eprintln!("{strategy}: {n} of {PAIRS} generated pairs agree ({w} lock waits parked, {d} deadlocks)");
        total += n;
        waits += w;
        faulted += f;
        deadlocks += d;
    }
    eprintln!(
        "agreement: {total} of {} pairs (100%); {waits} lock waits, {deadlocks} deadlocks, {faulted} pairs with faults",
        3 * PAIRS
    );
    assert_eq!(total, 3 * PAIRS);
    assert!(waits > 0, "some generated schedules make a statement wait for a lock");
}

/// pct schedules of each built-in scenario per strategy: the scenarios are
/// made to collide, so these are the schedules with the most lock waits.
const BUILTIN_SCHEDULES: u64 = 6;

#[test]
fn built_in_scenarios_under_pct_schedules_agree_on_postgres() {
    let (mut pairs, mut waits, mut deadlocks) = (0, 0, 0);
    for builtin in cusim_sim::corpus::builtin::BUILTINS {
        let scenario = builtin.scenario().unwrap();
        for strategy in Strategy::ALL {
            let prepared = Prepared::new(&scenario, strategy).unwrap();
            for seed in 0..BUILTIN_SCHEDULES {
                let mut chooser = pct_chooser(&prepared, seed, 3, 1);
                let schedule = execute_run(&prepared, &mut chooser, RunOptions::default()).unwrap().schedule;
                let report = replay(&scenario, strategy, &schedule, "replay_builtin");
                assert!(
                    report.agrees(),
                    "{}: {}",
                    builtin.name(),
                    explain(&report, &scenario, strategy, &schedule)
                );
                pairs += 1;
                waits += report.waits;
                deadlocks += report.deadlocks;
            }
        }
    }
    eprintln!(
        "built-in scenarios: {pairs} pct schedules agree on Postgres ({waits} lock waits parked, {deadlocks} deadlocks)"
    );
    assert!(waits > 0, "the colliding scenarios make statements wait");
}

/// Follows a schedule and records what each decision offered.
struct Recording {
    replay: Replay,
    offered: Vec<Vec<usize>>,
}

impl Chooser for Recording {
    fn choose(&mut self, view: &View<'_>) -> Option<Token> {
        self.offered.push(view.runnable.to_vec());
        self.replay.choose(view)
    }
}

/// Whether the wait-for order after a release is the model's to choose
/// and Postgres follows every choice: from runs of colliding scenarios,
/// every schedule that decides otherwise at one decision where a woken
/// waiter could move (another waiter first, the releasing request first,
/// anybody else first) is replayed on Postgres and must agree.
#[test]
fn every_order_after_a_release_replays_on_postgres() {
    let (mut replayed, mut reordered, mut waits) = (0usize, 0usize, 0usize);
    for name in ["r1-same-id-create", "r4-idless-duplicates", "r5-double-claim", "r2-stale-cache"] {
        let builtin = cusim_sim::corpus::builtin::BUILTINS.iter().find(|b| b.name() == name).unwrap();
        let mut scenario = builtin.scenario().unwrap();
        // A third request like the first: two waiters for one release.
        scenario.requests.push(scenario.requests[0].clone());
        for strategy in Strategy::ALL {
            let prepared = Prepared::new(&scenario, strategy).unwrap();
            let options = RunOptions { record_trace: true, ..RunOptions::default() };
            let mut tried = std::collections::BTreeSet::new();
            for seed in 0..4 {
                let base = execute_run(&prepared, &mut pct_chooser(&prepared, seed, 3, 0), options).unwrap();
                let mut recording = Recording { replay: Replay::new(&base.schedule), offered: Vec::new() };
                execute_run(&prepared, &mut recording, options).unwrap();
                for (step, offered) in recording.offered.iter().enumerate() {
                    // Who waits as decision `step` is taken: a request whose
                    // last event so far is a wait.
                    let mut last = std::collections::BTreeMap::new();
                    for event in base.trace.iter().filter(|e| e.step.is_some_and(|s| s < step)) {
                        if let Some(request) = event.request {
                            last.insert(request, matches!(event.kind, EventKind::Wait { .. }));
                        }
                    }
                    let woken: Vec<usize> =
                        offered.iter().copied().filter(|r| last.get(r) == Some(&true)).collect();
                    if woken.is_empty() {
                        continue;
                    }
                    for &choice in offered {
                        let mut tokens = base.schedule.0[..step].to_vec();
                        tokens.push(Token::run(choice));
                        let schedule = Schedule(tokens);
                        if !tried.insert(schedule.clone()) {
                            continue;
                        }
                        let report = replay(&scenario, strategy, &schedule, "replay_wake_order");
                        assert!(
                            report.agrees(),
                            "{name}: {}",
                            explain(&report, &scenario, strategy, &schedule)
                        );
                        replayed += 1;
                        waits += report.waits;
                        reordered += usize::from(choice != woken[0]);
                    }
                }
            }
        }
    }
    eprintln!(
        "wake orders: {replayed} schedules agree on Postgres, {reordered} of them not running the first woken \
         waiter first ({waits} lock waits held)"
    );
    assert!(reordered > 0, "some schedules run someone else before the first woken waiter");
}

/// Every fault at every cache point the cache-race scenarios reach, each
/// on its own, replayed on Postgres + Redis: `cache_down` on a closed
/// connection, `lost_response` a script that ran with its reply dropped,
/// `cache_evict` a `DEL`. Each agrees with the model.
#[test]
fn every_cache_fault_of_the_cache_race_scenarios_agrees_on_redis() {
    let mut placed: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    let names = [
        "r2-stale-cache",
        "r8-lost-usage-overwrite",
        "r9-lost-usage-invalidation",
        "w1-keyed-retry-after-lost-response",
    ];
    for name in names {
        let builtin = cusim_sim::corpus::builtin::BUILTINS.iter().find(|b| b.name() == name).unwrap();
        let mut clean = builtin.scenario().unwrap();
        clean.faults.clear();
        for strategy in Strategy::ALL {
            let prepared = Prepared::new(&clean, strategy).unwrap();
            let options = RunOptions { record_trace: true, ..RunOptions::default() };
            let run = execute_run(&prepared, &mut Replay::new(&Schedule::default()), options).unwrap();
            // Each visit of a cache point by a request: (request, point, occurrence).
            let mut visits: std::collections::BTreeMap<(usize, Point), u32> =
                std::collections::BTreeMap::new();
            let mut sites = Vec::new();
            for event in &run.trace {
                let (Some(request), EventKind::Op { point, .. }) = (event.request, &event.kind) else {
                    continue;
                };
                if request >= clean.requests.len()
                    || !(point.is_cache() || matches!(point, Point::Deduct | Point::SyncUsage))
                {
                    continue;
                }
                let occurrence = visits.entry((request, *point)).or_default();
                *occurrence += 1;
                sites.push((request, *point, *occurrence));
            }
            for (request, at, occurrence) in sites {
                for kind in [FaultKind::CacheDown, FaultKind::LostResponse, FaultKind::CacheEvict] {
                    if !kind.applies_to(at) {
                        continue;
                    }
                    let mut scenario = clean.clone();
                    scenario.faults = vec![FaultSpec { request, at, kind, occurrence }];
                    let report =
                        replay_on_redis(&scenario, strategy, &Schedule::default(), "replay_cache_faults");
                    assert!(
                        report.agrees(),
                        "{name}: {}",
                        explain(&report, &scenario, strategy, &Schedule::default())
                    );
                    *placed.entry(kind.as_str()).or_default() += 1;
                }
            }
        }
    }
    eprintln!(
        "faults at cache points replayed on Postgres + Redis, each agreeing with the model: {placed:?}"
    );
    for kind in ["cache_down", "lost_response", "cache_evict"] {
        assert!(placed.get(kind).is_some_and(|n| *n > 10), "{kind}: {placed:?}");
    }
}
