//! Sharded explorations: the N parts of a run together are exactly the
//! run. Their schedule counts add up to its count, and they find the same
//! violations (by symptom) and reach the same outcomes. An exhaustive
//! search on N threads (each a shard) reports what it reports on one.

use std::collections::BTreeSet;

use cusim::flow::Strategy;
use cusim_sim::corpus::builtin::BUILTINS;
use cusim_sim::drive::stepper::Prepared;
use cusim_sim::drive::stepper::{execute_run, Replay, RunOptions};
use cusim_sim::explore::{
    explore, explore_on, Completeness, ExploreConfig, ExploreReport, Reduction, SchedulerKind, Shard,
};
use cusim_sim::input::schedule::Schedule;
use cusim_sim::judge::judge;
use cusim_sim::judge::races::Symptom;

fn prepared(name: &str, strategy: Strategy) -> Prepared {
    let builtin = BUILTINS.iter().find(|b| b.name() == name).expect("a built-in");
    Prepared::new(&builtin.scenario().unwrap(), strategy).unwrap()
}

fn symptoms(report: &ExploreReport) -> BTreeSet<Symptom> {
    report.violations.iter().map(|f| f.symptom()).collect()
}

/// Runs `config` whole and in `count` shards, and compares.
fn check(prepared: &Prepared, config: &ExploreConfig, count: usize) {
    let whole = explore(prepared, config, |_| {});
    let parts: Vec<ExploreReport> = (0..count)
        .map(|index| {
            let shard = Shard { index, count };
            explore(prepared, &ExploreConfig { shard: Some(shard), ..config.clone() }, |_| {})
        })
        .collect();
    let what = format!("{} under {} in {count} shards", prepared.scenario.name, prepared.strategy);
    let counts: Vec<u64> = parts.iter().map(|p| p.schedules_run).collect();
    assert_eq!(counts.iter().sum::<u64>(), whole.schedules_run, "{what}: counts {counts:?}");
    assert!(counts.iter().filter(|&&c| c > 0).count() > 1, "{what}: one shard did everything: {counts:?}");
    let found: BTreeSet<Symptom> = parts.iter().flat_map(symptoms).collect();
    assert_eq!(found, symptoms(&whole), "{what}");
    let outcomes: BTreeSet<String> = parts.iter().flat_map(|p| p.outcomes.iter().cloned()).collect();
    assert_eq!(outcomes, whole.outcomes, "{what}");
    assert!(parts.iter().all(|p| p.completeness == whole.completeness), "{what}");
    eprintln!("{what}: {} schedules whole, {counts:?} in shards", whole.schedules_run);
}

#[test]
fn exhaustive_shards_together_are_the_whole_search() {
    for (name, strategy, reduction, max_ticks) in [
        ("r1-same-id-create", Strategy::Legacy, Reduction::SourceSets, 1),
        ("r2-stale-cache", Strategy::Transactional, Reduction::SourceSets, 0),
        ("r9-lost-usage-invalidation", Strategy::Safe, Reduction::SourceSets, 1),
        ("r8-lost-usage-overwrite", Strategy::Legacy, Reduction::SleepSets, 1),
        ("r4-idless-duplicates", Strategy::Safe, Reduction::None, 0),
    ] {
        let config = ExploreConfig {
            record_outcomes: true,
            ..ExploreConfig::exhaustive(reduction, None, max_ticks, 1_000_000)
        };
        for count in [2, 3] {
            check(&prepared(name, strategy), &config, count);
        }
    }
}

#[test]
fn seeded_shards_are_ranges_of_the_seeds() {
    for scheduler in [SchedulerKind::Pct { depth: 3 }, SchedulerKind::Random] {
        let config = ExploreConfig { record_outcomes: true, ..ExploreConfig::sampled(scheduler, 301, 1) };
        check(&prepared("r8-lost-usage-overwrite", Strategy::Legacy), &config, 4);
    }
    let shard = Shard::parse("2/4").unwrap();
    assert_eq!(shard.range(10), 2..5);
    assert_eq!((0..4).map(|i| Shard { index: i, count: 4 }.range(10).count()).sum::<usize>(), 10);
    for bad in ["0/2", "3/2", "1", "a/b", "1/0", ""] {
        assert!(Shard::parse(bad).is_err(), "{bad:?} was accepted");
    }
}

/// The whole report, as the command line prints it (`--json`), and what
/// it keeps beside: the outcomes and the points reached.
fn everything(report: &ExploreReport) -> String {
    let json = serde_json::to_string_pretty(report).expect("reports serialize");
    format!("{json}\n{:?}\n{:?}\n{:?}", report.outcomes, report.reached, report.settle_reached)
}

#[test]
fn an_exhaustive_search_on_threads_reports_what_it_reports_on_one() {
    // Violations found many times over (legacy, transactional), with
    // witnesses of equal length to choose between, and a proof (safe).
    for (name, strategy, reduction, max_ticks) in [
        ("r1-same-id-create", Strategy::Legacy, Reduction::SourceSets, 1),
        ("r2-stale-cache", Strategy::Legacy, Reduction::SourceSets, 1),
        ("r6-two-stripe-customers", Strategy::Transactional, Reduction::SourceSets, 1),
        ("r8-lost-usage-overwrite", Strategy::Legacy, Reduction::SleepSets, 1),
        ("r9-lost-usage-invalidation", Strategy::Legacy, Reduction::None, 0),
        ("r9-lost-usage-invalidation", Strategy::Safe, Reduction::SourceSets, 1),
    ] {
        let prepared = prepared(name, strategy);
        let config = ExploreConfig {
            record_outcomes: true,
            ..ExploreConfig::exhaustive(reduction, None, max_ticks, 1_000_000)
        };
        let one = explore(&prepared, &config, |_| {});
        assert!(one.exhausted, "{name}: the space runs whole");
        assert!(strategy == Strategy::Safe || !one.violations.is_empty(), "{name} under {strategy}");
        for threads in [2, 3] {
            let many = explore_on(&prepared, &config, threads, |_| {});
            assert_eq!(everything(&many), everything(&one), "{name} under {strategy} on {threads} threads");
        }
        // In a shard, the threads report what the shard reports.
        let shard = ExploreConfig { shard: Some(Shard { index: 1, count: 2 }), ..config.clone() };
        let one = explore(&prepared, &shard, |_| {});
        let many = explore_on(&prepared, &shard, 2, |_| {});
        assert_eq!(everything(&many), everything(&one), "{name} under {strategy}, shard 2/2 on 2 threads");
    }
}

#[test]
fn a_search_cut_by_its_budget_on_threads_says_so_and_its_witnesses_replay() {
    let prepared = prepared("r7-cache-without-stripe", Strategy::Legacy);
    let config = ExploreConfig::exhaustive(Reduction::SourceSets, None, 1, 500);
    let cut = explore_on(&prepared, &config, 2, |_| {});
    assert_eq!(cut.completeness, Completeness::Partial);
    assert!(!cut.exhausted && cut.schedules_run > 500, "each thread runs up to the budget");
    assert!(!cut.violations.is_empty());
    for found in &cut.violations {
        let schedule = Schedule::parse(&found.schedule).unwrap();
        let run = execute_run(&prepared, &mut Replay::new(&schedule), RunOptions::default()).unwrap();
        let broken = judge(&prepared.scenario, &run.observation);
        assert!(broken.iter().any(|v| v.invariant == found.invariant), "{}: {found:?}", found.schedule);
    }
}
