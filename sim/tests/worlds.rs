//! The wider world: each built-in `w*` scenario breaks the modelled
//! strategies only because of the world it adds (a lost response with a
//! keyed retry, an eviction, a skewed clock, a 24 h clock move), and
//! `safe` holds in it. Each test also runs the same scenario without that
//! world and shows the break goes away, so the world is what it tests.

mod support;

use cusim::backend::mem::APPLIED_KEY_WINDOW_MS;
use cusim::flow::{Response, Strategy};
use cusim_sim::claims::{Bound, Claim};
use cusim_sim::drive::stepper::{execute_run, Execution, Prepared, Replay, RunOptions};
use cusim_sim::explore::{Completeness, ExploreConfig, Reduction};
use cusim_sim::input::scenario::Scenario;
use cusim_sim::input::schedule::{Schedule, Token};
use cusim_sim::judge::trace::EventKind;
use cusim_sim::judge::{Invariant, RequestOutcome};
use support::*;

fn run(scenario: &Scenario, strategy: Strategy, schedule: &str) -> Execution {
    let prepared = Prepared::new(scenario, strategy).unwrap();
    let schedule = Schedule::parse(schedule).unwrap();
    let options = RunOptions { record_trace: true, ..RunOptions::default() };
    execute_run(&prepared, &mut Replay::new(&schedule), options).unwrap()
}

fn broken(execution: &Execution, scenario: &Scenario) -> Vec<Invariant> {
    cusim_sim::judge::judge(scenario, &execution.observation).iter().map(|v| v.invariant).collect()
}

fn usage_in_db(execution: &Execution) -> i64 {
    execution
        .observation
        .state
        .customers
        .iter()
        .filter_map(|c| c.balances.get("words"))
        .map(|b| b.usage)
        .sum()
}

#[test]
fn a_keyed_retry_after_a_lost_response_counts_twice_unless_the_design_dedupes() {
    let scenario = builtin_scenario("w1-keyed-retry-after-lost-response");
    for strategy in [Strategy::Legacy, Strategy::Transactional] {
        let execution = run(&scenario, strategy, "");
        let retries = execution.trace.iter().filter(|e| matches!(e.kind, EventKind::Retry { .. })).count();
        assert_eq!(retries, 1, "{strategy}: the 503 is retried once, and the retry succeeds");
        assert_eq!(execution.observation.retried[0].len(), 1);
        assert_eq!(usage_in_db(&execution), 6, "{strategy}: one logical track of 3, counted twice");
        assert!(broken(&execution, &scenario).contains(&Invariant::UsageConserved), "{strategy}");

        let counted_twice = |execution: &Execution, scenario: &Scenario| {
            cusim_sim::judge::judge(scenario, &execution.observation)
                .iter()
                .any(|v| v.invariant == Invariant::UsageConserved && v.message.contains("counted twice"))
        };
        assert!(counted_twice(&execution, &scenario), "{strategy}");
        // Without the key, the retry is a new logical request: 6 lies within
        // what was attempted, and the counter's bounds hold. (The cache,
        // never told of the DB's deductions, still disagrees with it.)
        let mut unkeyed = scenario.clone();
        unkeyed.requests[0].idempotency_key = None;
        let execution = run(&unkeyed, strategy, "");
        assert_eq!(usage_in_db(&execution), 6);
        assert!(!counted_twice(&execution, &unkeyed), "{strategy}");
    }
    // Safe: the commit's answer is lost, the retry finds the key counted.
    let execution = run(&scenario, Strategy::Safe, "");
    assert_eq!(
        execution.observation.retried[0].len(),
        2,
        "safe: the commit's answer and then the duplicate's were lost"
    );
    assert!(matches!(execution.observation.outcomes[0].response(), Some(Response::Track(_))));
    assert_eq!(usage_in_db(&execution), 3, "exactly once");
    assert!(broken(&execution, &scenario).is_empty());
    assert_holds(&exhaustive(&scenario, Strategy::Safe, None, 1));
}

