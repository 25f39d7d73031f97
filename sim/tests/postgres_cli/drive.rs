//! `cusim drive` against `cusim serve` on the throwaway Postgres and Redis:
//! the server started by the drive with its store URLs pointing at the
//! proxies, its statements let through one mover at a time.

use std::process::{Command, Output};

use serde_json::Value;

use super::{database_url, redis_url, text};

const KEY: &str = "am_sk_test_drive";

/// The Redis database (of the shared test server) that the test of
/// `--reset-sql` flushes; no other test uses it.
const RESET_DB: u32 = 7;

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `cusim drive` on `scenario` against `cusim serve --strategy strategy`
/// (in a schema of its own, its cache on Redis), with `extra` flags
/// (`{schema}` in them standing for the server's schema).
fn drive(scenario: &str, strategy: &str, extra: &[&str]) -> (Option<i32>, Value, String) {
    drive_on(&redis_url(), scenario, strategy, extra)
}

/// [`drive`] with the cache on `redis` (a URL that may name a database).
fn drive_on(redis: &str, scenario: &str, strategy: &str, extra: &[&str]) -> (Option<i32>, Value, String) {
    let port = free_port();
    let target = format!("http://127.0.0.1:{port}");
    let schema = format!("drive_{strategy}_{}_{port}", std::process::id());
    let catalog = format!("fixtures/scenarios/{scenario}.json");
    let output: Output = Command::new(env!("CARGO_BIN_EXE_cusim"))
        .args(["drive", "--scenario", scenario, "--target", &target, "--secret-key", KEY])
        .args(["--database-url", &database_url(), "--redis-url", redis, "--json"])
        .args(extra.iter().map(|a| a.replace("{schema}", &schema)))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_cusim"))
        .args(["serve", "--strategy", strategy, "--listen", &format!("127.0.0.1:{port}")])
        .args(["--key", &format!("{KEY}=org_1"), "--catalog", &catalog, "--schema", &schema])
        .args(["--database-url", "{database_url}", "--redis-url", "{redis_url}"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("the cusim binary runs");
    let stdout = text(&output.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (output.status.code(), report, format!("{stdout}{}", text(&output.stderr)))
}

fn invariants(report: &Value) -> Vec<&str> {
    report["findings"]
        .as_array()
        .map_or(Vec::new(), |f| f.iter().filter_map(|f| f["invariant"].as_str()).collect())
}

#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn drive_finds_r1_r4_and_r2_in_legacy_shows_their_statements_and_replays_them() {
    for (scenario, race, invariant) in [
        ("r1-same-id-create", "R1", "no_internal_error"),
        ("r4-idless-duplicates", "R4", "unique_customer"),
        ("r2-stale-cache", "R2", "defaults_present"),
    ] {
        let (code, report, output) = drive(scenario, "legacy", &["--seeds", "50"]);
        assert_eq!(code, Some(1), "{scenario}: {output}");
        let finding = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| {
                f["invariant"] == invariant && f["races"].as_array().unwrap().contains(&Value::from(race))
            })
            .unwrap_or_else(|| panic!("{scenario}: no {invariant} finding suspects {race}: {report:#}"));
        // The real statements of both requests, in the order they ran.
        let statements = finding["statements"].as_array().unwrap();
        for request in [0, 1] {
            assert!(
                statements.iter().any(|s| s["request"] == request && s["store"] == "postgres"),
                "{scenario}: request {request} ran no statement: {finding:#}"
            );
        }
        if race == "R1" {
            assert!(
                statements.iter().any(|s| s["error"] == "23505"),
                "the second insert fails on the unique index: {finding:#}"
            );
        }
        // Its schedule, run again ten times.
        let schedule = finding["schedule"].as_str().unwrap();
        let (code, replayed, output) = drive(scenario, "legacy", &["--replay", schedule, "--repeat", "10"]);
        assert_eq!(code, Some(1), "{output}");
        assert!(invariants(&replayed).contains(&invariant), "{replayed:#}");
        let reproduced = replayed["reproduced"].as_u64().unwrap();
        assert!(reproduced >= 9, "{scenario}: {reproduced} of 10 reproduced: {replayed:#}");
        println!(
            "{race} ({scenario}) at schedule {schedule}: {reproduced} of 10 gave its verdict, {} of 10 its statement order",
            replayed["same_order"]
        );
    }
}

#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn drive_finds_nothing_in_safe_in_200_schedules_of_every_builtin_it_can_send() {
    let mut sent = 0;
    for builtin in cusim_sim::corpus::builtin::BUILTINS {
        let scenario = builtin.scenario().unwrap();
        if let Err(why) = cusim_sim::live::calls::calls_of(&scenario) {
            println!("{}: not sent ({why})", builtin.name());
            continue;
        }
        let (code, report, output) = drive(builtin.name(), "safe", &["--seeds", "200"]);
        assert_eq!(code, Some(0), "{}: {output}", builtin.name());
        assert_eq!(report["schedules_run"], 200, "{report:#}");
        assert_eq!(report["diverged"], serde_json::json!([]), "{report:#}");
        println!(
            "{}: 200 schedules, {} steps, {} lock waits, {} ms",
            builtin.name(),
            report["steps"],
            report["lock_waits"],
            report["elapsed_ms"]
        );
        sent += 1;
    }
    assert!(sent >= 8, "only {sent} built-ins were sent");
}

