//! Exploration speed: the stepper's schedules per second on every built-in
//! scenario, the time to cover R1's plain exhaustive space and every
//! built-in's space reduced by source sets, and (built with
//! `--cfg madsim`) the madsim driver's seeds per second on R1.
//!
//! `cargo xtask bench explore` runs both builds; see BENCHMARKS.md.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use cusim::flow::Strategy;
use cusim_sim::corpus::builtin;
use cusim_sim::drive::stepper::Prepared;
use std::time::Duration;

fn prepared(name: &str, strategy: Strategy) -> Prepared {
    Prepared::new(&builtin::find(name).unwrap().scenario().unwrap(), strategy).unwrap()
}

#[cfg(not(madsim))]
fn stepper_schedules(c: &mut Criterion) {
    use cusim_sim::drive::stepper::RunOptions;
    use cusim_sim::explore::{pct_chooser, run_and_check};
    let mut group = c.benchmark_group("stepper_pct_schedule");
    group.throughput(Throughput::Elements(1));
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for builtin in builtin::BUILTINS {
        for strategy in Strategy::ALL {
            let prepared = prepared(builtin.name(), strategy);
            let mut seed = 0;
            group.bench_function(format!("{}/{strategy}", builtin.name()), |b| {
                b.iter(|| {
                    seed += 1;
                    let mut chooser = pct_chooser(&prepared, seed, 3, 1);
                    run_and_check(&prepared, &mut chooser, RunOptions::default())
                })
            });
        }
    }
    group.finish();
}

#[cfg(not(madsim))]
fn exhaustive_r1(c: &mut Criterion) {
    use cusim_sim::explore::{explore, ExploreConfig};
    let mut group = c.benchmark_group("exhaustive_r1_whole_space");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    for strategy in Strategy::ALL {
        let prepared = prepared("r1-same-id-create", strategy);
        // Plain: the figure compared over time is every order.
        let config = ExploreConfig::exhaustive(cusim_sim::explore::Reduction::None, None, 0, u64::MAX);
        group.bench_function(strategy.to_string(), |b| {
            b.iter(|| {
                let report = explore(&prepared, &config, |_| {});
                assert!(report.exhausted, "the whole space is covered");
                report
            })
        });
    }
    group.finish();
}

/// Schedules a reduced space may have for its time to be benched (larger
/// ones are named, with their size so far, and skipped).
#[cfg(not(madsim))]
const REDUCED_BUDGET: u64 = 400_000;

/// The time to exhaust each built-in's space with source sets, no
/// preemption bound and up to one clock move, under every strategy; each
/// pair prints its reduced size once.
#[cfg(not(madsim))]
fn exhaustive_reduced(c: &mut Criterion) {
    use cusim_sim::explore::{explore, Completeness, ExploreConfig, Reduction};
    let mut group = c.benchmark_group("exhaustive_reduced");
    group.sample_size(10).warm_up_time(Duration::from_millis(100)).measurement_time(Duration::from_secs(3));
    for builtin in builtin::BUILTINS {
        for strategy in Strategy::ALL {
            let prepared = prepared(builtin.name(), strategy);
            let config = ExploreConfig::exhaustive(Reduction::SourceSets, None, 1, REDUCED_BUDGET);
            let sized = explore(&prepared, &config, |_| {});
            if sized.completeness != Completeness::Complete {
                eprintln!(
                    "reduced: {}/{strategy}: over {} schedules, not benched",
                    builtin.name(),
                    sized.schedules_run
                );
                continue;
            }
            eprintln!("reduced: {}/{strategy}: {} schedules", builtin.name(), sized.schedules_run);
            group.bench_function(format!("{}/{strategy}", builtin.name()), |b| {
                b.iter(|| {
                    let report = explore(&prepared, &config, |_| {});
                    assert_eq!(report.completeness, Completeness::Complete);
                    report
                })
            });
        }
    }
    group.finish();
}

#[cfg(madsim)]
fn madsim_seeds(c: &mut Criterion) {
    use cusim_sim::drive::virtual_time::{run, Latencies};
    let mut group = c.benchmark_group("madsim_seed");
    group.throughput(Throughput::Elements(1));
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    for strategy in Strategy::ALL {
        let prepared = prepared("r1-same-id-create", strategy);
        let mut seed = 0;
        group.bench_function(format!("r1-same-id-create/{strategy}"), |b| {
            b.iter(|| {
                seed += 1;
                let runtime = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
                runtime.block_on(run(&prepared, Latencies::default()))
            })
        });
    }
    group.finish();
}

#[cfg(not(madsim))]
criterion_group!(benches, stepper_schedules, exhaustive_r1, exhaustive_reduced);
#[cfg(madsim)]
criterion_group!(benches, madsim_seeds);
criterion_main!(benches);
