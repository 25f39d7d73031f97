//! `cusim replay --backend postgres` against a real server (needs
//! `DATABASE_URL`, a role that may create roles and schemas: `cargo xtask
//! test postgres` starts a throwaway one and runs them with `--ignored`).
//! Every test is ignored by a plain `cargo test`.

use std::process::{Command, Output};

use sqlx::{Connection, PgConnection};

fn database_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL must name a Postgres server (`cargo xtask test postgres` starts a throwaway one)",
    )
}

fn replay(scenario: &str, strategy: &str, schedule: &str, url: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cusim"))
        .args(["replay", "--scenario", scenario, "--strategy", strategy, "--schedule", schedule])
        .args(["--backend", "postgres", "--database-url", url])
        .args(extra)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("the cusim binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `url` with its user and password replaced.
fn with_credentials(url: &str, user: &str, password: &str) -> String {
    let rest = url.split_once('@').map_or(url, |(_, rest)| rest);
    format!("postgres://{user}:{password}@{rest}")
}

/// `url` naming another database.
fn with_database(url: &str, database: &str) -> String {
    let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
    format!("{base}/{database}")
}

#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn a_legacy_race_replays_on_postgres_with_the_same_answers_and_state() {
    let output = replay("r1-same-id-create", "legacy", "0.1.0.1.1.1", &database_url(), &[]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("VIOLATED no_internal_error"), "{stdout}");
    assert!(stdout.contains("the model's verdict: no_internal_error"), "{stdout}");
    assert!(stdout.contains("postgres agrees with the model"), "{stdout}");
}

#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn a_safe_schedule_with_lock_waits_agrees_and_passes() {
    // Request 1 inserts and holds its transaction; request 0's insert waits.
    let output = replay("r1-same-id-create", "safe", "0.1.1.1.1.1.0.0.0.0", &database_url(), &["--json"]);
    assert_eq!(output.status.code(), Some(0), "{}{}", text(&output.stdout), text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let postgres = &json["postgres"];
    assert_eq!(postgres["agrees"], true, "{postgres}");
    assert_eq!(json["violations"], serde_json::json!([]), "{json}");
    assert!(postgres["waits_parked"].as_u64().unwrap() >= 1, "the schedule makes a request wait: {postgres}");
}

#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn bad_database_input_is_reported_clearly_with_exit_2() {
    let url = database_url();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut admin = PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(
            "DO $$ BEGIN \
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cusim_no_create') THEN \
                 CREATE ROLE cusim_no_create LOGIN PASSWORD 'secret-pw'; \
               END IF; \
             END $$",
        )
        .execute(&mut admin)
        .await
        .unwrap();
    });
    let cases = [
        (with_credentials(&url, "postgres", "wrong-pw"), "password authentication failed"),
        (with_database(&url, "no_such_database"), "database \"no_such_database\" does not exist"),
        (with_credentials(&url, "cusim_no_create", "secret-pw"), "cannot prepare schema"),
    ];
    for (bad, expected) in cases {
        let output = replay("r1-same-id-create", "legacy", "0.1", &bad, &[]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.starts_with("error: --database-url: "), "{bad}: {stderr}");
        assert!(stderr.contains(expected), "{bad}: expected {expected:?} in {stderr}");
        assert!(
            !stderr.contains("wrong-pw") && !stderr.contains("secret-pw"),
            "no password printed: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .expect("REDIS_URL must name a Redis server (`cargo xtask test postgres` starts a throwaway one)")
}

#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn a_cache_race_replays_on_postgres_and_redis_with_every_cache_answer_compared() {
    let output = replay(
        "r2-stale-cache",
        "legacy",
        "0.1.0.0.1.1.1",
        &database_url(),
        &["--redis-url", &redis_url(), "--json"],
    );
    assert_eq!(output.status.code(), Some(1), "{}{}", text(&output.stdout), text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let postgres = &json["postgres"];
    assert_eq!(postgres["cache"], "redis", "{postgres}");
    assert_eq!(postgres["agrees"], true, "{postgres}");
    assert_eq!(postgres["cache_agrees"], true, "{postgres}");
    // The cache Redis holds at the end is the model's, which breaks fresh_cache.
    assert!(
        postgres["model_verdict"].as_array().unwrap().iter().any(|v| v == "fresh_cache"),
        "on Redis too, the cache holds the customer without its defaults: {postgres}"
    );
    let cache_ops = json["trace"].as_array().unwrap().iter().filter(|e| e["point"] == "cache_write").count();
    assert!(cache_ops > 0, "the trace shows the cache writes");
}

#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn bad_redis_input_is_reported_clearly_with_exit_2_before_any_work() {
    let url = redis_url();
    let wrong_password = url.replacen("redis://:", "redis://:wrong-", 1);
    let free_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cases = [
        ("http://127.0.0.1:6379".to_owned(), "--redis-url: not a Redis URL"),
        (wrong_password, "--redis-url: the server refused the password"),
        (format!("redis://127.0.0.1:{free_port}"), "--redis-url: cannot connect"),
    ];
    for (bad, says) in cases {
        let output = replay("r1-same-id-create", "legacy", "0", &database_url(), &["--redis-url", &bad]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains(says), "{bad}: {stderr}");
        assert!(text(&output.stdout).is_empty(), "{bad}: no work was done before the error");
    }
    let mem = Command::new(env!("CARGO_BIN_EXE_cusim"))
        .args(["replay", "--scenario", "r1-same-id-create", "--strategy", "legacy", "--schedule", "0"])
        .args(["--redis-url", &url])
        .output()
        .unwrap();
    assert_eq!(mem.status.code(), Some(2));
    assert!(text(&mem.stderr).contains("--redis-url needs --backend postgres"), "{}", text(&mem.stderr));
}

