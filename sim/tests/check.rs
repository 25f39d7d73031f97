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

/// Against each generation of the API (API.md, "Generations"), with no
/// route or version flag: the preflight learns the generation's facts and
/// names it, the history keeps them, `legacy` is caught (R4 among id-less
/// creates sharing an email, R1 or R2 among creates of one id) and `safe`
/// is clean.
#[test]
fn every_generation_is_learned_legacy_is_caught_and_safe_is_clean_on_it() {
    let dir = scratch("generations");
    for generation in ["2026-01", "2026-02", "current"] {
        let extra = ["--generation", generation, "--jitter", "7", "--jitter-max-ms", "3"];
        let history = dir.join(format!("{generation}.json"));
        let legacy = Server::start("legacy", &extra);
        let wanted = |report: &Value| {
            let suspects = checking::suspects(report);
            suspects.contains("R4") && (suspects.contains("R1") || suspects.contains("R2"))
        };
        let (runs, code, report) =
            check_until(&legacy.url, &history, &["--ops", OPS, "--clients", CLIENTS], wanted);
        assert!(wanted(&report), "{generation}: not caught in {runs} runs: {report:#}");
        assert_eq!(code, 1);
        assert_eq!(report["generations"], json!([generation]), "{generation}: {report:#}");
        // Every fact learned, as the generation's file in fixtures/profiles/ has it.
        let profile = &report["profile"];
        assert_eq!(*profile, profile_file(generation), "{generation}: {report:#}");
        assert_eq!(report["preflight"].as_array().unwrap().len(), 5, "{generation}: {report:#}");
        let saved: Value = serde_json::from_str(&std::fs::read_to_string(&history).unwrap()).unwrap();
        assert_eq!(saved["profile"], *profile);
        // The saved history, judged again, keeps its profile.
        let again = cusim(&["check", "--judge", history.to_str().unwrap(), "--json"]);
        let again: Value = serde_json::from_slice(&again.stdout).unwrap();
        assert_eq!(again["profile"], *profile);
        assert_eq!(again["findings"], report["findings"]);
        drop(legacy);

        let safe = Server::start("safe", &extra);
        let (code, report) =
            check(&safe.url, &dir.join("safe.json"), &["--ops", OPS, "--clients", CLIENTS, "--seed", "3"]);
        assert_clean(code, &report);
        assert_eq!(report["generations"], json!([generation]), "{generation}: {report:#}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The facts of `generation` as `fixtures/profiles/` keeps them.
fn profile_file(generation: &str) -> Value {
    let path = format!("{}/../fixtures/profiles/{generation}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `--routes`, `--api-version` and `--target-profile` give facts instead
/// of the preflight; what the target cannot do with them is exit 2.
#[test]
fn given_routes_versions_and_profiles_are_used_and_checked() {
    let dir = scratch("given");
    let current = Server::start("safe", &[]);
    let (code, report) =
        check(&current.url, &dir.join("v1.json"), &["--routes", "v1", "--ops", "200", "--clients", "4"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        (report["profile"]["routes"].as_str(), report["profile"]["reads"].as_str()),
        (Some("v1"), Some("v1"))
    );
    assert_eq!(report["generations"], json!(["current"]));
    let (code, report) = check(
        &current.url,
        &dir.join("older.json"),
        &["--api-version", "2.0.0", "--ops", "200", "--clients", "4"],
    );
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["profile"]["auto_create_at_api_version"], true);
    assert_eq!(report["generations"], json!([]), "2.0.0 is no generation's newest: {report:#}");

    let january = Server::start("safe", &["--generation", "2026-01"]);
    let key = checking::KEY;
    let error = refused(&["check", "--target", &january.url, "--secret-key", key, "--api-version", "2.1.0"]);
    assert!(error.contains("400 invalid_api_version") && error.contains("2.1.0"), "{error}");
    let error = refused(&["check", "--target", &january.url, "--secret-key", key, "--routes", "rpc"]);
    assert!(
        error.contains("--routes says routes rpc") && error.contains("POST /v1/balances.track"),
        "{error}"
    );

    // A profile file: used as it is, and checked field by field.
    let profile = dir.join("profile.json");
    let facts = json!({"routes": "v1", "reads": "v1", "api_version": "2.0.0", "auto_create_at_api_version": true,
                       "auto_create_version": "2.0.0", "failed_key": "kept"});
    std::fs::write(&profile, facts.to_string()).unwrap();
    let (code, report) = check(
        &january.url,
        &dir.join("file.json"),
        &["--target-profile", profile.to_str().unwrap(), "--ops", "200", "--clients", "4"],
    );
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["profile"], facts);
    let lines = report["preflight"].as_array().unwrap();
    assert_eq!(lines[0], "every fact given by --target-profile, each confirmed:", "{report:#}");
    assert_eq!(lines.len(), 6, "the five facts' lines follow: {report:#}");
    // A file the target contradicts, fact by fact: exit 2, naming the fact;
    // a file that is no profile: exit 2, naming the file and the field.
    let refused_with = |facts: &Value| {
        std::fs::write(&profile, facts.to_string()).unwrap();
        let profile = profile.to_str().unwrap();
        refused(&["check", "--target", &january.url, "--secret-key", key, "--target-profile", profile])
    };
    for (field, value, wanted) in [
        ("failed_key", json!("given_back"), "--target-profile says failed_key given_back"),
        ("routes", json!("rpc"), "POST /v1/balances.track"),
    ] {
        let mut contradicted = facts.clone();
        contradicted[field] = value;
        let error = refused_with(&contradicted);
        assert!(error.contains(wanted), "{field}: {error}");
    }
    let mut wrong = facts.clone();
    wrong["failed_key"] = json!("lost");
    let error = refused_with(&wrong);
    assert!(error.contains("profile.json") && error.contains("failed_key"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A server that answers every request 404 with no JSON: it speaks neither
/// route family, and the error says what was tried and what came back.
#[test]
fn a_target_that_speaks_neither_family_is_exit_2_with_what_came_back() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            // Read the whole request (its head, then the body its
            // content-length gives), answer, close.
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            let complete = |request: &[u8]| {
                let text = String::from_utf8_lossy(request);
                let Some(head_end) = text.find("\r\n\r\n") else { return false };
                let length = text[..head_end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                request.len() >= head_end + 4 + length
            };
            while !complete(&request) {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 9\r\nconnection: close\r\n\r\nNot Found",
            );
        }
    });
    let error = refused(&["check", "--target", &format!("http://{address}"), "--secret-key", checking::KEY]);
    assert!(error.contains("neither route family"), "{error}");
    assert!(error.contains("GET /v1/customers/{id}") && error.contains("404"), "{error}");
    assert!(error.contains("2.4.0") && error.contains("1.2.0"), "every version tried: {error}");
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
