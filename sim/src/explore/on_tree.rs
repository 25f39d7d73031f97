//! A search on several threads over its tree (`dfs::tree`) reports what
//! the search on one thread reports, wherever the tree ends and on any
//! number of threads.

use std::time::Instant;

use cusim::flow::Strategy;

use super::threads::on_tree;
use super::{explore, ExploreConfig, ExploreReport, Reduction};
use crate::claims::{clock_moves, Bound, Claim};
use crate::corpus::builtin::BUILTINS;
use crate::drive::stepper::Prepared;

/// The most runs judged in a space compared (larger ones are left out:
/// a search cut by its budget runs what its threads' timing gives).
const LIMIT: u64 = 400;

/// Where the tree ends (the operation of a run whose decision is its
/// last): at the first operation, the default's neighbours, and beyond
/// any run (every run one part of its own).
const SPLITS: [usize; 3] = [1, 3, 1_000];

/// Everything the search reports, its outcomes and the points its runs
/// reached, as text.
fn everything(report: &ExploreReport) -> String {
    format!(
        "{}|{:?}|{:?}|{:?}",
        serde_json::to_string(report).expect("a report serializes"),
        report.outcomes,
        report.reached,
        report.settle_reached,
    )
}

#[test]
fn the_tree_changes_nothing() {
    let started = Instant::now();
    let (mut spaces, mut searches, mut runs) = (0u64, 0u64, 0u64);
    for builtin in BUILTINS {
        let scenario = builtin.scenario().unwrap();
        for strategy in [Strategy::Legacy, Strategy::Transactional, Strategy::Safe] {
            let prepared = Prepared::new(&scenario, strategy).unwrap();
            for max_ticks in [0, 1] {
                for reduction in [Reduction::SourceSets, Reduction::SleepSets, Reduction::None] {
                    let config = ExploreConfig {
                        record_outcomes: true,
                        ..ExploreConfig::exhaustive(reduction, None, max_ticks, LIMIT)
                    };
                    let one = explore(&prepared, &config, |_| {});
                    if !one.covered {
                        continue;
                    }
                    spaces += 1;
                    runs += one.schedules_run + one.redundant_runs;
                    let eager = [(2, 8, true), (3, 8, false)];
                    for (threads, split, eager) in
                        SPLITS.map(|split| (2, split, false)).into_iter().chain(eager)
                    {
                        let many = on_tree(&prepared, &config, (threads, split, eager), |_| {});
                        searches += 1;
                        assert_eq!(
                            everything(&many),
                            everything(&one),
                            "{} under {strategy}, {}, {reduction:?}: {threads} threads over a tree that ends at \
                             each run's operation {split} (parts lending at every chance: {eager}) changed the \
                             search",
                            builtin.name(),
                            clock_moves(max_ticks)
                        );
                    }
                }
            }
        }
    }
    eprintln!(
        "{spaces} spaces ({runs} runs), {searches} searches on threads, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Claim::new(
        "threads/tree-changes-nothing",
        "an exhaustive search on threads over its tree of decisions reports exactly what it reports on one \
         thread (counts, violations and their witnesses and where they were first found, outcomes, points \
         reached), wherever the tree ends",
        format!(
            "plain, sleep sets and source sets, on every built-in under every strategy with 0 and 1 clock \
             moves, every such space that runs whole within {LIMIT} runs judged; on 2 threads with the tree \
             ending at each run's operation 1, 3 and 1,000, and at 8 with its parts lending it their decisions \
             at every chance; on 3 threads at 8"
        ),
        Bound::Complete,
    )
    .figure("spaces", spaces)
    .figure("searches", searches)
    .figure("runs", runs)
    .record(started);
}