/// A TCP relay to the test Redis server that dies (closes every
/// connection and stops listening) after relaying `commands` writes from
/// its clients: a Redis server that dies mid-run.
fn dying_redis(commands: usize) -> String {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let url = redis_url();
    let (password, address) = url.trim_start_matches("redis://").split_once('@').unwrap();
    let (address, password) = (address.to_owned(), password.trim_start_matches(':').to_owned());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let relayed = Arc::new(AtomicUsize::new(0));
    let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { break };
            if relayed.load(Ordering::SeqCst) >= commands {
                break; // dead: stop listening
            }
            let server = TcpStream::connect(&address).unwrap();
            open.lock().unwrap().extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
            let (mut from_client, mut to_server) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut from_server, mut to_client) = (server, client);
            let (relayed, open) = (Arc::clone(&relayed), Arc::clone(&open));
            std::thread::spawn(move || {
                let mut buffer = [0u8; 65536];
                while let Ok(n) = from_client.read(&mut buffer) {
                    if n == 0 || relayed.fetch_add(1, Ordering::SeqCst) >= commands {
                        break;
                    }
                    if to_server.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
                // The server dies: every connection closes.
                for stream in open.lock().unwrap().iter() {
                    let _ = stream.shutdown(Shutdown::Both);
                }
            });
            std::thread::spawn(move || std::io::copy(&mut from_server, &mut to_client));
        }
    });
    format!("redis://:{password}@127.0.0.1:{port}")
}

#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn a_redis_that_dies_mid_run_ends_the_replay_with_a_clear_error_and_keeps_the_report() {
    // Enough writes to connect, empty the namespace and run a script or
    // two; far fewer than the run makes.
    let url = dying_redis(5);
    let output = replay("r8-lost-usage-overwrite", "legacy", "0", &database_url(), &["--redis-url", &url]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("error: the replay could not finish: request"), "{stderr}");
    assert!(stderr.contains("Redis failed"), "{stderr}");
    // The report is all there: the model's trace and verdict, and how far
    // the comparison went.
    assert!(stdout.contains("r8-lost-usage-overwrite under legacy, schedule"), "{stdout}");
    assert!(stdout.contains("cache_read"), "{stdout}");
    assert!(stdout.contains("VIOLATED") || stdout.contains("verdict: no invariant violated"), "{stdout}");
    assert!(stdout.contains("postgres (cache on Redis): the replay ended early"), "{stdout}");
}

