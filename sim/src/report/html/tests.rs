//! The trace page's own checks: the elements a reader (and
//! `scripts/check-html.sh`) relies on, escaping, and stable bytes.

use super::*;
use crate::corpus::builtin;
use crate::drive::stepper::{execute_run, Prepared, Replay, RunOptions};
use crate::input::schedule::Schedule;
use crate::judge::judge;
use crate::judge::trace::{Event, EventKind, Past};
use crate::report::text as trace;

fn run(name: &str, strategy: Strategy, schedule: &str) -> (Scenario, Execution, Vec<Violation>) {
    let scenario = builtin::find(name).expect("a built-in scenario").scenario().expect("it parses");
    let prepared = Prepared::new(&scenario, strategy).expect("its customers can be made");
    let schedule = Schedule::parse(schedule).expect("a valid schedule");
    let options = RunOptions { record_trace: true, ..RunOptions::default() };
    let execution = execute_run(&prepared, &mut Replay::new(&schedule), options).expect("it replays");
    let violations = judge(&scenario, &execution.observation);
    (scenario, execution, violations)
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// The R1 legacy regression case's minimal schedule.
const R1_LEGACY: &str = "1.1";

#[test]
fn r1_legacy_shows_both_lanes_and_the_violation() {
    let (scenario, execution, violations) = run("r1-same-id-create", Strategy::Legacy, R1_LEGACY);
    assert!(violations.iter().any(|v| v.invariant.as_str() == "no_internal_error"));
    let html = render(&scenario, Strategy::Legacy, &execution, &violations);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(count(&html, "<main id=\"trace\">"), 1);
    assert_eq!(count(&html, "class=\"lane\""), scenario.requests.len());
    for r in 0..scenario.requests.len() {
        assert!(
            html.contains(&format!("<div class=\"lane\" id=\"lane-{r}\" data-request=\"{r}\"")),
            "lane {r}"
        );
    }
    assert!(html.contains("id=\"violations\" class=\"bad\""));
    assert!(html.contains("class=\"violated\" data-invariant=\"no_internal_error\" data-requests=\"1\""));
    // The failing response is marked, and stands out as an internal error.
    assert!(html.contains("class=\"box respond error internal violation\""), "{html}");
    assert!(html.contains("class=\"lane-head violation\""));
    // The header: schedule, minimal schedule, trace hash.
    assert!(html.contains(&format!("<code>{}</code>", execution.schedule)));
    assert!(html.contains("<dt>minimal schedule</dt><dd><code>1.1</code></dd>"));
    assert!(html.contains(&format!("{:016x}", trace::hash(&execution.trace))));
    // One row per event, settle reads apart.
    assert!(html.contains("id=\"settle\""));
    assert!(html.contains("data-kind=\"settle\""));
    // Nothing is fetched.
    for fetch in ["http://", "https://", "<script", "<link", "<img", "@import", "url("] {
        assert!(!html.contains(fetch), "the page must not contain {fetch:?}");
    }
}

#[test]
fn r2_marks_the_stale_write_and_the_settle_read_behind_the_violation() {
    let (scenario, execution, violations) = run("r2-stale-cache", Strategy::Legacy, "0.1.0.0.1.1.1");
    let fresh =
        violations.iter().find(|v| v.invariant == Invariant::FreshCache).expect("R2 breaks fresh_cache");
    assert_eq!(fresh.requests, [1], "the check showed (and cached) the stale customer");
    assert_eq!(fresh.settle_reads, [0]);
    let html = render(&scenario, Strategy::Legacy, &execution, &violations);
    // r1's cache write is the operation behind it; r0's (the fresh one) is not.
    let boxes: Vec<&str> = html.split("<div class=\"box ").skip(1).collect();
    let writes = |request: &str| -> Vec<&str> {
        boxes
            .iter()
            .filter(|b| b.contains(&format!("data-request=\"{request}\"")) && b.contains("cache_write"))
            .copied()
            .collect()
    };
    assert!(writes("1").iter().all(|b| b.starts_with("op") && b.contains(" evidence")), "{:?}", writes("1"));
    assert!(writes("0").iter().all(|b| !b.contains(" evidence")), "{:?}", writes("0"));
    // A cache miss is not evidence of anything.
    assert!(boxes.iter().filter(|b| b.contains("miss (epoch")).all(|b| !b.contains(" evidence")));
    // The settle read that showed the stale customer is marked and linked.
    assert!(html.contains("id=\"settle-0\" data-kind=\"settle\" data-settle=\"0\""), "{html}");
    assert!(html.contains("<a href=\"#settle-0\">settle read 0</a>"));
    assert!(html.contains("violates fresh_cache, responses_see_defaults"));
}

#[test]
fn rendering_is_byte_for_byte_stable() {
    let (scenario, first, violations) = run("r1-same-id-create", Strategy::Legacy, R1_LEGACY);
    let (_, second, _) = run("r1-same-id-create", Strategy::Legacy, R1_LEGACY);
    let a = render(&scenario, Strategy::Legacy, &first, &violations);
    let b = render(&scenario, Strategy::Legacy, &first, &violations);
    let c = render(&scenario, Strategy::Legacy, &second, &violations);
    assert_eq!(a, b);
    assert_eq!(a, c);
}

#[test]
fn lock_waits_are_drawn_from_the_waiter_to_the_holder() {
    // Under transactional and safe, r0's insert waits for r1's open transaction.
    for strategy in [Strategy::Transactional, Strategy::Safe] {
        let (scenario, execution, violations) = run("r1-same-id-create", strategy, "0.1.0.1.1.1.1");
        assert!(execution.trace.iter().any(|e| matches!(e.kind, EventKind::Wait { holder: Some(1), .. })));
        let html = render(&scenario, strategy, &execution, &violations);
        assert!(
            html.contains("class=\"connector wait to-right\" data-from=\"0\" data-to=\"1\""),
            "{strategy}: {html}"
        );
        assert!(html.contains("r0 waits for r1 (txn"));
        assert!(html.contains("class=\"blocked\""));
        assert!(html.contains("id=\"violations\" class=\"ok\""), "{strategy}");
        assert!(!html.contains("class=\"violated\""));
        assert!(!html.contains("lane-head violation"));
        assert!(!html.contains("data-involved=\"true\""));
    }
}

#[test]
fn deadlocks_crashes_ticks_and_stalls_are_drawn() {
    let (scenario, mut execution, violations) =
        run("r1-same-id-create", Strategy::Transactional, "0.1.0.1.1.1.1");
    // A deadlock after r0's wait, as the stepper records one.
    let wait = execution.trace.iter().position(|e| matches!(e.kind, EventKind::Wait { .. })).unwrap();
    let Event { step, request, kind: EventKind::Wait { point, op, .. }, past } =
        execution.trace[wait].clone()
    else {
        unreachable!()
    };
    execution.trace.insert(
        wait + 1,
        Event { step, request, kind: EventKind::Deadlock { point, op: op.clone() }, past: past.clone() },
    );
    execution.trace.insert(
        0,
        Event {
            step: Some(0),
            request: None,
            kind: EventKind::Tick { ms: 5000, now_ms: 5000 },
            past: Past::default(),
        },
    );
    execution.trace.push(Event {
        step: Some(99),
        request: Some(1),
        kind: EventKind::Crash { point, op },
        past,
    });
    execution.observation.end = End::Stalled { waiting: vec![(0, Some(1))] };
    let html = render(&scenario, Strategy::Transactional, &execution, &violations);
    assert!(html.contains("class=\"connector conflict to-right\" data-from=\"0\" data-to=\"1\""), "{html}");
    assert!(html.contains("data-kind=\"deadlock\""));
    assert!(html.contains("class=\"tick\" data-ms=\"5000\""));
    assert!(html.contains("clock +5000 ms · now 5000 ms"));
    assert!(html.contains("data-kind=\"crash\""));
    assert!(html.contains("class=\"end-note\""));
    assert!(html.contains("stalled: r0 waits for r1"));
}

#[test]
fn text_is_escaped() {
    let (mut scenario, execution, violations) = run("r1-same-id-create", Strategy::Legacy, R1_LEGACY);
    scenario.name = "<script>alert(1)</script>".into();
    scenario.description = Some("a \"quoted\" & <b>bold</b> 'claim'".into());
    let html = Page::new(&scenario, Strategy::Legacy, &execution, &violations)
        .note("origin", "<img src=x onerror=alert(1)>")
        .render();
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<b>"));
    assert!(!html.contains("<img"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // Inside text and double-quoted attributes, a single quote is plain text.
    assert!(html.contains("a &quot;quoted&quot; &amp; &lt;b&gt;bold&lt;/b&gt; 'claim'"), "{html}");
}

#[test]
fn requests_are_described_by_op_and_customer() {
    let scenario = builtin::find("r2-stale-cache").unwrap().scenario().unwrap();
    assert_eq!(
        describe_request(&scenario.requests[0]),
        ("create cus_1".to_owned(), vec!["name=Ann".to_owned()])
    );
    assert_eq!(
        describe_request(&scenario.requests[1]),
        ("check cus_1".to_owned(), vec!["feature=words".to_owned()])
    );
    let track = Request::track("cus_9", "words", 3);
    assert_eq!(describe_request(&track).1, vec!["feature=words".to_owned(), "value=3".to_owned()]);
    let idless = Request::create(
        None,
        cusim::model::CustomerData { email: Some("a@x.io".into()), ..Default::default() },
    );
    assert_eq!(describe_request(&idless).0, "create (id null)");
}