#[test]
fn a_duplicate_key_in_flight_is_refused_with_409_and_not_retried() {
    let scenario = scenario(
        r#"{"name": "same-key-twice",
          "products": [{"id": "free", "group": "main", "is_default": true, "kind": "free", "features": {"words": 10}}],
          "customers": [{"id": "cus_1", "email": "a@example.com"}],
          "requests": [{"op": "track", "customer_id": "cus_1", "feature_id": "words", "value": 2, "idempotency_key": "k", "retries": 3},
                       {"op": "track", "customer_id": "cus_1", "feature_id": "words", "value": 2, "idempotency_key": "k", "retries": 3}]}"#,
    );
    for strategy in Strategy::ALL {
        let execution = run(&scenario, strategy, "0.1.0.1");
        let refused = execution.observation.outcomes.iter().filter(|o| {
            matches!(o, RequestOutcome::Responded(r) if r.as_ref().as_ref().is_err_and(|e| e.code.as_str() == "duplicate_idempotency_key"))
        });
        assert_eq!(refused.count(), 1, "{strategy}: the second send of the key is refused");
        assert!(execution.observation.retried.iter().all(Vec::is_empty), "{strategy}: a 409 is not retried");
        assert_eq!(usage_in_db(&execution), 2, "{strategy}");
        assert!(broken(&execution, &scenario).is_empty(), "{strategy}");
    }
}

#[test]
fn an_eviction_between_deduct_and_sync_loses_acknowledged_usage() {
    let scenario = builtin_scenario("w2-cache-evicted-before-sync");
    for strategy in [Strategy::Legacy, Strategy::Transactional] {
        assert!(broken(&run(&scenario, strategy, ""), &scenario).contains(&Invariant::UsageConserved));
        let mut kept = scenario.clone();
        kept.faults.clear();
        assert!(broken(&run(&kept, strategy, ""), &kept).is_empty(), "{strategy}: without the eviction");
    }
    assert_holds(&exhaustive(&scenario, Strategy::Safe, None, 1));
}

#[test]
fn a_cached_entry_expires_after_three_days() {
    let scenario = builtin_scenario("w2-cache-evicted-before-sync");
    let mut kept = scenario.clone();
    kept.faults.clear();
    // The check caches the customer; 3 days and a second later it is gone,
    // and the track's deduction finds no entry (it deducts at the DB).
    let execution = run(&kept, Strategy::Legacy, "0.1.0.0.0.0.+259201000.1.1");
    let reads: Vec<&str> = execution
        .trace
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Op { point: cusim::backend::Point::CacheRead, result, .. } if e.request == Some(1) => {
                Some(result.as_str())
            }
            _ => None,
        })
        .collect();
    assert!(reads[0].starts_with("miss"), "expired: {reads:?}");
    let fresh = run(&kept, Strategy::Legacy, "0.1.0.0.0.0.+259199000.1.1");
    let first = fresh.trace.iter().find_map(|e| match &e.kind {
        EventKind::Op { point: cusim::backend::Point::CacheRead, result, .. } if e.request == Some(1) => {
            Some(result.clone())
        }
        _ => None,
    });
    assert!(first.is_some_and(|r| r.starts_with("hit")), "a second before, it is still there");
}

#[test]
fn a_fast_clock_defeats_the_stale_write_guard() {
    let scenario = builtin_scenario("w3-skewed-instances");
    let witnesses = [(Strategy::Legacy, "0.1.0.0.0.1.1.1.1"), (Strategy::Transactional, "0.1.0.0.1.1.1.1.0")];
    for (strategy, schedule) in witnesses {
        assert!(broken(&run(&scenario, strategy, schedule), &scenario).contains(&Invariant::FreshCache));
        let mut right = scenario.clone();
        right.instances.iter_mut().for_each(|i| i.skew_ms = 0);
        assert!(broken(&run(&right, strategy, schedule), &right).is_empty(), "{strategy}: clocks right");
    }
    assert_holds(&exhaustive(&scenario, Strategy::Safe, None, 1));
}

#[test]
fn a_stripe_customer_made_a_day_ago_is_found_not_made_again() {
    let scenario = builtin_scenario("w4-stripe-window");
    for strategy in [Strategy::Legacy, Strategy::Transactional] {
        let schedule = "0.1.0.0.0.0.0.0.0.+86401000";
        assert!(
            broken(&run(&scenario, strategy, schedule), &scenario).contains(&Invariant::SingleStripeCustomer)
        );
        assert!(broken(&run(&scenario, strategy, ""), &scenario).is_empty(), "{strategy}: no clock move");
    }
    let execution = run(&scenario, Strategy::Safe, "0.1.0.0.0.0.0.0.0.0.0.0.0.0.+86401000");
    assert_eq!(execution.observation.state.stripe.len(), 1);
    assert!(broken(&execution, &scenario).is_empty());
    // The whole reduced space (up to one clock move, no preemption bound).
    let safe = exhaustive(&scenario, Strategy::Safe, None, 1);
    assert!(safe.exhausted);
    assert_holds(&safe);
}