mod checking;
#[path = "postgres_cli/drive.rs"]
mod drive;

/// `cusim serve` on Postgres + Redis, in a schema of its own.
fn pg_server(strategy: &str, schema: &str) -> checking::Server {
    let (url, redis) = (database_url(), redis_url());
    checking::Server::start(
        strategy,
        &[
            "--database-url",
            &url,
            "--redis-url",
            &redis,
            "--schema",
            schema,
            "--jitter",
            "5",
            "--jitter-max-ms",
            "3",
        ],
    )
}

#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn check_catches_legacy_on_postgres_and_redis() {
    let schema = format!("check_legacy_{}", std::process::id());
    let server = pg_server("legacy", &schema);
    let dir = checking::scratch("pg-legacy");
    let history = dir.join("h.json");
    let url = database_url();
    let args = ["--ops", "2000", "--database-url", &url, "--schema", &schema];
    let r4_in_rows = |report: &serde_json::Value| {
        checking::findings(report).iter().any(|f| {
            f["message"].as_str().unwrap().starts_with("committed rows:")
                && f["invariant"] == "unique_customer"
                && f["suspects"] == serde_json::json!(["R4"])
        })
    };
    let (_, code, report) = checking::check_until(&server.url, &history, &args, |report| {
        checking::legacy_caught(report) && r4_in_rows(report)
    });
    checking::assert_legacy_caught(code, &report);
    // The committed rows show the duplicate id-less customers (R4) too.
    let from_rows: Vec<&serde_json::Value> = checking::findings(&report)
        .iter()
        .filter(|f| f["message"].as_str().unwrap().starts_with("committed rows:"))
        .collect();
    assert!(
        from_rows
            .iter()
            .any(|f| f["invariant"] == "unique_customer" && f["suspects"] == serde_json::json!(["R4"])),
        "{report:#}"
    );
    // Back to the model: R1 and R4 each as a schedule whose trace holds it.
    let (_, reproduced) = checking::reproduce(&history, "legacy", &dir.join("scenarios"), &[]);
    let races: Vec<&serde_json::Value> = reproduced["reproductions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["schedule"].is_string())
        .flat_map(|r| r["races"].as_array().unwrap())
        .collect();
    for race in ["R1", "R4"] {
        assert!(races.contains(&&serde_json::json!(race)), "{race} not reproduced: {reproduced:#}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn check_finds_nothing_wrong_with_safe_on_postgres_and_redis() {
    let schema = format!("check_safe_{}", std::process::id());
    let server = pg_server("safe", &schema);
    let dir = checking::scratch("pg-safe");
    let url = database_url();
    let args = ["--ops", "2000", "--seed", "5", "--database-url", &url, "--schema", &schema];
    let (code, report) = checking::check(&server.url, &dir.join("h.json"), &args);
    checking::assert_clean(code, &report);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// On Postgres + Redis, against each older generation of the API with no
/// route or version flag: the profile is learned and named, `legacy` is
/// caught (R4, and R1 or R2), `safe` is clean. (The current generation is
/// the two tests above.)
#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn check_learns_each_generation_on_postgres_and_redis() {
    let dir = checking::scratch("pg-generations");
    let url = database_url();
    for generation in ["2026-01", "2026-02"] {
        for strategy in ["legacy", "safe"] {
            let schema = format!("check_{}_{strategy}_{}", generation.replace('-', "_"), std::process::id());
            let (database, redis) = (database_url(), redis_url());
            let server = checking::Server::start(
                strategy,
                &[
                    "--generation",
                    generation,
                    "--database-url",
                    &database,
                    "--redis-url",
                    &redis,
                    "--schema",
                    &schema,
                    "--jitter",
                    "5",
                    "--jitter-max-ms",
                    "3",
                ],
            );
            let history = dir.join(format!("{generation}-{strategy}.json"));
            let args = ["--ops", "2000", "--database-url", &url, "--schema", &schema];
            let (code, report) = if strategy == "legacy" {
                let wanted = |report: &serde_json::Value| {
                    let suspects = checking::suspects(report);
                    suspects.contains("R4") && (suspects.contains("R1") || suspects.contains("R2"))
                };
                let (runs, code, report) = checking::check_until(&server.url, &history, &args, wanted);
                assert!(wanted(&report), "{generation}: not caught in {runs} runs: {report:#}");
                (code, report)
            } else {
                let (code, report) =
                    checking::check(&server.url, &history, &[&args[..], &["--seed", "5"]].concat());
                checking::assert_clean(code, &report);
                (code, report)
            };
            assert_eq!(code, if strategy == "legacy" { 1 } else { 0 });
            assert_eq!(report["generations"], serde_json::json!([generation]), "{report:#}");
            let notes = report["notes"].as_array().unwrap();
            assert!(
                notes.iter().any(|n| n.as_str().unwrap().starts_with("committed rows: cusim layout")),
                "cusim serve's tables are found as the cusim layout: {notes:?}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The modelled server's own layout (`--rows-schema autumn`), on tables of
/// its shape this test creates and fills from a check run's read-back:
/// clean as filled; a planted id-less duplicate, a planted missing default
/// product and a planted balance that disagrees with the events ledger
/// are each reported, naming their rows; a schema holding none of the
/// run's customers is exit 2.
#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn the_autumn_layout_is_judged_on_its_own_tables() {
    let dir = checking::scratch("autumn-rows");
    let server = checking::Server::start("safe", &["--generation", "2026-02"]);
    let workload = dir.join("w.json");
    std::fs::write(&workload, r#"{"name": "w", "blocks": {"shared_email": 1, "usage": 2}}"#).unwrap();
    let history = dir.join("h.json");
    let (code, report) = checking::check(
        &server.url,
        &history,
        &["--workload", workload.to_str().unwrap(), "--ops", "120", "--clients", "3"],
    );
    assert_eq!((code, checking::findings(&report).len()), (0, 0), "{report:#}");
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&history).unwrap()).unwrap();

    // The read-back, as the modelled server's rows.
    let schema = format!("autumn_rows_{}", std::process::id());
    let mut sql = format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; SET search_path TO {schema};
         CREATE TABLE customers (internal_id text PRIMARY KEY, org_id text NOT NULL, env text NOT NULL,
           id text, email text, name text, created_at numeric NOT NULL DEFAULT 0);
         CREATE TABLE customer_products (id text PRIMARY KEY, internal_customer_id text NOT NULL,
           internal_product_id text NOT NULL, product_id text, status text);
         CREATE TABLE entitlements (id text PRIMARY KEY, feature_id text, allowance numeric);
         CREATE TABLE customer_entitlements (id text PRIMARY KEY, internal_customer_id text NOT NULL,
           entitlement_id text NOT NULL, feature_id text, balance numeric NOT NULL DEFAULT 0);
         CREATE TABLE events (id text PRIMARY KEY, internal_customer_id text, event_name text NOT NULL,
           value numeric, customer_id text NOT NULL);
         INSERT INTO entitlements VALUES ('ent_free_words', 'words', 1000);\n"
    );
    let mut tracked = None;
    let mut idless = None;
    for (n, event) in saved["events"].as_array().unwrap().iter().enumerate() {
        if event["sender"] != "readback" || event["outcome"]["outcome"] != "ok" {
            continue;
        }
        let body = &event["outcome"]["body"];
        let internal = body["autumn_id"].as_str().unwrap();
        let quote = |v: &serde_json::Value| v.as_str().map_or("NULL".to_owned(), |s| format!("'{s}'"));
        let usage = body["balances"]["words"]["usage"].as_i64().unwrap();
        sql += &format!(
            "INSERT INTO customers (internal_id, org_id, env, id, email) VALUES ('{internal}', 'org_1', 'sandbox', {}, {});
             INSERT INTO customer_products VALUES ('cp{n}', '{internal}', 'prod_free', 'free', 'active');
             INSERT INTO customer_entitlements VALUES ('ce{n}', '{internal}', 'ent_free_words', 'words', {});
             INSERT INTO events VALUES ('ev{n}', '{internal}', 'words', {usage}, {});\n",
            quote(&body["id"]),
            quote(&body["email"]),
            1000 - usage,
            quote(&body["id"]).replace("NULL", "''"),
        );
        if usage > 0 && tracked.is_none() {
            tracked = Some((internal.to_owned(), body["id"].as_str().unwrap().to_owned()));
        }
        if body["id"].is_null() && idless.is_none() {
            idless = Some((internal.to_owned(), body["email"].as_str().unwrap().to_owned()));
        }
    }
    let (tracked_internal, tracked_id) = tracked.expect("the run tracked usage");
    let (idless_internal, idless_email) = idless.expect("the run made an id-less customer");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let execute = |sql: String| {
        runtime.block_on(async {
            let mut admin = PgConnection::connect(&database_url()).await.unwrap();
            // The SQL is this test's own, its values from the run's read-back.
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.unwrap();
        })
    };
    execute(sql);
    let url = database_url();
    let judge = |extra: &[&str]| {
        let mut args = vec![
            "check",
            "--judge",
            history.to_str().unwrap(),
            "--json",
            "--database-url",
            &url,
            "--schema",
            &schema,
        ];
        args.extend_from_slice(extra);
        checking::cusim(&args)
    };
    let clean = judge(&["--rows-schema", "autumn"]);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean.stdout));
    let clean: serde_json::Value = serde_json::from_slice(&clean.stdout).unwrap();
    assert!(clean["notes"].to_string().contains("committed rows: autumn layout"), "{clean:#}");
    // Found without the flag too: the schema holds the autumn tables.
    assert_eq!(judge(&[]).status.code(), Some(0));

    // Three defects, planted.
    execute(format!(
        "SET search_path TO {schema};
         INSERT INTO customers (internal_id, org_id, env, id, email) VALUES ('cus_planted', 'org_1', 'sandbox', NULL, '{}');
         INSERT INTO customer_products VALUES ('cp_planted', 'cus_planted', 'prod_free', 'free', 'active');
         DELETE FROM customer_products WHERE internal_customer_id = '{idless_internal}';
         UPDATE customer_entitlements SET balance = balance + 1 WHERE internal_customer_id = '{tracked_internal}';",
        idless_email.to_uppercase()
    ));
    let found = judge(&["--rows-schema", "autumn"]);
    assert_eq!(found.status.code(), Some(1), "{}", text(&found.stdout));
    let found: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap();
    let messages: Vec<(String, String)> = checking::findings(&found)
        .iter()
        .map(|f| (f["invariant"].as_str().unwrap().to_owned(), f["message"].as_str().unwrap().to_owned()))
        .collect();
    let has = |invariant: &str, parts: &[&str]| {
        messages.iter().any(|(i, m)| i == invariant && parts.iter().all(|p| m.contains(p)))
    };
    assert!(has("unique_customer", &["cus_planted", &idless_internal]), "{messages:#?}");
    assert!(has("defaults_present", &[&idless_internal, "holds none"]), "{messages:#?}");
    assert!(
        has("usage_conserved", &[&tracked_id, &tracked_internal, "disagrees with its events ledger"]),
        "{messages:#?}"
    );
    assert_eq!(messages.len(), 3, "nothing else: {messages:#?}");

    // None of the run's customers: nothing judged is not clean.
    execute(format!("SET search_path TO {schema}; DELETE FROM customers;"));
    let empty = judge(&["--rows-schema", "autumn"]);
    assert_eq!(empty.status.code(), Some(2));
    assert!(text(&empty.stderr).contains("matched no customer"), "{}", text(&empty.stderr));
    // A layout whose tables the schema lacks.
    let wrong = judge(&["--rows-schema", "cusim"]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(text(&wrong.stderr).contains("has no table balances"), "{}", text(&wrong.stderr));
    execute(format!("DROP SCHEMA {schema} CASCADE"));
    std::fs::remove_dir_all(&dir).unwrap();
}
