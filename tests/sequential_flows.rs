//! Check, track and faults, one request at a time: what each strategy
//! leaves behind when a request dies part-way (R3 needs no concurrency).

mod support;

use cusim::backend::mem::{Fault, FaultAction, Finished};
use cusim::backend::{CacheKey, Point};
use cusim::flow::{Request, Response, Strategy};
use cusim::model::{ApiError, Catalog, CustomerData, ErrorCode, ProductKind, Scope};
use support::*;

fn trial_catalog() -> Catalog {
    Catalog::new(vec![product("pro_trial", "main", ProductKind::Trial, &[("words", 5000)])], false)
}

#[test]
fn check_auto_creates_with_customer_data_and_computes_allowed() {
    for_each_strategy(|strategy| {
        let mut sim = Sim::new(strategy, free_catalog());
        let request = Request::Check {
            customer_id: "auto".into(),
            feature_id: "words".into(),
            required_balance: 1000,
            customer_data: Some(data(Some("Auto"), Some("auto@example.com"))),
            auto_create: true,
            org: None,
            env: None,
        };
        let Response::Check(check) = sim.run(&request).unwrap() else { panic!("a check response") };
        assert!(check.allowed, "1000 granted covers 1000 required");
        assert_eq!(check.customer.customer.name.as_deref(), Some("Auto"));
        assert_eq!(attached(&check.customer), vec![("main".into(), "free".into())]);
        let Request::Check { required_balance, .. } = &mut request.clone() else { unreachable!() };
        assert_eq!(*required_balance, 1000);

        let Response::Check(check) = sim.run(&Request::check("auto", "unknown_feature")).unwrap() else {
            panic!("a check response")
        };
        assert!(!check.allowed, "no balance of an unknown feature");
        assert_eq!(sim.rows_with_id("auto"), 1);
    });
}

#[test]
fn tracked_usage_reaches_the_database_and_the_cache_agrees() {
    for_each_strategy(|strategy| {
        let mut sim = Sim::new(strategy, free_catalog());
        sim.run(&Request::track("user", "words", 3)).unwrap();
        sim.run(&Request::track("user", "words", 2)).unwrap();
        let read = sim.customer(&Request::get("user"));
        assert_eq!(read.balances["words"].usage, 5);
        let db = sim.world.committed_full(read.internal_id()).unwrap();
        assert_eq!(db.balances["words"].usage, 5, "usage accepted is in the DB");
        for (_, cached) in sim.world.cache_entries() {
            assert_eq!(cached, &db, "the cache agrees with the DB");
        }
        let Response::Check(check) = sim.run(&Request::check("user", "words")).unwrap() else { panic!() };
        assert_eq!(check.balance.unwrap().remaining(), 995);
    });
}

#[test]
fn filling_an_empty_name_invalidates_the_cached_customer() {
    for_each_strategy(|strategy| {
        let mut sim = Sim::new(strategy, free_catalog());
        sim.run(&Request::check("nameless", "words")).unwrap();
        sim.run(&Request::get("nameless")).unwrap();
        let key = CacheKey { scope: Scope::default(), id: "nameless".into() };
        let named = Request::Check {
            customer_id: "nameless".into(),
            feature_id: "words".into(),
            required_balance: 1,
            customer_data: Some(data(Some("Named"), None)),
            auto_create: true,
            org: None,
            env: None,
        };
        let response = sim.run(&named).unwrap();
        assert_eq!(response.customer().customer.name.as_deref(), Some("Named"));
        let cached = sim.world.cache_entries().find(|(k, _)| **k == key).map(|(_, c)| c.clone());
        assert!(
            cached.is_none_or(|c| c.customer.name.as_deref() == Some("Named")),
            "no stale name left in the cache"
        );
        let again = sim.run(&named).unwrap();
        assert_eq!(again.customer().customer.name.as_deref(), Some("Named"), "a filled name stays");
    });
}

#[test]
fn r3_legacy_crash_before_attach_leaves_defaults_missing_for_good() {
    let mut sim = Sim::new(Strategy::Legacy, free_catalog());
    let request = create(Some("crashy"), None, None);
    assert_eq!(
        sim.run_crashing_at(&request, Point::AttachDefault),
        Finished::Crashed { at: Point::AttachDefault }
    );
    assert_eq!(sim.rows_with_id("crashy"), 1, "legacy's insert committed on its own");
    let retried = sim.customer(&request);
    assert!(retried.products.is_empty(), "the retry sees \"exists\" and attaches nothing");
    assert!(sim.customer(&Request::get("crashy")).products.is_empty());
}

#[test]
fn transactional_and_safe_roll_a_crashed_phase_1_back() {
    for strategy in [Strategy::Transactional, Strategy::Safe] {
        for point in [Point::Insert, Point::AttachDefault, Point::Commit] {
            let mut sim = Sim::new(strategy, free_catalog());
            let request = create(Some("crashy"), None, None);
            assert!(matches!(sim.run_crashing_at(&request, point), Finished::Crashed { .. }));
            assert_eq!(sim.rows_with_id("crashy"), 0, "{strategy} crashed at {point}: nothing committed");
            assert!(sim.world.is_quiescent());
            let retried = sim.customer(&request);
            assert_eq!(
                attached(&retried),
                vec![("main".into(), "free".into())],
                "{strategy}: retry is whole"
            );
        }
    }
}