#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn drive_refuses_bad_input_with_exit_2_and_the_reason() {
    // A database nobody listens on.
    let dead = format!("postgres://postgres@127.0.0.1:{}/postgres", free_port());
    let output = Command::new(env!("CARGO_BIN_EXE_cusim"))
        .args(["drive", "--scenario", "r1-same-id-create", "--target", "http://127.0.0.1:9"])
        .args(["--secret-key", KEY, "--database-url", &dead, "--", "true"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("--database-url: the database cannot be reached"),
        "{}",
        text(&output.stderr)
    );
    // A server command that exits at once.
    let port = free_port();
    let output = Command::new(env!("CARGO_BIN_EXE_cusim"))
        .args(["drive", "--scenario", "r1-same-id-create", "--target", &format!("http://127.0.0.1:{port}")])
        .args([
            "--secret-key",
            KEY,
            "--database-url",
            &database_url(),
            "--",
            "sh",
            "-c",
            "echo cannot start >&2; exit 3",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("exited") && stderr.contains("cannot start"), "{stderr}");
    // A server command that never listens: stopped, with what it started.
    let marker = format!("drive-marker-{}", std::process::id());
    let port = free_port();
    let output = Command::new(env!("CARGO_BIN_EXE_cusim"))
        .args(["drive", "--scenario", "r1-same-id-create", "--target", &format!("http://127.0.0.1:{port}")])
        .args(["--secret-key", KEY, "--database-url", &database_url(), "--start-timeout", "1", "--"])
        .args(["sh", "-c", &format!("sleep 3600; : {marker}")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("did not answer"), "{}", text(&output.stderr));
    let left = Command::new("pgrep").args(["-f", &marker]).output().unwrap();
    assert!(left.stdout.is_empty(), "left behind: {}", text(&left.stdout));
    // A scenario the API cannot send.
    let output = Command::new(env!("CARGO_BIN_EXE_cusim"))
        .args(["drive", "--scenario", "clean-same-id-two-orgs", "--target", "http://127.0.0.1:9"])
        .args(["--secret-key", KEY, "--database-url", &database_url(), "--", "true"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("requests[1]: org/env"), "{}", text(&output.stderr));
}

#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn a_lock_wait_is_parked_and_woken_by_the_scheduler_in_both_orders() {
    // Two creates of one id under safe: whichever inserts second waits on
    // the first's uncommitted row.
    let (code, report, output) = drive("r1-same-id-create", "safe", &["--seeds", "30"]);
    assert_eq!(code, Some(0), "{output}");
    let parked = report["parked"].as_array().unwrap();
    for request in [0, 1] {
        let seen = parked
            .iter()
            .find(|p| p["request"] == request)
            .unwrap_or_else(|| panic!("request {request} never waited on a lock: {report:#}"));
        // Its schedule again: the same request waits, its wake is a
        // decision, and safe still answers right.
        let schedule = seen["schedule"].as_str().unwrap();
        let (code, replayed, output) =
            drive("r1-same-id-create", "safe", &["--replay", schedule, "--repeat", "3"]);
        assert_eq!(code, Some(0), "{output}");
        let trace = replayed["trace"].as_array().unwrap();
        assert!(
            trace.iter().any(|line| line["request"] == request && line["waited"] == true),
            "request {request} does not wait in {schedule}: {replayed:#}"
        );
        assert_eq!(replayed["reproduced"], 3, "{replayed:#}");
    }
}

#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn a_lost_response_sweep_finds_nothing_in_safe_and_a_db_error_sweep_catches_legacy() {
    for scenario in ["r1-same-id-create", "r2-stale-cache"] {
        let (code, report, output) = drive(scenario, "safe", &["--fault-sweep", "lost_response"]);
        assert_eq!(code, Some(0), "{scenario}: {output}");
        // The base schedule, then one schedule per step it let through.
        let runs = report["schedules_run"].as_u64().unwrap();
        assert!(runs > 10, "{scenario}: only {runs} schedules: {report:#}");
        println!("{scenario}: lost_response at each of {} steps, no finding", runs - 1);
    }
    // The same sweep machinery catches a design that breaks under faults:
    // legacy's create dies between its insert and its defaults.
    let (code, report, output) = drive("r1-same-id-create", "legacy", &["--fault-sweep", "db_error"]);
    assert_eq!(code, Some(1), "{output}");
    let faulted = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["schedule"].as_str().unwrap().contains("!db_error"))
        .unwrap_or_else(|| panic!("no finding under a fault: {report:#}"));
    assert!(
        faulted["statements"].as_array().unwrap().iter().any(|s| s["fault"] == "db_error"),
        "the faulted statement is marked: {faulted:#}"
    );
}

