//! Starting `cusim serve` and running `cusim check` against it, for the
//! checker's tests (in memory, and on Postgres + Redis).

#![allow(dead_code)] // Each test binary uses its part.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Output, Stdio};

use serde_json::Value;

pub const KEY: &str = "am_sk_test_checker";

/// A `cusim serve` child process, killed when dropped.
pub struct Server {
    child: Child,
    /// Kept open: the server's stdout.
    _stdout: BufReader<ChildStdout>,
    pub url: String,
}

impl Server {
    /// Starts `cusim serve --strategy STRATEGY` on a free port, with `extra` arguments.
    pub fn start(strategy: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cusim"))
            .args([
                "serve",
                "--strategy",
                strategy,
                "--listen",
                "127.0.0.1:0",
                "--key",
                &format!("{KEY}=org_1"),
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cusim serve starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("cusim serve prints its address");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {line:?}"))
            .to_owned();
        Server { child, _stdout: stdout, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cusim-check-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `cusim check` with `args`.
pub fn cusim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cusim")).args(args).output().expect("cusim runs")
}

/// Runs `cusim check --json` against `url`, its history kept at `history`;
/// its exit code and report.
pub fn check(url: &str, history: &std::path::Path, args: &[&str]) -> (i32, Value) {
    let history = history.to_str().unwrap();
    let mut all = vec!["check", "--target", url, "--secret-key", KEY, "--json", "--history", history];
    all.extend_from_slice(args);
    let output = cusim(&all);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("not a JSON report ({e}): {stdout}\nstderr: {}", String::from_utf8_lossy(&output.stderr))
    });
    (output.status.code().expect("an exit code"), report)
}

/// The races suspected by a report's findings.
pub fn suspects(report: &Value) -> BTreeSet<String> {
    findings(report)
        .iter()
        .flat_map(|f| f["suspects"].as_array().unwrap().iter())
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

/// The invariants a report's findings broke.
pub fn invariants(report: &Value) -> BTreeSet<String> {
    findings(report).iter().map(|f| f["invariant"].as_str().unwrap().to_owned()).collect()
}

pub fn findings(report: &Value) -> &Vec<Value> {
    report["findings"].as_array().expect("findings")
}

/// Asserts the legacy strategy was caught: R1, R2, R4 and R5 suspected,
/// and usage lost or counted twice.
pub fn assert_legacy_caught(code: i32, report: &Value) {
    assert_eq!(code, 1, "{report:#}");
    assert!(legacy_caught(report), "R1, R2, R4, R5 and lost usage: {:?}\n{report:#}", suspects(report));
}

/// Whether a report shows what `legacy` must: R1, R2, R4 and R5
/// suspected, and usage lost.
pub fn legacy_caught(report: &Value) -> bool {
    let suspects = suspects(report);
    ["R1", "R2", "R4", "R5"].iter().all(|race| suspects.contains(*race))
        && invariants(report).contains("usage_conserved")
}

/// Runs at most this many checks, each with its own seed, until one shows
/// what a test waits for: races need the server's threads to interleave,
/// which no seed forces, so a test bounds its runs and says how many it
/// took (none of them is ever retried after a sleep).
pub const MAX_RUNS: u64 = 3;

/// `check` with seeds 3, 4, … until `wanted(report)`, at most
/// [`MAX_RUNS`] times: the runs made, and the last exit code and report.
pub fn check_until(
    url: &str,
    history: &std::path::Path,
    args: &[&str],
    wanted: impl Fn(&Value) -> bool,
) -> (u64, i32, Value) {
    let mut last = None;
    for run in 1..=MAX_RUNS {
        let seed = (2 + run).to_string();
        let mut all = args.to_vec();
        all.extend(["--seed", &seed]);
        let (code, report) = check(url, history, &all);
        if wanted(&report) {
            eprintln!("caught in run {run} of at most {MAX_RUNS} (seed {seed})");
            return (run, code, report);
        }
        last = Some((code, report));
    }
    let (code, report) = last.expect("at least one run");
    (MAX_RUNS, code, report)
}

/// Asserts a clean report: exit 0, no finding, calls made.
pub fn assert_clean(code: i32, report: &Value) {
    assert_eq!(findings(report).len(), 0, "{report:#}");
    assert_eq!(code, 0);
    assert!(report["calls"].as_u64().unwrap() > 500, "{report:#}");
}

/// Runs `cusim check --judge HISTORY --reproduce --strategy STRATEGY`
/// (scenarios written under `scenarios`, `extra` added); its exit code
/// and JSON report.
pub fn reproduce(
    history: &std::path::Path,
    strategy: &str,
    scenarios: &std::path::Path,
    extra: &[&str],
) -> (i32, Value) {
    let (history, scenarios) = (history.to_str().unwrap(), scenarios.to_str().unwrap());
    let mut args = vec![
        "check",
        "--judge",
        history,
        "--json",
        "--reproduce",
        "--strategy",
        strategy,
        "--scenarios",
        scenarios,
    ];
    args.extend_from_slice(extra);
    let output = cusim(&args);
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}): {}", String::from_utf8_lossy(&output.stderr)));
    (output.status.code().expect("an exit code"), report)
}