/// Two tracks of 3 sent with one `Idempotency-Key`; the cache is down for
/// the second's claim of the key when `claim_down`, so only the balance's
/// memory of the key stands between it and a second count.
fn keyed_tracks(claim_down: bool) -> Scenario {
    let faults =
        if claim_down { r#"[{"request": 1, "at": "cache_write", "kind": "cache_down"}]"# } else { "[]" };
    scenario(&format!(
        r#"{{"name": "keyed-tracks",
          "products": [{{"id": "free", "group": "main", "is_default": true, "kind": "free", "features": {{"words": 100}}}}],
          "customers": [{{"id": "cus_1", "email": "ann@example.com", "name": "Ann"}}],
          "requests": [{{"op": "track", "customer_id": "cus_1", "feature_id": "words", "value": 3, "idempotency_key": "k"}},
                       {{"op": "track", "customer_id": "cus_1", "feature_id": "words", "value": 3, "idempotency_key": "k"}}],
          "faults": {faults}}}"#
    ))
}

/// `scenario` run with request 0 whole, then a clock move of `ms`, then
/// request 1.
fn a_move_between(scenario: &Scenario, strategy: Strategy, ms: u64) -> Execution {
    let alone = run(scenario, strategy, "");
    let mut tokens = alone.schedule.0.clone();
    let second =
        tokens.iter().position(|t| matches!(t, Token::Run { request: 1, .. })).expect("request 1 runs");
    tokens.insert(second, Token::Tick { ms });
    run(scenario, strategy, &Schedule(tokens).to_string())
}

#[test]
fn a_balance_forgets_a_counted_key_when_the_idempotency_window_has_passed() {
    let acknowledged = |execution: &Execution| {
        execution
            .observation
            .outcomes
            .iter()
            .filter(|o| matches!(o.response(), Some(Response::Track(_))))
            .count()
    };
    // The claim of the key is down: the balance's memory of it decides.
    let scenario = keyed_tracks(true);
    let before = a_move_between(&scenario, Strategy::Safe, APPLIED_KEY_WINDOW_MS - 1);
    assert_eq!(acknowledged(&before), 2);
    assert_eq!(usage_in_db(&before), 3, "a millisecond before the window ends: the same logical track");
    assert!(broken(&before, &scenario).is_empty());
    for ms in [APPLIED_KEY_WINDOW_MS, APPLIED_KEY_WINDOW_MS + 1] {
        let after = a_move_between(&scenario, Strategy::Safe, ms);
        assert_eq!(acknowledged(&after), 2);
        assert_eq!(usage_in_db(&after), 6, "+{ms} ms: the key was forgotten, a new track counts");
        assert!(broken(&after, &scenario).is_empty(), "+{ms} ms");
        // The oracle asks for the second count: a balance that kept the key
        // longer than the window loses an acknowledged track.
        let mut kept = after.observation.clone();
        kept.state.customers.iter_mut().for_each(|c| {
            c.balances.get_mut("words").expect("a balance").usage = 3;
        });
        let lost = cusim_sim::judge::judge(&scenario, &kept);
        assert!(
            lost.iter()
                .any(|v| v.invariant == Invariant::UsageConserved && v.message.contains("usage was lost")),
            "+{ms} ms: {lost:?}"
        );
    }
    // With the claim up, the API's claim and the balance's key end together.
    let scenario = keyed_tracks(false);
    let before = a_move_between(&scenario, Strategy::Safe, APPLIED_KEY_WINDOW_MS - 1);
    assert_eq!((acknowledged(&before), usage_in_db(&before)), (1, 3), "the claim still holds: 409");
    let after = a_move_between(&scenario, Strategy::Safe, APPLIED_KEY_WINDOW_MS);
    assert_eq!((acknowledged(&after), usage_in_db(&after)), (2, 6));
    for execution in [&before, &after] {
        assert!(broken(execution, &scenario).is_empty());
    }
    // Every schedule with up to one clock move (24 h 1 s among them).
    for claim_down in [true, false] {
        assert_holds(&exhaustive(&keyed_tracks(claim_down), Strategy::Safe, None, 1));
    }
}

