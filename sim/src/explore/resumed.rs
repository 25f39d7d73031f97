//! A search that goes on from snapshots (`drive::stepper::Snapshot`)
//! makes the search that makes every run from the start, report for
//! report.

use std::time::Instant;

use cusim::flow::Strategy;

use super::{explore, ExploreConfig, ExploreReport, Reduction};
use crate::claims::{clock_moves, Bound, Claim};
use crate::corpus::builtin::BUILTINS;
use crate::drive::stepper::Prepared;
use crate::input::scenario::Scenario;

/// The most runs judged per search (a search cut there is compared where
/// it was cut): the state cache's, and the others' (plain search's spaces
/// are the largest).
const LIMIT: u64 = 5_000;
const SLEEP_LIMIT: u64 = 1_000;
const PLAIN_LIMIT: u64 = 300;

/// Everything the search reports, its outcomes and the points its runs
/// reached with it, as text.
fn everything(report: &ExploreReport) -> String {
    format!(
        "{}|{:?}|{:?}|{:?}|{:?}",
        serde_json::to_string(report).expect("a report serializes"),
        report.outcomes,
        report.reached,
        report.settle_reached,
        report.groups
    )
}

fn searched(prepared: &Prepared, reduction: Reduction, max_ticks: usize, snapshots: bool) -> ExploreReport {
    let mut config = ExploreConfig {
        record_outcomes: true,
        ..ExploreConfig::exhaustive(reduction, None, max_ticks, limit(reduction))
    };
    config.run.snapshots = snapshots;
    explore(prepared, &config, |_| {})
}

fn limit(reduction: Reduction) -> u64 {
    match reduction {
        Reduction::None => PLAIN_LIMIT,
        Reduction::SleepSets | Reduction::SourceSets | Reduction::WakeupTrees => SLEEP_LIMIT,
        Reduction::States => LIMIT,
    }
}

fn three_requests(name: &str) -> Scenario {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../fixtures/three-requests/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Scenario::parse(&text, &path).unwrap()
}

#[test]
fn snapshots_change_nothing() {
    let started = Instant::now();
    let mut spaces: Vec<(String, Scenario, Strategy, usize)> = Vec::new();
    for builtin in BUILTINS {
        let scenario = builtin.scenario().unwrap();
        for strategy in [Strategy::Legacy, Strategy::Transactional, Strategy::Safe] {
            for max_ticks in [0, 1] {
                // The clean built-ins with a clock move under the strategies
                // that do not version their writes took 20 of the 34 s the
                // states cached took on every space; each is one more of
                // what the others show.
                let clean = builtin.name().starts_with("clean-");
                if clean && max_ticks == 1 && strategy != Strategy::Safe {
                    continue;
                }
                spaces.push((builtin.name().to_owned(), scenario.clone(), strategy, max_ticks));
            }
        }
    }
    let name = "three-same-id-creates";
    spaces.push((name.to_owned(), three_requests(name), Strategy::Safe, 1));
    let (mut runs, mut resumed, mut whole) = (0, 0, 0);
    for (name, scenario, strategy, max_ticks) in &spaces {
        let prepared = Prepared::new(scenario, *strategy).unwrap();
        for reduction in [
            Reduction::None,
            Reduction::SleepSets,
            Reduction::SourceSets,
            Reduction::WakeupTrees,
            Reduction::States,
        ] {
            let from_start = searched(&prepared, reduction, *max_ticks, false);
            let from_snapshots = searched(&prepared, reduction, *max_ticks, true);
            assert_eq!(
                everything(&from_snapshots),
                everything(&from_start),
                "{name} under {strategy}, {}: going on from snapshots changed the search",
                clock_moves(*max_ticks)
            );
            runs += from_start.schedules_run + from_start.redundant_runs;
            resumed += 1;
            whole += u64::from(from_start.covered);
        }
    }
    eprintln!(
        "{resumed} searches ({whole} whole), {runs} runs each way, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Claim::new(
        "snapshots/change-nothing",
        "an exhaustive search that goes on from snapshots reports exactly what it reports making every \
         run from the start (counts, violations and their witnesses, outcomes, points reached)",
        format!(
            "plain, sleep sets, source sets, wakeup trees and states cached, on every built-in under every \
             strategy with 0 and 1 clock moves (the clean ones with 1 under safe alone) and three same-id \
             creates under safe with 1; each up to {LIMIT} runs judged with states, {SLEEP_LIMIT} with sleep \
             sets, source sets or wakeup trees, {PLAIN_LIMIT} plain"
        ),
        Bound::Complete,
    )
    .figure("searches", resumed)
    .figure("whole", whole)
    .figure("runs", runs)
    .record(started);
}
