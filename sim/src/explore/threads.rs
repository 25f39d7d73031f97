//! One exhaustive search on several threads, reporting what the search
//! on one thread reports.
//!
//! The threads divide the units of work `--shard` divides (the subtrees
//! below each run's first operation; see `dfs`), taking them as they come:
//! every thread meets every unit, in the same order, and runs the subtree
//! of each unit it meets before any other thread (and only probes the
//! others', as a shard does), so a thread that finished a large subtree
//! takes the next one nobody has, and none waits while work is left. What
//! each unit's subtree runs depends only on the decisions before it, which
//! every thread makes alike, so the threads together run exactly the
//! search's schedules, whichever thread takes which unit: the counts,
//! outcomes, points reached and redundant runs add up to the whole
//! search's. What depends on the
//! order runs are made in (which witness of a symptom is kept among equally
//! short ones, and `found_after`, the run that first broke it) is put back
//! in the whole search's order: every run's group (`Dfs::group`) is
//! consecutive in that order and made by one thread, in the order that
//! thread made it, so the groups' sizes place each thread's runs. The report
//! is thus the one-thread report, whatever the thread timing and however
//! many threads, whenever the search runs whole within its budget (which a
//! proof needs). A budget that cuts the search applies to each thread: the
//! threads together may run up to `T` times it, and which runs a cut
//! search made depends on the threads' timing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use crate::drive::stepper::Prepared;
use crate::judge::races::Symptom;

use super::dfs::tree::{self, Shared};
use super::{
    explore, explore_sharing, Completeness, ExploreConfig, ExploreReport, Found, RunAt, SchedulerKind,
};

/// How often (in runs) a thread reports its progress (a power of two, as
/// the command line's own step is).
const PROGRESS_EVERY: u64 = 1_024;

/// [`explore`] on `threads` threads (an exhaustive search; a sample, a
/// search that stops at its first violation, one under a reduction that
/// runs whole, or one thread, runs as [`explore`] does). `progress`
/// hears the runs made so far, in steps of 1,024.
pub fn explore_on(
    prepared: &Prepared,
    config: &ExploreConfig,
    threads: usize,
    progress: impl FnMut(u64),
) -> ExploreReport {
    let exhaustive = matches!(config.scheduler, SchedulerKind::Exhaustive { .. });
    if threads <= 1 || !exhaustive || config.stop_at_first || config.reduction.runs_whole() {
        return explore(prepared, config, progress);
    }
    if tree::runs_on_tree(config) {
        return on_tree(prepared, config, (threads, tree::SPLIT_OPERATIONS, false), progress);
    }
    // Within a shard, the threads take the shard's units.
    let taken = Arc::new(AtomicU64::new(0));
    let parts = on_threads(threads, progress, |t, tick| {
        explore_sharing(prepared, config, Some((Arc::clone(&taken), t == 0)), |_| tick())
    });
    merge(config, parts)
}

/// `body` on `threads` threads (the `t`-th told `t`), each telling its
/// `tick` of every run it makes; `progress` hears the runs all made so
/// far, in steps of 1,024. What each thread's `body` gave, in order.
fn on_threads<R: Send>(
    threads: usize,
    mut progress: impl FnMut(u64),
    body: impl Fn(usize, &(dyn Fn() + Sync)) -> R + Sync,
) -> Vec<R> {
    let made = AtomicU64::new(0);
    let (sender, heard) = mpsc::channel::<u64>();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (sender, made, body) = (sender.clone(), &made, &body);
                scope.spawn(move || {
                    let tick = move || {
                        if (made.fetch_add(1, Ordering::Relaxed) + 1) % PROGRESS_EVERY == 0 {
                            // The receiver outlives every thread.
                            let _ = sender.send(PROGRESS_EVERY);
                        }
                    };
                    body(t, &tick)
                })
            })
            .collect();
        drop(sender);
        let mut total = 0;
        for step in heard {
            total += step;
            progress(total);
        }
        handles.into_iter().map(|h| h.join().expect("a search thread does not panic")).collect()
    })
}