#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn the_exhaustive_scheduler_runs_every_order_within_its_bound_and_the_page_draws_a_finding() {
    // Legacy: every order with at most one preemption, among them the one
    // where both creates look the id up before either inserts.
    let page = std::env::temp_dir().join(format!("cusim-drive-{}.html", std::process::id()));
    let page_arg = page.to_str().unwrap();
    let (code, report, output) = drive(
        "r1-same-id-create",
        "legacy",
        &["--scheduler", "exhaustive", "--max-preemptions", "1", "--seeds", "2000", "--html", page_arg],
    );
    assert_eq!(code, Some(1), "{output}");
    assert_eq!(report["search"]["complete"], true, "{report:#}");
    assert_eq!(report["search"]["max_preemptions"], 1, "{report:#}");
    let runs = report["schedules_run"].as_u64().unwrap();
    assert!(runs > 50, "only {runs} orders: {report:#}");
    println!("legacy: {runs} orders with at most one preemption in {} ms", report["elapsed_ms"]);
    assert!(invariants(&report).contains(&"no_internal_error"), "{report:#}");
    // The page: each finding drawn, a lane per request, the real
    // statements as boxes, each request's answer at its lane's foot.
    let html = std::fs::read_to_string(&page).unwrap();
    std::fs::remove_file(&page).ok();
    for (n, finding) in report["findings"].as_array().unwrap().iter().enumerate() {
        let invariant = finding["invariant"].as_str().unwrap();
        assert!(html.contains(&format!(r#"data-invariant="{invariant}" data-finding="{n}""#)), "{invariant}");
        let schedule = finding["schedule"].as_str().unwrap();
        assert!(html.contains(&format!(r#"id="finding-{n}" data-schedule="{schedule}""#)), "{schedule}");
        let boxes = finding["statements"].as_array().unwrap().len();
        let section = &html[html.find(&format!(r#"id="finding-{n}""#)).unwrap()..];
        let section = &section[..section.find("</section>").unwrap()];
        assert_eq!(section.matches(r#"data-store=""#).count(), boxes, "{invariant}: one box per step");
        assert_eq!(section.matches(r#"class="lane" data-request="#).count(), 2);
        assert!(section.contains("23505") || invariant != "no_internal_error", "{section}");
    }
    // Safe: the same bound, no finding; every order ran, and the lock
    // wait of the second insert was parked and woken in both orders.
    let (code, report, output) = drive(
        "r1-same-id-create",
        "safe",
        &["--scheduler", "exhaustive", "--max-preemptions", "1", "--seeds", "2000"],
    );
    assert_eq!(code, Some(0), "{output}");
    assert_eq!(report["search"]["complete"], true, "{report:#}");
    assert_eq!(report["parked"].as_array().unwrap().len(), 2, "{report:#}");
    let runs = report["schedules_run"].as_u64().unwrap();
    let diverged = report["diverged"].as_array().unwrap().len() as u64;
    println!("safe: {runs} orders with at most one preemption, {diverged} not followed as given");
    assert!(diverged * 10 <= runs, "most orders must repeat their prefix: {report:#}");
}

#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn with_schema_the_committed_rows_are_judged_too() {
    // Legacy's duplicate id-less customers are in its rows.
    let (code, report, output) =
        drive("r4-idless-duplicates", "legacy", &["--seeds", "50", "--schema", "{schema}"]);
    assert_eq!(code, Some(1), "{output}");
    let rows = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["seen_in"] == "rows" && f["invariant"] == "unique_customer")
        .unwrap_or_else(|| panic!("no unique_customer in the rows: {report:#}"));
    assert!(rows["message"].as_str().unwrap().starts_with("committed rows: "), "{rows:#}");
    // Safe's rows keep every invariant, and the schema must hold the tables.
    let (code, report, output) =
        drive("r4-idless-duplicates", "safe", &["--seeds", "20", "--schema", "{schema}"]);
    assert_eq!(code, Some(0), "{output}");
    assert_eq!(report["schedules_run"], 20);
    let (code, _, output) =
        drive("r1-same-id-create", "safe", &["--seeds", "1", "--schema", "drive_no_such_schema"]);
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("--schema drive_no_such_schema"), "{output}");
}

#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn reset_sql_runs_and_the_server_restarts_before_each_schedule() {
    use sqlx::{Connection, PgConnection};
    let table = format!("drive_resets_{}", std::process::id());
    let dir = std::env::temp_dir();
    let sql = dir.join(format!("{table}.sql"));
    std::fs::write(
        &sql,
        format!("CREATE TABLE IF NOT EXISTS public.{table} (n int); INSERT INTO public.{table} VALUES (1);"),
    )
    .unwrap();
    let log = dir.join(format!("{table}.log"));
    let (sql_arg, log_arg) = (sql.to_str().unwrap(), log.to_str().unwrap());
    // FLUSHDB empties the Redis database the drive is given: a database of
    // this test's own, so the other tests' keys on the same server stay.
    let base = redis_url();
    let host_at = base.find("://").map_or(0, |i| i + 3);
    let path_at = base[host_at..].find('/').map_or(base.len(), |i| host_at + i);
    let own_db = format!("{}/{RESET_DB}", &base[..path_at]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let redis_get = |db: &str, key: &str| -> Option<String> {
        runtime.block_on(async {
            let mut conn = redis::Client::open(db).unwrap().get_multiplexed_async_connection().await.unwrap();
            redis::cmd("GET").arg(key).query_async(&mut conn).await.unwrap()
        })
    };
    let redis_set = |db: &str, key: &str| {
        runtime.block_on(async {
            let mut conn = redis::Client::open(db).unwrap().get_multiplexed_async_connection().await.unwrap();
            let () = redis::cmd("SET").arg(key).arg("1").query_async(&mut conn).await.unwrap();
        })
    };
    let marker = format!("{table}_marker");
    redis_set(&own_db, &marker);
    redis_set(&redis_url(), &marker);
    let (code, report, output) = drive_on(
        &own_db,
        "r1-same-id-create",
        "safe",
        &["--seeds", "3", "--reset-sql", sql_arg, "--restart", "--server-log", log_arg],
    );
    assert_eq!(code, Some(0), "{output}");
    assert_eq!(report["schedules_run"], 3, "{report:#}");
    // The SQL ran once per schedule, and the server started once per schedule.
    let resets: i64 = runtime.block_on(async {
        let mut admin = PgConnection::connect(&database_url()).await.unwrap();
        let (n,): (i64,) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM public.{table}")))
                .fetch_one(&mut admin)
                .await
                .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE public.{table}")))
            .execute(&mut admin)
            .await
            .unwrap();
        n
    });
    assert_eq!(resets, 3);
    assert_eq!(redis_get(&own_db, &marker), None, "FLUSHDB emptied the drive's database");
    assert_eq!(redis_get(&redis_url(), &marker).as_deref(), Some("1"), "and no other database");
    runtime.block_on(async {
        let client = redis::Client::open(redis_url().as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: i64 = redis::cmd("DEL").arg(&marker).query_async(&mut conn).await.unwrap();
    });
    let started = std::fs::read_to_string(&log).unwrap().matches("listening on").count();
    assert_eq!(started, 3, "the server's log: {}", std::fs::read_to_string(&log).unwrap());
    // SQL that fails is named, exit 2, and nothing is left running.
    std::fs::write(&sql, "SELEC 1;").unwrap();
    let (code, _, output) =
        drive_on(&own_db, "r1-same-id-create", "safe", &["--seeds", "2", "--reset-sql", sql_arg]);
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("--reset-sql: before schedule 0"), "{output}");
    std::fs::remove_file(&sql).ok();
    std::fs::remove_file(&log).ok();
}
