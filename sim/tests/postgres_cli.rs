//! `cusim replay --backend postgres` against a real server (needs
//! `DATABASE_URL`, a role that may create roles and schemas: `cargo xtask
//! test postgres` starts a throwaway one). Built only with the `pg-tests`
//! feature.

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
fn a_legacy_race_replays_on_postgres_with_the_same_answers_and_verdict() {
    let output = replay("r1-same-id-create", "legacy", "0.1.1.1", &database_url(), &[]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("VIOLATED no_internal_error"), "{stdout}");
    assert!(stdout.contains("violated there: no_internal_error"), "{stdout}");
    assert!(stdout.contains("postgres agrees with the model"), "{stdout}");
}

#[test]
fn a_safe_schedule_with_lock_waits_agrees_and_passes() {
    // Request 1 inserts and holds its transaction; request 0's insert waits.
    let output = replay("r1-same-id-create", "safe", "1.1.1.1.0.0.0.0", &database_url(), &["--json"]);
    assert_eq!(output.status.code(), Some(0), "{}{}", text(&output.stdout), text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let postgres = &json["postgres"];
    assert_eq!(postgres["agrees"], true, "{postgres}");
    assert_eq!(postgres["postgres_verdict"], serde_json::json!([]), "{postgres}");
    assert!(postgres["waits_parked"].as_u64().unwrap() >= 1, "the schedule makes a request wait: {postgres}");
}

#[test]
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
