//! The flows in virtual time (madsim): seeded latencies and stalls reach
//! the windows that depend on the clock. Built only with
//! `RUSTFLAGS="--cfg madsim"` (`cargo xtask test madsim`).
//!
//! - `safe` holds every invariant for every seed: run it for many with
//!   `MADSIM_TEST_NUM=1000`, replay one with `MADSIM_TEST_SEED=N`, and check
//!   that a seed gives the same run twice with
//!   `MADSIM_TEST_CHECK_DETERMINISM=1`.
//! - `legacy` is caught in each time window, and the seed that shows it
//!   gives the same run again.
#![cfg(madsim)]

use cusim::flow::Strategy;
use cusim_sim::corpus::builtin::{self, BUILTINS};
use cusim_sim::drive::stepper::Prepared;
use cusim_sim::drive::virtual_time::{run, Latencies, VirtualRun};
use cusim_sim::judge::Invariant;

fn prepared(name: &str, strategy: Strategy) -> Prepared {
    let scenario = builtin::find(name).unwrap().scenario().unwrap();
    Prepared::new(&scenario, strategy).unwrap()
}

fn broken(run: &VirtualRun) -> Vec<Invariant> {
    run.judged.violations.iter().map(|v| v.invariant).collect()
}

#[madsim::test]
async fn safe_holds_every_invariant_in_virtual_time() {
    for builtin in BUILTINS {
        let prepared = prepared(builtin.name(), Strategy::Safe);
        let run = run(&prepared, Latencies::default()).await;
        assert!(
            run.judged.violations.is_empty(),
            "{} under safe: {:#?}",
            builtin.name(),
            run.judged.violations.iter().map(|v| (v.invariant, &v.message)).collect::<Vec<_>>()
        );
    }
}

/// The seed (from 0) at which `strategy` first breaks `invariant` on
/// `scenario` in virtual time, within `seeds` seeds.
fn first_seed(
    scenario: &str,
    strategy: Strategy,
    invariant: Invariant,
    seeds: u64,
) -> Option<(u64, VirtualRun)> {
    let prepared = prepared(scenario, strategy);
    (0..seeds).find_map(|seed| {
        let runtime = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        let run = runtime.block_on(run(&prepared, Latencies::default()));
        broken(&run).contains(&invariant).then_some((seed, run))
    })
}

#[test]
fn legacy_is_caught_in_every_time_window_and_its_seed_replays() {
    let windows = [
        // Two Stripe customers: the creates call Stripe in different 5 s buckets.
        ("r6-two-stripe-customers", Strategy::Legacy, Invariant::SingleStripeCustomer),
        // Usage lost between the cache deduct and the batched sync.
        ("r9-lost-usage-invalidation", Strategy::Legacy, Invariant::UsageConserved),
        // A filler slower than the stale-write guard's 1 s writes an old customer back.
        ("r2-stale-cache", Strategy::Transactional, Invariant::FreshCache),
    ];
    for (scenario, strategy, invariant) in windows {
        let (seed, found) = first_seed(scenario, strategy, invariant, 500)
            .unwrap_or_else(|| panic!("{scenario} under {strategy}: no seed in 500 broke {invariant}"));
        eprintln!(
            "{scenario} under {strategy}: {invariant} at seed {seed} ({} ops, {} virtual ms)",
            found.operations, found.elapsed_ms
        );
        // The same seed, again: the same run.
        let runtime = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        let again = runtime.block_on(run(&prepared(scenario, strategy), Latencies::default()));
        assert_eq!(again.outcomes, found.outcomes, "{scenario}: seed {seed} replays");
        assert_eq!(broken(&again), broken(&found));
        assert_eq!((again.operations, again.elapsed_ms), (found.operations, found.elapsed_ms));
    }
}