/// [`explore_on`] over the search's tree (`dfs::tree`), which ends at
/// each run's `split`-th operation (its parts lending it decisions
/// whenever they can when `eager`): its parts, in the search's order, are
/// each one group.
pub(super) fn on_tree(
    prepared: &Prepared,
    config: &ExploreConfig,
    (threads, split, eager): (usize, usize, bool),
    progress: impl FnMut(u64),
) -> ExploreReport {
    let shared = Arc::new(Shared::new(config, (split, eager)));
    on_threads(threads, progress, |_, tick| shared.work(prepared, config, tick));
    let (mut parts, pruned) = shared.finish();
    for (group, part) in parts.iter_mut().enumerate() {
        let group = group as u64;
        part.groups = part.groups.values().map(|&runs| (group, runs)).collect();
        for found in &mut part.violations {
            found.first_run.group = group;
            found.witness_run.group = group;
        }
    }
    let mut merged = merge(config, parts);
    merged.exhausted &= !pruned;
    merged.completeness = Completeness::of(config, merged.exhausted, merged.covered);
    merged
}

/// The whole search's report from its threads' `parts`.
fn merge(config: &ExploreConfig, parts: Vec<ExploreReport>) -> ExploreReport {
    // Where each group starts in the whole search's order.
    let mut groups: BTreeMap<u64, u64> = BTreeMap::new();
    for part in &parts {
        for (&group, &runs) in &part.groups {
            assert!(groups.insert(group, runs).is_none(), "group {group} was run by two threads");
        }
    }
    let mut before = 0;
    let starts: BTreeMap<u64, u64> = groups
        .iter()
        .map(|(&group, &runs)| {
            let start = before;
            before += runs;
            (group, start)
        })
        .collect();
    // The run's number in the whole search, from 1.
    let number = |at: RunAt| starts[&at.group] + at.offset + 1;
    let mut found: BTreeMap<Symptom, Found> = BTreeMap::new();
    let (exhausted, covered) = (parts.iter().all(|p| p.exhausted), parts.iter().all(|p| p.covered));
    let mut merged = ExploreReport {
        scenario: parts[0].scenario.clone(),
        strategy: parts[0].strategy,
        scheduler: parts[0].scheduler.clone(),
        schedules_run: 0,
        exhausted,
        covered,
        violations: Vec::new(),
        availability: Default::default(),
        reached: Default::default(),
        settle_reached: Default::default(),
        reduction: parts[0].reduction,
        completeness: Completeness::of(config, exhausted, covered),
        shard: config.shard,
        redundant_runs: 0,
        // A search that caches states runs on one thread.
        states_met: None,
        longest_schedule: 0,
        longest_run: None,
        outcomes: Default::default(),
        groups,
    };
    for part in parts {
        merged.schedules_run += part.schedules_run;
        merged.redundant_runs += part.redundant_runs;
        merged.longest_schedule = merged.longest_schedule.max(part.longest_schedule);
        merged.availability.add(part.availability);
        merged.reached.extend(part.reached);
        merged.settle_reached.extend(part.settle_reached);
        merged.outcomes.extend(part.outcomes);
        for candidate in part.violations {
            let candidate = Found { first_at: number(candidate.first_run), ..candidate };
            let symptom = candidate.symptom();
            let kept = match found.remove(&symptom) {
                None => candidate,
                Some(kept) => {
                    let first = |f: &Found| (f.first_at, f.first_run);
                    let (first_at, first_run) = first(&kept).min(first(&candidate));
                    // The better witness, and the earlier of two as good.
                    let rank = |f: &Found| (f.key(), number(f.witness_run));
                    let best = if rank(&candidate) < rank(&kept) { candidate } else { kept };
                    Found { first_at, first_run, ..best }
                }
            };
            found.insert(symptom, kept);
        }
    }
    merged.violations = found.into_values().collect();
    merged
}
