//! The `cusim` command's public contract: exit codes, JSON shapes, and
//! clear errors (file, JSON path, reason) for bad input.

use std::process::{Command, Output};

fn cusim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cusim"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("the cusim binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write_temp(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("cusim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn explore_json_has_the_documented_shape_and_exit_codes() {
    let found = cusim(&[
        "explore",
        "--scenario",
        "fixtures/scenarios/r1-same-id-create.json",
        "--strategy",
        "legacy",
        "--seeds",
        "200",
        "--json",
    ]);
    assert_eq!(found.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap();
    for key in
        ["scenario", "strategy", "scheduler", "schedules_run", "exhausted", "violations", "availability"]
    {
        assert!(json.get(key).is_some(), "missing {key}: {json}");
    }
    assert_eq!(json["scenario"], "r1-same-id-create");
    assert_eq!(json["strategy"], "legacy");
    assert_eq!(json["scheduler"], "pct");
    assert_eq!(json["schedules_run"], 200);
    let violation = &json["violations"][0];
    for key in ["invariant", "schedule", "seed", "message"] {
        assert!(violation.get(key).is_some(), "violation lacks {key}: {violation}");
    }

    let clean = cusim(&[
        "explore",
        "--scenario",
        "r1-same-id-create",
        "--strategy",
        "safe",
        "--scheduler",
        "exhaustive",
        "--json",
    ]);
    assert_eq!(clean.status.code(), Some(0), "{}", stderr(&clean));
    let json: serde_json::Value = serde_json::from_slice(&clean.stdout).unwrap();
    assert_eq!(json["exhausted"], true);
    assert_eq!(json["violations"], serde_json::json!([]));
}

#[test]
fn replay_prints_the_trace_and_the_verdict() {
    let output =
        cusim(&["replay", "--scenario", "r1-same-id-create", "--strategy", "legacy", "--schedule", "1.1"]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("insert"), "{text}");
    assert!(text.contains("VIOLATED no_internal_error"), "{text}");
    let json = cusim(&[
        "replay",
        "--scenario",
        "r1-same-id-create",
        "--strategy",
        "safe",
        "--schedule",
        "1.1",
        "--json",
    ]);
    assert_eq!(json.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(json["trace"].as_array().is_some_and(|t| !t.is_empty()));
}

#[test]
fn bad_scenarios_are_refused_with_file_path_and_reason() {
    let cases = [
        (
            "unknown.json",
            r#"{"name": "x", "requests": [{"op": "create", "id": "a"}], "colour": "red"}"#,
            "unknown field `colour`",
        ),
        (
            "op.json",
            r#"{"name": "x", "requests": [{"op": "create", "id": "a"}, {"op": "delete"}]}"#,
            "requests[1]",
        ),
        (
            "field.json",
            r#"{"name": "x", "requests": [{"op": "check", "customer_id": "a", "feature": "w"}]}"#,
            "requests[0]",
        ),
        (
            "kind.json",
            r#"{"name": "x", "products": [{"id": "p", "group": "g", "kind": "gold"}], "requests": [{"op": "create", "id": "a"}]}"#,
            "products[0].kind",
        ),
        (
            "fault.json",
            r#"{"name": "x", "requests": [{"op": "create", "id": "a"}], "faults": [{"request": 3, "at": "insert", "kind": "crash"}]}"#,
            "faults[0].request",
        ),
        (
            "point.json",
            r#"{"name": "x", "requests": [{"op": "create", "id": "a"}], "faults": [{"request": 0, "at": "nowhere", "kind": "crash"}]}"#,
            "faults[0].at",
        ),
        (
            "mismatch.json",
            r#"{"name": "x", "requests": [{"op": "create", "id": "a"}], "faults": [{"request": 0, "at": "insert", "kind": "cache_down"}]}"#,
            "cache_down cannot happen at insert",
        ),
        ("empty.json", r#"{"name": "x", "requests": []}"#, "requests: must hold at least one request"),
        ("syntax.json", r#"{"name": "x", "requests": [}"#, "syntax.json"),
        (
            "seed.json",
            r#"{"name": "x", "customers": [{"id": "bad id"}], "requests": [{"op": "create", "id": "a"}]}"#,
            "customers[0]",
        ),
        (
            "twins.json",
            r#"{"name": "x", "customers": [{"id": null, "email": "a@x.io"}, {"id": null, "email": "A@x.io"}], "requests": [{"op": "create", "id": "a"}]}"#,
            "customers[1]: the same customer",
        ),
        (
            "huge.json",
            r#"{"name": "x", "requests": [{"op": "track", "customer_id": "a", "feature_id": "w", "value": 9223372036854775807}]}"#,
            "requests[0].value",
        ),
        (
            "retries.json",
            r#"{"name": "x", "requests": [{"op": "create", "id": "a", "retries": 11}]}"#,
            "requests[0].retries: must be from 0 to 10",
        ),
        (
            "retries-type.json",
            r#"{"name": "x", "requests": [{"op": "create", "id": "a", "retries": -1}]}"#,
            "requests[0].retries",
        ),
        (
            "key.json",
            r#"{"name": "x", "requests": [{"op": "create", "id": "a", "idempotency_key": ""}]}"#,
            "requests[0].idempotency_key: must be from 1 to 255 bytes long",
        ),
        (
            "instance.json",
            r#"{"name": "x", "requests": [{"op": "create", "id": "a", "instance": 1}]}"#,
            "requests[0].instance: no `instances` are named",
        ),
        (
            "instance-range.json",
            r#"{"name": "x", "instances": [{"skew_ms": 0}, {"skew_ms": 5}], "requests": [{"op": "create", "id": "a", "instance": 2}]}"#,
            "requests[0].instance: no instance 2 (the scenario names 2)",
        ),
        (
            "skew.json",
            r#"{"name": "x", "instances": [{"skew_ms": 3600001}], "requests": [{"op": "create", "id": "a"}]}"#,
            "instances[0].skew_ms",
        ),
        (
            "instance-field.json",
            r#"{"name": "x", "instances": [{"skew": 5}], "requests": [{"op": "create", "id": "a"}]}"#,
            "instances[0].skew: unknown field `skew`",
        ),
        (
            "evict.json",
            r#"{"name": "x", "requests": [{"op": "create", "id": "a"}], "faults": [{"request": 0, "at": "insert", "kind": "evict"}]}"#,
            "faults[0].kind",
        ),
        (
            "settle-crash.json",
            r#"{"name": "x", "requests": [{"op": "create", "id": "a"}], "settle_faults": [{"settle": 0, "at": "cache_read", "kind": "crash"}]}"#,
            "settle_faults[0].kind: a settle read cannot crash",
        ),
        (
            "settle-point.json",
            r#"{"name": "x", "requests": [{"op": "create", "id": "a"}], "settle_faults": [{"settle": 0, "at": "db_read", "kind": "cache_down"}]}"#,
            "settle_faults[0].kind: cache_down cannot happen at db_read",
        ),
        (
            "settle-field.json",
            r#"{"name": "x", "requests": [{"op": "create", "id": "a"}], "settle_faults": [{"request": 0, "at": "db_read", "kind": "db_error"}]}"#,
            "settle_faults[0].request: unknown field `request`",
        ),
        (
            "settle-twice.json",
            r#"{"name": "x", "requests": [{"op": "create", "id": "a"}], "settle_faults": [{"settle": 0, "at": "db_read", "kind": "db_error"}, {"settle": 0, "at": "db_read", "kind": "lost_response"}]}"#,
            "settle_faults[1]: a second fault at the same settle read",
        ),
        (
            "grant.json",
            r#"{"name": "x", "products": [{"id": "p", "group": "g", "kind": "free", "features": {"w": -1}}], "requests": [{"op": "create", "id": "a"}]}"#,
            "products[0].features.w",
        ),
    ];
    for (file, text, expected) in cases {
        let path = write_temp(file, text);
        let output = cusim(&["explore", "--scenario", &path, "--strategy", "legacy", "--seeds", "1"]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{file}: {message}");
        assert!(message.contains(&path), "{file}: the message names the file: {message}");
        assert!(message.contains(expected), "{file}: expected {expected:?} in {message}");
        assert!(!message.contains("panicked"), "{file}: {message}");
    }
    let missing = cusim(&["explore", "--scenario", "/nonexistent/s.json", "--strategy", "safe"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("/nonexistent/s.json: (file): cannot read the file"));
}

#[test]
fn bad_schedules_and_arguments_exit_2() {
    for (schedule, expected) in [
        ("0.x", "schedule token 1 (\"x\")"),
        ("0!boom", "unknown fault"),
        ("7", "there is no request 7"),
        ("0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0", "request 0 has finished"),
        ("0!cache_down", "request 0 has not arrived: fault cache_down needs an operation"),
        ("0.0!cache_down", "cannot happen at lookup_id"),
        ("+18446744073709551615.0", "from 1 to"),
    ] {
        let output = cusim(&[
            "replay",
            "--scenario",
            "r1-same-id-create",
            "--strategy",
            "legacy",
            "--schedule",
            schedule,
        ]);
        assert_eq!(output.status.code(), Some(2), "{schedule}");
        assert!(stderr(&output).contains(expected), "{schedule}: {}", stderr(&output));
    }
    let unknown_strategy = cusim(&["explore", "--scenario", "r1-same-id-create", "--strategy", "optimistic"]);
    assert_eq!(unknown_strategy.status.code(), Some(2));
    assert!(stderr(&unknown_strategy).contains("optimistic"));
    assert_eq!(cusim(&["explore"]).status.code(), Some(2));
    let deep = cusim(&[
        "explore",
        "--scenario",
        "r1-same-id-create",
        "--strategy",
        "safe",
        "--depth",
        "18446744073709551615",
    ]);
    assert_eq!(deep.status.code(), Some(2));
    assert!(stderr(&deep).contains("--depth must be from 1 to 64"));
    assert_eq!(
        cusim(&["explore", "--scenario", "r1-same-id-create", "--strategy", "safe", "--seeds", "0"])
            .status
            .code(),
        Some(2)
    );
    // A search that caches states, or plans with wakeup trees, is one
    // search on one thread.
    let whole_only = |reduction: &'static str| {
        ["explore", "--scenario", "r1-same-id-create", "--strategy", "safe", "--scheduler", "exhaustive"]
            .into_iter()
            .chain(["--reduction", reduction])
            .collect::<Vec<&str>>()
    };
    for reduction in ["states", "wakeup-trees"] {
        for split in [["--threads", "2"], ["--shard", "1/2"]] {
            let output = cusim(&[&whole_only(reduction)[..], &split[..]].concat());
            assert_eq!(output.status.code(), Some(2), "{split:?}");
            let want = format!("--reduction {reduction} searches on one thread and whole");
            assert!(stderr(&output).contains(&want), "{reduction} {split:?}: {}", stderr(&output));
        }
    }
    let states = whole_only("states");
    let whole = cusim(&[&states[..], &["--json"]].concat());
    assert_eq!(whole.status.code(), Some(0), "{}", stderr(&whole));
    let report: serde_json::Value = serde_json::from_slice(&whole.stdout).unwrap();
    assert_eq!(report["reduction"], "states");
    assert_eq!(report["completeness"], "complete");
    // Wakeup trees judge one run per class, as source sets do, and here
    // cut none short (source sets cut 105).
    let reports: Vec<serde_json::Value> = ["wakeup-trees", "source-sets"]
        .map(|reduction| {
            let output = cusim(&[&whole_only(reduction)[..], &["--json"]].concat());
            assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
            serde_json::from_slice(&output.stdout).unwrap()
        })
        .into();
    assert_eq!(reports[0]["reduction"], "wakeup_trees");
    assert_eq!(reports[0]["completeness"], "complete");
    assert_eq!(reports[0]["schedules_run"], reports[1]["schedules_run"]);
    assert_eq!(reports[0]["redundant_runs"], 0);
    assert!(reports[1]["redundant_runs"].as_u64().unwrap() > 0);
}

#[test]
fn every_fixture_is_built_in_and_every_built_in_is_a_fixture() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/scenarios");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".json"))
        .collect();
    files.sort();
    let mut builtins: Vec<String> =
        cusim_sim::corpus::builtin::BUILTINS.iter().map(|b| b.file.to_owned()).collect();
    builtins.sort();
    assert_eq!(files, builtins);
    for race in 1..=9 {
        assert!(files.iter().any(|f| f.starts_with(&format!("r{race}-"))), "no scenario for R{race}");
    }
}

#[test]
fn a_bad_database_is_bad_input_with_a_clear_message() {
    let replay = |extra: &[&str]| {
        let mut args =
            vec!["replay", "--scenario", "r1-same-id-create", "--strategy", "legacy", "--schedule", "0.1"];
        args.extend_from_slice(extra);
        cusim(&args)
    };
    let cases: [(&[&str], &str); 6] = [
        (
            &["--backend", "postgres", "--database-url", "host=127.0.0.1 port=1 password=hunter2"],
            "password=***\" is not valid: expected a URL like postgres://",
        ),
        (
            &["--backend", "postgres", "--database-url", "postgres://127.0.0.1:1/db?password=hunter2"],
            "--database-url: cannot connect to the database at 127.0.0.1:1",
        ),
        (
            &["--backend", "postgres", "--database-url", "postgres://postgres:hunter2@127.0.0.1:1/postgres"],
            "--database-url: cannot connect to the database at 127.0.0.1:1",
        ),
        (
            &["--backend", "postgres", "--database-url", "not a url"],
            "--database-url: database URL \"not a url\" is not valid",
        ),
        (&["--database-url", "postgres://127.0.0.1/postgres"], "--database-url needs --backend postgres"),
        (&["--backend", "oracle"], "invalid value 'oracle' for '--backend"),
    ];
    for (extra, expected) in cases {
        let output = replay(extra);
        assert_eq!(output.status.code(), Some(2), "{extra:?}: {}", stderr(&output));
        assert!(
            stderr(&output).contains(expected),
            "{extra:?}: expected {expected:?} in {}",
            stderr(&output)
        );
        assert!(!stderr(&output).contains("hunter2"), "the password is never printed: {}", stderr(&output));
        assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
    }
    let without_url = Command::new(env!("CARGO_BIN_EXE_cusim"))
        .args(["replay", "--scenario", "r1-same-id-create", "--strategy", "legacy", "--schedule", "0"])
        .args(["--backend", "postgres"])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(without_url.status.code(), Some(2));
    assert!(
        stderr(&without_url).contains("--backend postgres needs --database-url URL"),
        "{}",
        stderr(&without_url)
    );
}

#[test]
fn replay_writes_an_html_page_with_text_or_json_output() {
    let dir = std::env::temp_dir().join(format!("cusim-cli-html-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let replay = |extra: &[&str]| {
        let mut args =
            vec!["replay", "--scenario", "r1-same-id-create", "--strategy", "legacy", "--schedule", "1.1"];
        args.extend_from_slice(extra);
        cusim(&args)
    };
    let page_of = |path: &std::path::Path| {
        let page = std::fs::read_to_string(path).expect("the page was written");
        assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
        assert!(page.contains("<main id=\"trace\">"));
        assert_eq!(page.matches("class=\"lane\"").count(), 2, "one lane per request");
        assert!(page.contains("class=\"violated\" data-invariant=\"no_internal_error\""));
        page
    };

    let text_page = dir.join("r1.html");
    let output = replay(&["--html", text_page.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("VIOLATED no_internal_error"), "the usual output still comes: {text}");
    let from_text = page_of(&text_page);

    let json_page = dir.join("r1-json.html");
    let output = replay(&["--json", "--html", json_page.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout stays pure JSON");
    assert_eq!(json["violations"][0]["invariant"], "no_internal_error");
    assert_eq!(page_of(&json_page), from_text, "the page does not depend on --json");

    // A run without violations gets the green banner.
    let clean = dir.join("safe.html");
    let output = cusim(&[
        "replay",
        "--scenario",
        "r1-same-id-create",
        "--strategy",
        "safe",
        "--schedule",
        "0.1.0.1.1.1.1",
        "--html",
        clean.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let page = std::fs::read_to_string(&clean).unwrap();
    assert!(page.contains("id=\"violations\" class=\"ok\""));
    assert!(page.contains("class=\"connector wait to-right\" data-from=\"0\" data-to=\"1\""));
}

#[test]
fn an_unwritable_html_path_is_bad_input_naming_the_file_and_the_reason() {
    let dir = std::env::temp_dir().join(format!("cusim-cli-html-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = "/nonexistent-cusim-dir/trace.html".to_owned();
    let directory = dir.to_string_lossy().into_owned();
    for (path, reason) in [(missing, "No such file or directory"), (directory, "Is a directory")] {
        let output = cusim(&[
            "replay",
            "--scenario",
            "r1-same-id-create",
            "--strategy",
            "legacy",
            "--schedule",
            "1.1",
            "--html",
            &path,
        ]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{path}: {message}");
        assert!(message.contains(&format!("--html {path}: cannot write the file")), "{message}");
        assert!(message.contains(reason), "{path}: expected {reason:?} in {message}");
        assert!(output.stdout.is_empty(), "nothing is printed before the error");
        assert!(!message.contains("panicked"), "{message}");
    }
}

#[test]
fn explain_tells_what_an_invariant_means_and_which_races_break_it() {
    let output = cusim(&["explain", "fresh_cache"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "fresh_cache (invariant)",
        "a cached customer equals the DB's view of it",
        "R2: defaults missing and cached stale (in legacy)",
        "R7: a cache without the Stripe fields (in transactional)",
        "cusim explore --scenario r2-stale-cache --strategy legacy",
    ] {
        assert!(text.contains(expected), "expected {expected:?} in\n{text}");
    }
    // Races too, loosely spelled names, and JSON.
    let race = cusim(&["explain", "r6", "--json"]);
    assert_eq!(race.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&race.stdout).expect("one JSON object");
    assert_eq!(json["name"], "R6");
    assert_eq!(json["related"][0]["name"], "single_stripe_customer");
    assert_eq!(json["related"][0]["strategies"], serde_json::json!(["legacy", "transactional"]));
    let dashed = cusim(&["explain", "Unique-Customer"]);
    assert!(String::from_utf8_lossy(&dashed.stdout).starts_with("unique_customer (invariant)"));
    // Without a name: every invariant and race.
    let list = String::from_utf8_lossy(&cusim(&["explain"]).stdout).into_owned();
    assert_eq!(list.matches(" broken by ").count(), 10, "{list}");
    let every = cusim(&["explain", "--json"]);
    let all: serde_json::Value = serde_json::from_slice(&every.stdout).unwrap();
    assert_eq!(all.as_array().map(Vec::len), Some(19));
}

#[test]
fn explain_refuses_an_unknown_name_listing_the_known_ones() {
    let output = cusim(&["explain", "fast_cache"]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("explain fast_cache: not an invariant or a race"), "{message}");
    assert!(message.contains("fresh_cache") && message.contains("R1 … R9"), "{message}");
}

#[test]
fn every_command_has_help_with_an_example() {
    for command in [&["--help"][..], &["explore", "--help"], &["replay", "--help"], &["explain", "--help"]] {
        let output = cusim(command);
        assert_eq!(output.status.code(), Some(0), "{command:?}");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("Examples:\n  cusim "), "{command:?} has no example:\n{text}");
        assert!(text.contains("Exit codes"), "{command:?} does not document its exit codes:\n{text}");
    }
}

#[test]
fn more_bad_input_is_named_with_its_reason() {
    // A name that is neither a file nor a built-in scenario.
    let unknown = cusim(&["explore", "--scenario", "r1-same-id", "--strategy", "safe"]);
    assert_eq!(unknown.status.code(), Some(2));
    let message = stderr(&unknown);
    assert!(message.contains("--scenario r1-same-id: no such file, and no built-in scenario"), "{message}");
    assert!(message.contains("r1-same-id-create"), "the built-ins are listed: {message}");
    // Files that are not scenarios at all.
    let dir = std::env::temp_dir().join(format!("cusim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join("binary.json");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
    let binary = binary.to_string_lossy().into_owned();
    for (path, expected) in [
        (write_temp("array.json", "[1, 2]"), "a scenario is a JSON object"),
        (write_temp("blank.json", ""), "EOF while parsing"),
        (binary, "valid UTF-8"),
        (dir.to_string_lossy().into_owned(), "cannot read the file"),
    ] {
        let output = cusim(&["replay", "--scenario", &path, "--strategy", "legacy", "--schedule", "0"]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{path}: {message}");
        assert!(message.contains(&path) && message.contains(expected), "{path}: {message}");
    }
    // Unknown values of every enumerated flag.
    for (args, flag) in [
        (
            &["replay", "--scenario", "r1-same-id-create", "--strategy", "fast", "--schedule", "0"][..],
            "--strategy",
        ),
        (&["explore", "--all", "--scheduler", "clever"], "--scheduler"),
        (
            &[
                "replay",
                "--scenario",
                "r1-same-id-create",
                "--strategy",
                "safe",
                "--schedule",
                "0",
                "--backend",
                "mysql",
            ],
            "--backend",
        ),
    ] {
        let output = cusim(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stderr(&output).contains(flag), "{args:?}: {}", stderr(&output));
    }
    // A flag the chosen scheduler would not read.
    for (args, expected) in [
        (&["--max-preemptions", "2"][..], "--max-preemptions applies only to --scheduler exhaustive"),
        (&["--scheduler", "random", "--depth", "2"], "--depth applies only to --scheduler pct"),
        (&["--scheduler", "exhaustive", "--seed", "4"], "--seed applies only to --scheduler random or pct"),
        (&["--reduction", "sleep-sets"], "--reduction applies only to --scheduler exhaustive"),
    ] {
        let mut all = vec!["explore", "--scenario", "r1-same-id-create", "--strategy", "safe"];
        all.extend_from_slice(args);
        let output = cusim(&all);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stderr(&output).contains(expected), "{args:?}: {}", stderr(&output));
    }
    // A regression folder that cannot be made.
    let file = write_temp("not-a-dir", "");
    let output = cusim(&[
        "explore",
        "--scenario",
        "r1-same-id-create",
        "--strategy",
        "legacy",
        "--seeds",
        "20",
        "--shrink",
        "--save-regressions",
        &file,
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains(&file), "{}", stderr(&output));
}

/// `cusim` on a pseudo-terminal (util-linux's `script`, which Debian
/// always has): what a person at a terminal sees, stdout and stderr.
fn on_a_terminal(args: &str) -> String {
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_cusim"));
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("script runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn progress_shows_on_a_terminal_only_and_never_with_json() {
    let explore = "explore --scenario r1-same-id-create --strategy safe --seeds 5000";
    // Not a terminal: only the result, nothing on stderr.
    let args: Vec<&str> = explore.split(' ').collect();
    let piped = cusim(&args);
    assert_eq!(piped.status.code(), Some(0));
    assert_eq!(stderr(&piped), "", "no progress when stderr is not a terminal");
    // A terminal: a bar of 5000 schedules, then the result.
    let shown = on_a_terminal(explore);
    assert!(shown.contains("/5000"), "a progress bar: {shown:?}");
    assert!(shown.contains("5000 schedules"), "and the result: {shown:?}");
    // A terminal, but --json: the object alone.
    let json = on_a_terminal(&format!("{explore} --json"));
    assert!(!json.contains("/5000"), "no progress bar with --json: {json:?}");
    let object: serde_json::Value =
        serde_json::from_str(json.trim()).expect("stdout is the JSON object alone");
    assert_eq!(object["schedules_run"], 5000);
}

#[test]
fn explore_counts_requests_failed_by_a_service_they_did_not_need() {
    // A check that fills a name: safe invalidates the cache inside its
    // transaction and refuses to go on without it; the modelled
    // strategies shrug the cache off.
    let path = write_temp(
        "availability.json",
        r#"{"name": "fill-with-the-cache-down",
            "products": [{"id": "free", "group": "main", "is_default": true, "kind": "free", "features": {"words": 10}}],
            "customers": [{"id": "cus_1", "email": "a@example.com"}],
            "requests": [{"op": "check", "customer_id": "cus_1", "feature_id": "words", "customer_data": {"name": "Ann"}}],
            "faults": [{"request": 0, "at": "cache_invalidate", "kind": "cache_down"}]}"#,
    );
    for (strategy, unneeded) in [("legacy", 0), ("transactional", 0), ("safe", 3)] {
        let output =
            cusim(&["explore", "--scenario", &path, "--strategy", strategy, "--seeds", "3", "--json"]);
        assert_eq!(output.status.code(), Some(0), "{strategy}: {}", stderr(&output));
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(json["availability"]["requests"], 3, "{strategy}");
        assert_eq!(json["availability"]["failed"], unneeded, "{strategy}");
        assert_eq!(json["availability"]["failed_by_unneeded_service"], unneeded, "{strategy}");
    }
}

#[test]
fn reductions_exhaust_a_space_in_fewer_schedules_and_say_so() {
    let run = |reduction: Option<&str>, extra: &[&str]| {
        let mut args = vec![
            "explore",
            "--scenario",
            "r1-same-id-create",
            "--strategy",
            "safe",
            "--scheduler",
            "exhaustive",
            "--json",
        ];
        if let Some(reduction) = reduction {
            args.extend(["--reduction", reduction]);
        }
        args.extend(extra);
        let output = cusim(&args);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let count = |v: &serde_json::Value| v["schedules_run"].as_u64().unwrap();
    let plain = run(Some("none"), &["--max-ticks", "0"]);
    let sleep = run(Some("sleep-sets"), &["--max-ticks", "0"]);
    let default = run(None, &["--max-ticks", "0"]);
    assert_eq!(plain["reduction"], "none");
    assert_eq!(sleep["reduction"], "sleep_sets");
    // States cached are the default of the exhaustive scheduler; a search
    // split over threads takes source sets.
    assert_eq!(default["reduction"], "states");
    let split = run(None, &["--max-ticks", "0", "--threads", "2"]);
    assert_eq!(split["reduction"], "source_sets");
    for report in [&plain, &sleep, &default, &split] {
        assert_eq!(report["exhausted"], true);
        assert_eq!(report["completeness"], "complete");
    }
    assert!(count(&sleep) * 2 < count(&plain), "{} vs {}", count(&sleep), count(&plain));
    assert!(count(&default) <= count(&sleep));
    assert!(count(&split) <= count(&sleep));
    assert_eq!(plain["redundant_runs"], 0);
    // A bound that cuts schedules: plain search is complete within it; a
    // reduced one claims nothing.
    let bounded_plain = run(Some("none"), &["--max-ticks", "0", "--max-preemptions", "1"]);
    assert_eq!(bounded_plain["completeness"], "complete_within_bound");
    let bounded = run(None, &["--max-ticks", "0", "--max-preemptions", "1"]);
    assert!(["bounded", "complete"].contains(&bounded["completeness"].as_str().unwrap()), "{bounded}");
    // A budget that runs out.
    let cut = run(None, &["--seeds", "3"]);
    assert_eq!(cut["completeness"], "partial");
    assert_eq!(count(&cut), 3);
    let pct = cusim(&[
        "explore",
        "--scenario",
        "r1-same-id-create",
        "--strategy",
        "safe",
        "--seeds",
        "2",
        "--json",
    ]);
    let pct: serde_json::Value = serde_json::from_slice(&pct.stdout).unwrap();
    assert_eq!(pct["completeness"], "sampled");
}

#[test]
fn shards_of_an_exhaustive_search_add_up_to_it() {
    let run = |shard: Option<&str>| {
        let mut args = vec![
            "explore",
            "--scenario",
            "r2-stale-cache",
            "--strategy",
            "legacy",
            "--scheduler",
            "exhaustive",
            "--json",
        ];
        match shard {
            Some(shard) => args.extend(["--shard", shard]),
            // Shards split source sets, the default of a split search.
            None => args.extend(["--reduction", "source-sets"]),
        }
        let output = cusim(&args);
        assert!(output.status.code().is_some_and(|c| c <= 1), "{}", stderr(&output));
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let whole = run(None);
    let parts = [run(Some("1/2")), run(Some("2/2"))];
    let count = |v: &serde_json::Value| v["schedules_run"].as_u64().unwrap();
    assert_eq!(count(&parts[0]) + count(&parts[1]), count(&whole));
    assert_eq!(parts[1]["shard"], "2/2");
    assert!(whole.get("shard").is_none());
    assert_eq!(parts[0]["reduction"], whole["reduction"]);
    let invariants = |v: &serde_json::Value| {
        let mut found: Vec<String> = v["violations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| format!("{} {}", f["invariant"], f["race"]))
            .collect();
        found.sort();
        found.dedup();
        found
    };
    let mut union: Vec<String> = parts.iter().flat_map(invariants).collect();
    union.sort();
    union.dedup();
    assert_eq!(union, invariants(&whole));
    for bad in ["0/2", "3/2", "x"] {
        let output = cusim(&["explore", "--all", "--shard", bad]);
        assert_eq!(output.status.code(), Some(2), "{bad}");
        assert!(stderr(&output).contains("expected I/N"), "{bad}: {}", stderr(&output));
    }
}

#[test]
fn shards_of_explore_all_split_its_pairs() {
    let run = |shard: Option<&str>| {
        let mut args = vec!["explore", "--all", "--seeds", "20", "--json"];
        if let Some(shard) = shard {
            args.extend(["--shard", shard]);
        }
        let output = cusim(&args);
        assert!(output.status.code().is_some_and(|c| c <= 1), "{}", stderr(&output));
        let reports: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
        reports
            .into_iter()
            .map(|r| {
                let mut r = r;
                r.as_object_mut().unwrap().remove("shard");
                (format!("{} {}", r["scenario"], r["strategy"]), r.to_string())
            })
            .collect::<std::collections::BTreeMap<String, String>>()
    };
    let whole = run(None);
    let mut parts = run(Some("1/2"));
    let second = run(Some("2/2"));
    assert!(!parts.is_empty() && !second.is_empty());
    assert!(parts.keys().all(|k| !second.contains_key(k)), "a pair ran in both shards");
    parts.extend(second);
    assert_eq!(parts, whole);
}
