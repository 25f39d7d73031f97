//! Acceptance cases 16–22 and the concurrent forms of cases 4 and 9: the
//! modelled strategies break the named invariant; `safe` holds under every
//! schedule (exhaustively).

mod support;

use cusim::flow::Strategy::{Legacy, Safe, Transactional};
use cusim_sim::judge::Invariant;
use support::*;

#[test]
fn case_04_create_concurrent_same_id_interleaved() {
    let scenario = builtin_scenario("r1-same-id-create");
    assert_breaks(&exhaustive(&scenario, Legacy, None, 0), &scenario, Invariant::NoInternalError);
    let safe = exhaustive(&scenario, Safe, None, 0);
    assert!(safe.exhausted);
    assert_holds(&safe);
}

#[test]
fn case_09_create_concurrent_null_id_same_email_interleaved() {
    let scenario = builtin_scenario("r4-idless-duplicates");
    assert_breaks(&exhaustive(&scenario, Legacy, None, 0), &scenario, Invariant::UniqueCustomer);
    for strategy in [Transactional, Safe] {
        let report = exhaustive(&scenario, strategy, None, 0);
        assert!(report.exhausted);
        assert_holds(&report);
    }
}

#[test]
fn case_16_race_stale_cache_detection() {
    let scenario = builtin_scenario("r2-stale-cache");
    let legacy = exhaustive(&scenario, Legacy, None, 0);
    assert_breaks(&legacy, &scenario, Invariant::FreshCache);
    assert_breaks(&legacy, &scenario, Invariant::ResponsesSeeDefaults);
    let safe = exhaustive(&scenario, Safe, None, 1);
    assert!(safe.exhausted);
    assert_holds(&safe);
}

#[test]
fn case_17_race_concurrent_default_loop() {
    // Two default groups: a second request sees the customer between its
    // first and second attach.
    let scenario = scenario(
        r#"{"name": "default-loop", "products": [
            {"id": "free_a", "group": "a", "is_default": true, "kind": "free", "features": {"words": 10}},
            {"id": "free_b", "group": "b", "is_default": true, "kind": "free", "features": {"seats": 1}}],
          "requests": [{"op": "create", "id": "cus_1"}, {"op": "create", "id": "cus_1"}]}"#,
    );
    assert_breaks(&exhaustive(&scenario, Legacy, None, 0), &scenario, Invariant::ResponsesSeeDefaults);
    let safe = exhaustive(&scenario, Safe, None, 0);
    assert!(safe.exhausted);
    assert_holds(&safe);
}

#[test]
fn case_18_race_concurrent_same_id_api_level() {
    let scenario = builtin_scenario("r1-same-id-create");
    assert_breaks(&exhaustive(&scenario, Legacy, None, 0), &scenario, Invariant::NoInternalError);
    // Both creates succeed and name the same customer, under every schedule.
    for strategy in [Transactional, Safe] {
        let report = exhaustive(&scenario, strategy, None, 0);
        assert!(report.exhausted);
        assert_holds(&report);
    }
}

#[test]
fn case_19_race_concurrent_email_id_update() {
    let scenario = builtin_scenario("r5-double-claim");
    assert_breaks(&exhaustive(&scenario, Legacy, None, 0), &scenario, Invariant::ClaimCorrect);
    let safe = exhaustive(&scenario, Safe, None, 0);
    assert!(safe.exhausted);
    assert_holds(&safe);
}

#[test]
fn case_20_race_concurrent_stripe_customer() {
    let scenario = paid_stripe_creates();
    for strategy in [Legacy, Transactional] {
        assert_breaks(
            &exhaustive(&scenario, strategy, Some(2), 1),
            &scenario,
            Invariant::SingleStripeCustomer,
        );
    }
    let builtin = builtin_scenario("r6-two-stripe-customers");
    assert_breaks(
        &exhaustive(&builtin, Transactional, Some(2), 1),
        &builtin,
        Invariant::SingleStripeCustomer,
    );
    for scenario in [&scenario, &builtin] {
        let safe = exhaustive(scenario, Safe, Some(3), 1);
        assert_holds(&safe);
    }
}

#[test]
fn case_21_check_autocreate_concurrent_same_customer_id() {
    let scenario = scenario(
        r#"{"name": "check-autocreate", "products": [
            {"id": "free", "group": "main", "is_default": true, "kind": "free", "features": {"words": 1000}}],
          "requests": [{"op": "check", "customer_id": "cus_1", "feature_id": "words"},
                       {"op": "check", "customer_id": "cus_1", "feature_id": "words"}]}"#,
    );
    assert_breaks(&exhaustive(&scenario, Legacy, None, 0), &scenario, Invariant::ResponsesSeeDefaults);
    let safe = exhaustive(&scenario, Safe, None, 1);
    assert!(safe.exhausted);
    assert_holds(&safe);
}

#[test]
fn case_22_track_autocreate_concurrent_same_customer_id() {
    let scenario = scenario(
        r#"{"name": "track-autocreate", "products": [
            {"id": "free", "group": "main", "is_default": true, "kind": "free", "features": {"words": 1000}}],
          "requests": [{"op": "track", "customer_id": "cus_1", "feature_id": "words", "value": 3},
                       {"op": "track", "customer_id": "cus_1", "feature_id": "words", "value": 2}]}"#,
    );
    assert_breaks(&exhaustive(&scenario, Legacy, None, 0), &scenario, Invariant::UsageConserved);
    // The full space is too large (millions of schedules): bounded to 3 preemptions.
    assert_holds(&exhaustive(&scenario, Safe, Some(3), 1));
}

#[test]
fn every_race_of_the_catalog_is_found_where_spec_section_8_says() {
    for builtin in cusim_sim::corpus::builtin::BUILTINS {
        let scenario = builtin.scenario().unwrap();
        for (strategy, invariant) in builtin.expected {
            let report = pct(&scenario, *strategy, 1_000);
            assert_breaks(&report, &scenario, *invariant);
        }
    }
}
