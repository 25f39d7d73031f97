//! `safe` holds every invariant in every built-in scenario, under every
//! schedule (preemption-bounded where the full space is too large), and
//! under every single fault placed at any point a request reaches.

mod support;

use cusim::flow::Strategy;
use cusim_sim::corpus::builtin::BUILTINS;
use cusim_sim::drive::stepper::{execute_run, Prepared, Replay, RunOptions};
use cusim_sim::input::scenario::{FaultKind, FaultSpec, Scenario};
use cusim_sim::judge::trace::EventKind;
use support::*;

/// Spaces up to this many schedules are covered whole; beyond, the
/// exploration is bounded to 3 preemptions.
const FULL_SPACE_BUDGET: u64 = 200_000;

fn explore_safe(scenario: &Scenario, max_ticks: usize) {
    let prepared = Prepared::new(scenario, Strategy::Safe).unwrap();
    let full = cusim_sim::explore::explore(
        &prepared,
        &cusim_sim::explore::ExploreConfig {
            scheduler: cusim_sim::explore::SchedulerKind::Exhaustive { max_preemptions: None },
            schedules: FULL_SPACE_BUDGET,
            max_ticks,
            ..Default::default()
        },
        |_| {},
    );
    assert_holds(&full);
    if !full.exhausted {
        let bounded = exhaustive(scenario, Strategy::Safe, Some(3), max_ticks);
        assert_holds(&bounded);
    }
}

/// Every (request, point, occurrence) the default run of `scenario` reaches.
fn placements(scenario: &Scenario) -> Vec<(usize, cusim::backend::Point, u32)> {
    let prepared = Prepared::new(scenario, Strategy::Safe).unwrap();
    let options = RunOptions { record_trace: true, ..RunOptions::default() };
    let run = execute_run(&prepared, &mut Replay::new(&Default::default()), options).unwrap();
    let mut seen: Vec<(usize, cusim::backend::Point, u32)> = Vec::new();
    for event in &run.trace {
        if let (Some(request), EventKind::Op { point, .. }) = (event.request, &event.kind) {
            let occurrence = seen.iter().filter(|(r, p, _)| *r == request && p == point).count() as u32 + 1;
            seen.push((request, *point, occurrence));
        }
    }
    seen
}

fn sweep_faults(name: &str) {
    let base = builtin_scenario(name);
    let mut placed = 0;
    for (request, point, occurrence) in placements(&base) {
        for kind in FaultKind::ALL.into_iter().filter(|k| k.applies_to(point)) {
            let mut scenario = base.clone();
            let taken = scenario
                .faults
                .iter()
                .any(|f| (f.request, f.at, f.occurrence) == (request, point, occurrence));
            if taken {
                continue;
            }
            scenario.faults.push(FaultSpec { request, at: point, kind, occurrence });
            let report = exhaustive(&scenario, Strategy::Safe, Some(3), 0);
            assert!(
                report.violations.is_empty(),
                "{name} with {kind} at request {request}'s {point} #{occurrence}: {:#?}",
                report.violations.iter().map(|f| (&f.schedule, &f.message)).collect::<Vec<_>>()
            );
            placed += 1;
        }
    }
    assert!(placed > 0, "{name}: no fault could be placed");
}

macro_rules! everywhere {
    ($($test:ident => $name:literal),+ $(,)?) => {$(
        #[test]
        fn $test() {
            explore_safe(&builtin_scenario($name), 1);
            sweep_faults($name);
        }
    )+};
}

everywhere! {
    r1_same_id_create => "r1-same-id-create",
    r2_stale_cache => "r2-stale-cache",
    r3_crash_before_defaults => "r3-crash-before-defaults",
    r4_idless_duplicates => "r4-idless-duplicates",
    r5_double_claim => "r5-double-claim",
    r6_two_stripe_customers => "r6-two-stripe-customers",
    r7_cache_without_stripe => "r7-cache-without-stripe",
    r8_lost_usage_overwrite => "r8-lost-usage-overwrite",
    r9_lost_usage_invalidation => "r9-lost-usage-invalidation",
    w1_keyed_retry_after_lost_response => "w1-keyed-retry-after-lost-response",
    w2_cache_evicted_before_sync => "w2-cache-evicted-before-sync",
    w3_skewed_instances => "w3-skewed-instances",
    w4_stripe_window => "w4-stripe-window",
    clean_distinct_ids => "clean-distinct-ids",
    clean_same_id_two_orgs => "clean-same-id-two-orgs",
}

/// Found by the generated-scenario property: an id-less customer whose
/// creator died after phase 1 (before its paid default and Stripe
/// customer) must be made whole by the next request that reaches it, an
/// id-less create with its email.
#[test]
fn an_idless_customer_whose_creator_died_in_phase_2_is_made_whole() {
    let scenario = scenario(
        r#"{"name": "idless-phase-2-crash", "force_paid_default": true,
          "products": [{"id": "pro", "group": "main", "is_default": true, "kind": "paid", "features": {"words": 10}}],
          "requests": [{"op": "create", "id": null, "email": "bob@example.com"},
                       {"op": "track", "customer_id": "cus_a", "feature_id": "words", "value": 5}],
          "faults": [{"request": 0, "at": "set_processor", "kind": "crash"}]}"#,
    );
    explore_safe(&scenario, 1);
    // The modelled strategies leave it without its paid default.
    for strategy in [Strategy::Legacy, Strategy::Transactional] {
        assert_breaks(
            &exhaustive(&scenario, strategy, None, 0),
            &scenario,
            cusim_sim::judge::Invariant::DefaultsPresent,
        );
    }
}

/// A later seed that claims an earlier one's row does not become its
/// creator: the row is owed what its inserting seed asked for.
#[test]
fn a_seed_that_claims_an_earlier_seed_does_not_change_what_it_is_owed() {
    let scenario = scenario(
        r#"{"name": "seed-claims-seed",
          "products": [{"id": "free", "group": "main", "is_default": true, "kind": "free", "features": {"words": 10}}],
          "customers": [{"id": null, "email": "a@example.com", "disable_default": true}, {"id": "cus_1", "email": "a@example.com"}],
          "requests": [{"op": "check", "customer_id": "cus_1", "feature_id": "words"}]}"#,
    );
    for strategy in Strategy::ALL {
        let report = exhaustive(&scenario, strategy, None, 0);
        assert!(report.exhausted);
        assert_holds(&report);
    }
}

#[test]
fn every_builtin_has_a_test_here() {
    let source = include_str!("safe_everywhere.rs");
    for builtin in BUILTINS {
        assert!(source.contains(&format!("\"{}\"", builtin.name())), "{} is not swept", builtin.name());
    }
}