#[test]
fn a_stripe_call_in_flight_past_its_timeout_never_arrives() {
    // Found by exploring with the 24 h clock move: a create that waited a
    // day after its search made a second Stripe customer, before calls had
    // a timeout and every create its own search.
    let scenario = paid_stripe_creates();
    let execution = run(&scenario, Strategy::Safe, "0.1.1.1.1.1.1.1.1.1.0.0.0.0.+86401000");
    let dropped = execution.trace.iter().any(
        |e| matches!(&e.kind, EventKind::Op { result, .. } if result.contains("it never reached Stripe")),
    );
    assert!(dropped, "the create sent before the clock move times out");
    assert_eq!(execution.observation.state.stripe.len(), 1);
    assert!(broken(&execution, &scenario).is_empty());
}

/// What choosing the order after a release adds. Without clock moves, each
/// built-in scenario under each strategy is explored twice, by plain
/// search (every order: first come, first served waking cannot be reduced,
/// see `explore`): with the order after a release chosen (as Postgres
/// allows) and first come, first served (the world the model had before).
/// The spaces are every schedule for the scenarios listed, and every
/// schedule within 2 preemptions for the others (1 for three requests;
/// each line names its bound); each is asserted complete (within its
/// bound). Every invariant the narrower world breaks, the wider one breaks
/// too; what only the wider one breaks is printed, with the size of both
/// spaces.
#[test]
fn choosing_the_wake_order_finds_all_first_come_first_served_finds_every_schedule_or_within_1_or_2_preemptions(
) {
    const EVERY: [&str; 8] = [
        "r1-same-id-create",
        "r3-crash-before-defaults",
        "r4-idless-duplicates",
        "r5-double-claim",
        "r8-lost-usage-overwrite",
        "w1-keyed-retry-after-lost-response",
        "w2-cache-evicted-before-sync",
        "w3-skewed-instances",
    ];
    let (mut wider, mut narrower, mut only_wider) = (0u64, 0u64, Vec::new());
    for builtin in cusim_sim::corpus::builtin::BUILTINS {
        let scenario = builtin.scenario().unwrap();
        for strategy in Strategy::ALL {
            let started = std::time::Instant::now();
            let prepared = Prepared::new(&scenario, strategy).unwrap();
            let every = EVERY.contains(&builtin.name());
            // Three requests: within 1 preemption (their plain spaces
            // within 2 pass 200,000 schedules).
            let preemptions = if scenario.requests.len() > 2 { 1 } else { 2 };
            let max_preemptions = (!every).then_some(preemptions);
            let bound =
                if every { "every schedule".to_owned() } else { format!("within {preemptions} preemptions") };
            let explore = |first_come_first_served: bool| {
                let search = ExploreConfig::exhaustive(Reduction::None, max_preemptions, 0, 2_000_000);
                let run = RunOptions { first_come_first_served, ..RunOptions::default() };
                let report = cusim_sim::explore::explore(&prepared, &ExploreConfig { run, ..search }, |_| {});
                // Complete: every schedule; complete within the bound:
                // every schedule within it (the bound may cut nothing).
                let whole = if every {
                    report.completeness == Completeness::Complete
                } else {
                    matches!(report.completeness, Completeness::Complete | Completeness::CompleteWithinBound)
                };
                assert!(
                    whole,
                    "{} under {strategy}: {bound} was not run ({:?})",
                    builtin.name(),
                    report.completeness
                );
                report
            };
            let (chosen, fifo) = (explore(false), explore(true));
            let (chosen_broken, fifo_broken) = (violated(&chosen), violated(&fifo));
            for invariant in &fifo_broken {
                assert!(
                    chosen_broken.contains(invariant),
                    "{} under {strategy}: {invariant} broken first come first served only",
                    builtin.name()
                );
            }
            let extra: Vec<Invariant> =
                chosen_broken.iter().copied().filter(|i| !fifo_broken.contains(i)).collect();
            eprintln!(
                "{} {strategy}, {bound}: {} schedules (first come first served: {}){}",
                builtin.name(),
                chosen.schedules_run,
                fifo.schedules_run,
                if extra.is_empty() {
                    String::new()
                } else {
                    format!("; only with the order chosen: {extra:?}")
                }
            );
            if !extra.is_empty() {
                only_wider.push((builtin.name(), strategy, extra));
            }
            let claim_bound = match max_preemptions {
                None => Bound::Complete,
                Some(n) => Bound::WithinPreemptions(n),
            };
            Claim::new(
                format!("wake-order/{}/{strategy}", builtin.name()),
                "choosing who moves after a release breaks every invariant first come, first served breaks",
                format!("{}, {strategy}, no clock move, plain search", builtin.name()),
                claim_bound,
            )
            .figure("chosen", chosen.schedules_run)
            .figure("first_come_first_served", fifo.schedules_run)
            .record(started);
            wider += chosen.schedules_run;
            narrower += fifo.schedules_run;
        }
    }
    eprintln!("in all: {wider} schedules with the order chosen, {narrower} first come first served");
    eprintln!("broken only with the order chosen: {only_wider:?}");
}

