//! `cusim check` against `cusim serve` in memory: the checker, which sees
//! only HTTP, catches every race `legacy` has that its workloads reach,
//! finds nothing wrong with `safe` in the same budget, and reports bad
//! input with exit code 2.

mod checking;

use checking::{
    assert_clean, assert_legacy_caught, check, check_until, cusim, findings, invariants, legacy_caught,
    reproduce, scratch, Server,
};
use serde_json::{json, Value};

/// The budget of each run: calls, and clients released together.
const OPS: &str = "2000";
const CLIENTS: &str = "8";

fn jittered(strategy: &str) -> Server {
    Server::start(strategy, &["--jitter", "7", "--jitter-max-ms", "3"])
}

#[test]
fn legacy_is_caught_and_every_finding_names_calls_of_its_history() {
    let server = jittered("legacy");
    let dir = scratch("legacy");
    let history = dir.join("history.json");
    let (_, code, report) =
        check_until(&server.url, &history, &["--ops", OPS, "--clients", CLIENTS], legacy_caught);
    assert_legacy_caught(code, &report);

    // Every finding points at calls the history holds, of its own group.
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&history).unwrap()).unwrap();
    let events = saved["events"].as_array().unwrap();
    assert_eq!(
        report["calls"].as_u64().unwrap() + report["read_back"].as_u64().unwrap(),
        events.len() as u64
    );
    for finding in findings(&report) {
        let involved = finding["events"].as_array().unwrap();
        assert!(!involved.is_empty(), "{finding}");
        for index in involved {
            let event = &events[index.as_u64().unwrap() as usize];
            assert_eq!(event["index"], *index);
            assert!(event["group"] == finding["group"] || event["group"].is_null(), "{finding}\n{event}");
        }
    }

    // R1 and R4 (and every other race found) back on the model: a
    // schedule whose answers match, and whose trace holds the race.
    let scenarios = dir.join("scenarios");
    let (code, reproduced) = reproduce(&history, "legacy", &scenarios, &[]);
    assert_eq!(code, 1);
    let reproductions = reproduced["reproductions"].as_array().unwrap();
    for race in ["R1", "R2", "R4", "R5"] {
        let of_race = reproductions
            .iter()
            .find(|r| {
                findings(&report)[r["finding"].as_u64().unwrap() as usize]["suspects"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(race))
            })
            .unwrap_or_else(|| panic!("no reproduction for {race}: {reproduced:#}"));
        assert!(of_race["races"].as_array().unwrap().contains(&json!(race)), "{race}: {of_race:#}");
        let schedule = of_race["schedule"].as_str().unwrap();
        let replay = cusim(&[
            "replay",
            "--scenario",
            of_race["scenario"].as_str().unwrap(),
            "--strategy",
            "legacy",
            "--schedule",
            schedule,
            "--json",
        ]);
        assert_eq!(replay.status.code(), Some(1), "the replay shows the violation: {of_race:#}");
        let replay: Value = serde_json::from_slice(&replay.stdout).unwrap();
        assert!(replay.to_string().contains(&format!("\"{race}\"")), "{race}: {replay:#}");
    }

    // The R4 finding on the `safe` model: no schedule explains it, and
    // every set of calls tried ran whole.
    let r4 = findings(&report)
        .iter()
        .position(|f| f["suspects"].as_array().unwrap().contains(&json!("R4")))
        .unwrap();
    let (_, on_safe) = reproduce(&history, "safe", &scenarios, &["--finding", &r4.to_string()]);
    let only = &on_safe["reproductions"][0];
    assert!(only["schedule"].is_null(), "{only:#}");
    assert_eq!(only["exhausted"], true, "{only:#}");

    // The page: every finding, every call a finding involves marked.
    let page_path = dir.join("page.html");
    let judged =
        cusim(&["check", "--judge", history.to_str().unwrap(), "--html", page_path.to_str().unwrap()]);
    assert_eq!(judged.status.code(), Some(1));
    let page = std::fs::read_to_string(&page_path).unwrap();
    assert_eq!(page.matches("class=\"violated\"").count(), findings(&report).len());
    for finding in findings(&report) {
        for event in finding["events"].as_array().unwrap() {
            let id = format!("id=\"event-{event}\"");
            let at = page.find(&id).unwrap_or_else(|| panic!("{id} missing"));
            let tag_start = page[..at].rfind('<').unwrap();
            assert!(page[tag_start..at].contains("violation"), "{id} not marked");
        }
    }

    // The saved history, judged again, gives the same findings.
    let again = cusim(&["check", "--judge", history.to_str().unwrap(), "--json"]);
    assert_eq!(again.status.code(), Some(1));
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["findings"], report["findings"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn safe_passes_in_the_same_budget() {
    let server = jittered("safe");
    let dir = scratch("safe");
    let (code, report) =
        check(&server.url, &dir.join("h.json"), &["--ops", OPS, "--clients", CLIENTS, "--seed", "3"]);
    assert_clean(code, &report);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `transactional` closed R1, R2, R4 and R5; its tracks still lose usage
/// to an invalidation before the sync (R9).
#[test]
fn transactional_loses_only_usage() {
    let server = jittered("transactional");
    let dir = scratch("transactional");
    let lost = |report: &Value| invariants(report).contains("usage_conserved");
    let (_, code, report) =
        check_until(&server.url, &dir.join("h.json"), &["--ops", OPS, "--clients", CLIENTS], lost);
    let broken = invariants(&report);
    assert!(broken.contains("usage_conserved"), "{report:#}");
    for invariant in &broken {
        assert!(
            ["usage_conserved", "read_your_writes"].contains(&invariant.as_str()),
            "{invariant}: {report:#}"
        );
    }
    assert_eq!(code, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Each block alone, on a server that holds: its workload runs and is clean.
#[test]
fn every_built_in_workload_runs_clean_on_safe() {
    let server = Server::start("safe", &[]);
    let dir = scratch("workloads");
    for workload in ["same-id", "shared-email", "claim", "create-check", "usage"] {
        let (code, report) = check(
            &server.url,
            &dir.join(format!("{workload}.json")),
            &["--workload", workload, "--ops", "200", "--clients", "4"],
        );
        assert_eq!(findings(&report).len(), 0, "{workload}: {report:#}");
        assert_eq!(code, 0, "{workload}");
        assert_eq!(report["workload"], workload);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn refused(args: &[&str]) -> String {
    let output = cusim(args);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_input_and_an_unreachable_target_exit_2_with_the_reason() {
    let server = Server::start("safe", &[]);
    let dir = scratch("bad");
    let key = checking::KEY;

    let error = refused(&["check", "--target", &server.url, "--secret-key", "am_sk_test_nobody"]);
    assert!(error.contains("--secret-key") && error.contains("Invalid secret key"), "{error}");

    // A port nobody listens on: bind one, then free it.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let error = refused(&["check", "--target", &format!("http://{free}"), "--secret-key", key]);
    assert!(error.contains("unreachable") && error.contains("cannot connect"), "{error}");

    let error = refused(&["check", "--target", "https://127.0.0.1:1", "--secret-key", key]);
    assert!(error.contains("only plain http://"), "{error}");

    let workload = dir.join("w.json");
    std::fs::write(&workload, r#"{"name": "w", "blocks": {"teleport": 1}}"#).unwrap();
    let error = refused(&[
        "check",
        "--target",
        &server.url,
        "--secret-key",
        key,
        "--workload",
        workload.to_str().unwrap(),
    ]);
    assert!(
        error.contains("w.json") && error.contains("blocks.teleport") && error.contains("unknown block"),
        "{error}"
    );

    let error = refused(&["check", "--target", &server.url, "--secret-key", key, "--workload", "nonesuch"]);
    assert!(error.contains("--workload nonesuch") && error.contains("mixed"), "{error}");

    let error = refused(&["check", "--target", &server.url, "--secret-key", key, "--clients", "1"]);
    assert!(error.contains("--clients 1"), "{error}");

    let history = dir.join("h.json");
    std::fs::write(&history, r#"{"format": 1, "target": 5}"#).unwrap();
    let error = refused(&["check", "--judge", history.to_str().unwrap()]);
    assert!(error.contains("h.json") && error.contains("at target"), "{error}");

    // A real history, edited to name a group it does not have.
    let (_, _) = check(&server.url, &history, &["--ops", "20", "--clients", "2"]);
    let mut saved: Value = serde_json::from_str(&std::fs::read_to_string(&history).unwrap()).unwrap();
    saved["events"][0]["group"] = json!(99);
    std::fs::write(&history, saved.to_string()).unwrap();
    let error = refused(&["check", "--judge", history.to_str().unwrap()]);
    assert!(error.contains("at events[0].group: 99"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}