#[test]
fn safe_heals_a_customer_whose_creator_died_after_commit() {
    let mut sim = Sim::new(Strategy::Safe, trial_catalog());
    let request = create(Some("half"), None, None);
    assert!(matches!(sim.run_crashing_at(&request, Point::StripeCreate), Finished::Crashed { .. }));
    let committed = sim.world.committed_customers();
    assert_eq!(committed.len(), 1);
    assert_eq!(committed[0].processor, None, "died before its Stripe customer");

    let healed = sim.customer(&Request::get("half"));
    assert_eq!(attached(&healed), vec![("main".into(), "pro_trial".into())]);
    let stripe = sim.world.stripe_customers();
    assert_eq!(stripe.len(), 1);
    assert_eq!(healed.customer.processor.as_deref(), Some(stripe[0].id.as_str()));
}

#[test]
fn transactional_leaves_a_customer_without_stripe_when_phase_2_dies() {
    let mut sim = Sim::new(Strategy::Transactional, trial_catalog());
    let request = create(Some("half"), None, None);
    assert!(matches!(sim.run_crashing_at(&request, Point::StripeCreate), Finished::Crashed { .. }));
    let read = sim.customer(&Request::get("half"));
    assert_eq!(read.customer.processor, None, "nobody finishes phase 2");
    assert!(sim.world.stripe_customers().is_empty());
}

#[test]
fn a_stripe_timeout_after_success_is_retried_only_by_safe() {
    for strategy in Strategy::ALL {
        let mut sim = Sim::new(strategy, trial_catalog());
        // Safe searches Stripe before it creates: its create is its second Stripe call.
        let create_call = if strategy == Strategy::Safe { 2 } else { 1 };
        let mut calls = 0;
        let outcome = sim.run_with(&create(Some("timeout"), None, None), |point| {
            calls += u32::from(point == Point::StripeCreate);
            (point == Point::StripeCreate && calls == create_call)
                .then_some(FaultAction::Inject(Fault::LostResponse))
        });
        let Finished::Done(result) = outcome else { panic!("no crash was injected") };
        match strategy {
            Strategy::Safe => {
                let customer = result.expect("safe retries the same idempotency key");
                assert_eq!(sim.world.stripe_customers().len(), 1);
                assert_eq!(
                    customer.customer().customer.processor.as_deref(),
                    Some(sim.world.stripe_customers()[0].id.as_str())
                );
            }
            _ => {
                let error = result.expect_err("the timeout surfaces");
                assert_eq!(error.code, ErrorCode::StripeError);
                assert_eq!(sim.world.stripe_customers().len(), 1, "created, but never recorded");
            }
        }
    }
}

#[test]
fn an_injected_database_fault_is_a_retryable_503() {
    for_each_strategy(|strategy| {
        let mut sim = Sim::new(strategy, free_catalog());
        let outcome = sim.run_with(&create(Some("faulty"), None, None), |point| {
            (point == Point::Insert).then_some(FaultAction::Inject(Fault::DbError))
        });
        let Finished::Done(Err(error)) = outcome else { panic!("the fault surfaces") };
        assert_eq!((error.code, error.http_status()), (ErrorCode::DbUnavailable, 503));
        assert!(error.code.is_retryable());
        assert!(sim.world.is_quiescent());
        assert_eq!(attached(&sim.customer(&create(Some("faulty"), None, None))).len(), 1);
    });
}

#[test]
fn pre_existing_customers_in_two_orgs_are_separate() {
    for_each_strategy(|strategy| {
        let mut sim = Sim::new(strategy, free_catalog());
        let mut other = Request::create(Some("shared"), CustomerData::default());
        if let Request::Create { org, .. } = &mut other {
            *org = Some("org_2".into());
        }
        let a = sim.customer(&create(Some("shared"), None, None));
        let b = sim.customer(&other);
        assert_ne!(a.customer.internal_id, b.customer.internal_id);
        assert_eq!(b.customer.org_id, "org_2");
        assert!(sim.world.isolation_breaches().is_empty());
    });
}

#[test]
fn check_and_track_without_auto_create_find_or_report_the_customer_missing() {
    for_each_strategy(|strategy| {
        let mut sim = Sim::new(strategy, free_catalog());
        let without = |request: Request| match request {
            Request::Check { customer_id, feature_id, required_balance, customer_data, org, env, .. } => {
                Request::Check {
                    customer_id,
                    feature_id,
                    required_balance,
                    customer_data,
                    auto_create: false,
                    org,
                    env,
                }
            }
            Request::Track { customer_id, feature_id, value, customer_data, org, env, .. } => {
                Request::Track { customer_id, feature_id, value, customer_data, auto_create: false, org, env }
            }
            other => other,
        };
        for request in [Request::check("ghost", "words"), Request::track("ghost", "words", 2)] {
            let error = sim.run(&without(request)).expect_err("no customer, no auto-create");
            assert_eq!(error, ApiError::not_found("ghost"));
        }
        assert!(sim.world.committed_customers().is_empty(), "{strategy}: nothing was created");
        sim.run(&Request::create(Some("known"), CustomerData::default())).unwrap();
        let Response::Track(track) = sim.run(&without(Request::track("known", "words", 2))).unwrap() else {
            panic!("a track response")
        };
        assert_eq!(track.value, 2);
        let Response::Check(check) = sim.run(&without(Request::check("known", "words"))).unwrap() else {
            panic!("a check response")
        };
        assert_eq!(check.balance.map(|b| b.usage), Some(2), "{strategy}");
    });
}