#[test]
fn a_fault_at_a_settle_read_takes_effect_there() {
    // R2 under legacy: the cache keeps the customer without its default,
    // and the settle read, a cache hit, shows it.
    let plain = builtin_scenario("r2-stale-cache");
    let shown = |execution: &Execution| {
        let settle = &execution.observation.settles[0];
        settle.result.as_ref().map(|r| r.customer().products.len()).expect("the settle read answers")
    };
    let stale = run(&plain, Strategy::Legacy, "0.1.0.0.1.1.1");
    assert_eq!(shown(&stale), 0);
    assert!(stale.settle_reached.contains(&(0, cusim::backend::Point::CacheRead, 1)));
    // The cache down at the settle read's cache read: it reads the DB, which
    // has the default; the stale entry stays.
    let mut down = plain.clone();
    down.settle_faults.push(cusim_sim::input::scenario::SettleFaultSpec {
        settle: 0,
        at: cusim::backend::Point::CacheRead,
        kind: cusim_sim::input::scenario::FaultKind::CacheDown,
        occurrence: 1,
    });
    let read_past = run(&down, Strategy::Legacy, "0.1.0.0.1.1.1");
    assert_eq!(shown(&read_past), 1);
    assert!(broken(&read_past, &down).contains(&Invariant::FreshCache));
    // Evicted just before the settle read's cache read: the read misses,
    // fills the cache from the DB, and the stale entry is gone.
    down.settle_faults[0].kind = cusim_sim::input::scenario::FaultKind::CacheEvict;
    let evicted = run(&down, Strategy::Legacy, "0.1.0.0.1.1.1");
    assert_eq!(shown(&evicted), 1);
    assert!(!broken(&evicted, &down).contains(&Invariant::FreshCache));
}

/// A request's arrival is a decision: a check that arrives after a
/// track's invalidation takes a read stamp newer than it, so the guard
/// lets its write through, and it caches a snapshot the track's deduction
/// at the DB then leaves stale. With every request arriving before any
/// decision (the model before arrivals were decisions), every stamp came
/// before every invalidation, the guard refused that write, and this took
/// a clock move past the guard's second. `safe` holds.
#[test]
fn a_check_that_arrives_after_an_invalidation_passes_the_guard() {
    let scenario = scenario(
        r#"{"name": "arrival-after-invalidation",
          "products": [{"id": "free", "group": "main", "is_default": true, "kind": "free", "features": {"words": 1000}}],
          "customers": [{"id": "cus_1", "email": "ann@example.com"}],
          "requests": [{"op": "check", "customer_id": "cus_1", "feature_id": "words"},
                       {"op": "track", "customer_id": "cus_1", "feature_id": "words", "value": 2, "customer_data": {"name": "Ann"}}]}"#,
    );
    for strategy in [Strategy::Legacy, Strategy::Transactional] {
        let report = exhaustive(&scenario, strategy, None, 0);
        assert_eq!(report.completeness, Completeness::Complete);
        assert_breaks(&report, &scenario, Invariant::FreshCache);
        // Its witness: the check arrives after the track's invalidation.
        let found = report.violations.iter().find(|f| f.invariant == Invariant::FreshCache).unwrap();
        let execution = run(&scenario, strategy, &found.schedule);
        let position = |wanted: &dyn Fn(&EventKind, Option<usize>) -> bool| {
            execution.trace.iter().position(|e| wanted(&e.kind, e.request)).unwrap()
        };
        let invalidated = position(&|k, _| {
            matches!(k, EventKind::Op { point: cusim::backend::Point::CacheInvalidate, .. })
        });
        let arrived = position(&|k, r| matches!(k, EventKind::Arrive { .. }) && r == Some(0));
        assert!(invalidated < arrived, "{strategy}: {}", found.schedule);
    }
    assert_holds(&exhaustive(&scenario, Strategy::Safe, None, 1));
}
