//! `cargo xtask test`: runs every test mode and ends with one summary line
//! per mode and a total (`unit: 41 passed, 0 failed` … `total: …`). Exits
//! non-zero when anything failed or could not be built. A run of every
//! mode starts with an empty claims ledger and ends by checking the docs'
//! tables against it (`claims`).

mod claims;
mod cycles;
mod node;
mod postgres;
mod redis;

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};

/// Passed and failed counts of one mode, plus whether its runner itself failed.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    passed: u64,
    failed: u64,
    runner_failed: bool,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.runner_failed |= other.runner_failed;
    }
}

/// Parses libtest's `test result: ok. 12 passed; 0 failed; …` line.
fn parse_result_line(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_status, counts) = rest.split_once(". ")?;
    let count = |word: &str| -> Option<u64> {
        counts.split(';').find_map(|part| {
            let (n, w) = part.trim().split_once(' ')?;
            (w == word).then(|| n.parse().ok()).flatten()
        })
    };
    Some((count("passed")?, count("failed")?))
}

/// Runs `command` (called `what` in messages), echoing its stdout and
/// adding up the `(passed, failed)` that `count` reads off each line. A
/// non-zero exit is one failed check when `exit_fails_a_check`, else the
/// runner failing.
fn run_counted(
    mode: &str,
    what: &str,
    mut command: Command,
    envs: &[(&str, &str)],
    count: impl Fn(&str) -> Option<(u64, u64)>,
    exit_fails_a_check: bool,
) -> Tally {
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            eprintln!("{mode}: could not start {what}: {error}");
            return Tally { runner_failed: true, ..Tally::default() };
        }
    };
    let mut tally = Tally::default();
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        println!("{line}");
        if let Some((passed, failed)) = count(&line) {
            tally.passed += passed;
            tally.failed += failed;
        }
    }
    match child.wait() {
        Ok(status) if status.success() => {}
        Ok(status) => {
            eprintln!("{mode}: {what} exited with {status}");
            if exit_fails_a_check {
                tally.failed += 1;
            } else {
                tally.runner_failed = true;
            }
        }
        Err(error) => {
            eprintln!("{mode}: waiting for {what} failed: {error}");
            tally.runner_failed = true;
        }
    }
    tally
}

/// Runs `cargo` with `args`, echoing its output and counting test results.
fn cargo_tests(mode: &str, args: &[&str], envs: &[(&str, &str)]) -> Tally {
    eprintln!("==> {mode}: cargo {}", args.join(" "));
    let mut command = Command::new(env!("CARGO"));
    command.args(args);
    run_counted(mode, "cargo", command, envs, parse_result_line, false)
}

/// The tests of the `cusim` command and of `cusim serve` on Postgres and
/// Redis, built in one invocation (one feature set for both packages):
/// the `http` mode builds with the same arguments, so that after the
/// `postgres` mode nothing is rebuilt.
const CLI_TESTS: [&str; 10] = [
    "-p",
    "cusim-sim",
    "-p",
    "cusim-serve",
    "--features",
    "cusim-sim/pg-tests,cusim-serve/pg-tests",
    "--test",
    "postgres_cli",
    "--test",
    "pg_http",
];

/// The Postgres tests, against a throwaway Postgres server and a
/// throwaway Redis server (both stopped also on failure).
fn postgres_tests(envs: &[(&str, &str)]) -> Tally {
    let server = match postgres::Server::start() {
        Ok(server) => server,
        Err(error) => {
            eprintln!("postgres: could not start a server: {error}");
            return Tally { runner_failed: true, ..Tally::default() };
        }
    };
    let redis = match redis::Server::start() {
        Ok(redis) => redis,
        Err(error) => {
            eprintln!("postgres: could not start a Redis server: {error}");
            return Tally { runner_failed: true, ..Tally::default() };
        }
    };
    let mut envs = envs.to_vec();
    envs.push(("DATABASE_URL", server.url.as_str()));
    envs.push(("REDIS_URL", redis.url.as_str()));
    let mut tally =
        cargo_tests("postgres", &["test", "--release", "--no-fail-fast", "-p", "cusim-pg"], &envs);
    let mut args = vec!["test", "--release", "--no-fail-fast"];
    args.extend(CLI_TESTS);
    tally.add(cargo_tests("postgres", &args, &envs));
    tally
}

/// Reads node's TAP summary: `# pass 12`, `# fail 0` (a cancelled test
/// counts as failed).
fn parse_tap_summary(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("# ")?;
    let (word, n) = rest.split_once(' ')?;
    let n: u64 = n.trim().parse().ok()?;
    match word {
        "pass" => Some((n, 0)),
        "fail" | "cancelled" => Some((0, n)),
        _ => None,
    }
}

/// `client-tests/`: the plan's acceptance cases through autumn-js against
/// `cusim serve`, in memory and on throwaway Postgres and Redis servers.
fn http_tests(ci: &[(&str, &str)]) -> Tally {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let failed = |what: String| {
        eprintln!("http: {what}");
        Tally { runner_failed: true, ..Tally::default() }
    };
    if let Err(error) = node::ensure() {
        return failed(format!("no Node: {error}"));
    }
    // As the `postgres` mode builds (which makes target/release/cusim), so
    // that after it nothing is rebuilt.
    let mut args = vec!["test", "--release", "--no-run"];
    args.extend(CLI_TESTS);
    eprintln!("==> http: cargo {}", args.join(" "));
    let built = Command::new(env!("CARGO")).args(&args).current_dir(&root).status();
    if !built.is_ok_and(|s| s.success()) {
        return failed("could not build cusim".into());
    }
    let tests = root.join("client-tests");
    eprintln!("==> http: npm ci (in client-tests/)");
    let installed = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&tests)
        .stdout(Stdio::null())
        .status();
    if !installed.is_ok_and(|s| s.success()) {
        return failed("npm ci failed in client-tests/".into());
    }
    let server = match postgres::Server::start() {
        Ok(server) => server,
        Err(error) => return failed(format!("could not start a Postgres server: {error}")),
    };
    let redis = match redis::Server::start() {
        Ok(redis) => redis,
        Err(error) => return failed(format!("could not start a Redis server: {error}")),
    };
    let bin = root.join("target/release/cusim");
    let bin = bin.to_string_lossy();
    let mut envs = ci.to_vec();
    envs.extend([
        ("CUSIM_BIN", &*bin),
        ("DATABASE_URL", server.url.as_str()),
        ("REDIS_URL", redis.url.as_str()),
    ]);
    // One file at a time (Node 18 has no `--test-concurrency`): the race
    // cases' servers get the machine to themselves.
    let mut files: Vec<String> = match std::fs::read_dir(tests.join("test")) {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".test.js"))
            .collect(),
        Err(error) => return failed(format!("cannot list client-tests/test: {error}")),
    };
    files.sort();
    let mut tally = Tally::default();
    for file in files {
        eprintln!("==> http: node --test test/{file} (in client-tests/)");
        let mut command = Command::new("node");
        command.args(["--test", "--test-reporter=tap"]).arg(format!("test/{file}")).current_dir(&tests);
        tally.add(run_counted("http", "node --test", command, &envs, parse_tap_summary, true));
    }
    tally
}

/// The test modes, in the order they run.
const MODES: [&str; 7] = ["unit", "stepper", "postgres", "http", "madsim", "loom", "browser"];

/// madsim's seeds: fixed, so CI runs the same 1000 every time.
const MADSIM_FIRST_SEED: &str = "1";
const MADSIM_SEEDS: &str = "1000";
/// Seeds (from 1) whose runs madsim checks for determinism.
const DETERMINISM_SEEDS: u32 = 10;

fn madsim_tests(ci: &[(&str, &str)]) -> Tally {
    // Its own target dir: `--cfg madsim` changes every crate's build.
    let base = [
        ("RUSTFLAGS", "--cfg madsim"),
        ("CARGO_TARGET_DIR", "target/madsim"),
        ("MADSIM_TEST_SEED", MADSIM_FIRST_SEED),
    ];
    let args = [
        "test",
        "--release",
        "--no-fail-fast",
        "-p",
        "cusim-sim",
        "--no-default-features",
        "--test",
        "madsim",
    ];
    let mut envs: Vec<(&str, &str)> = [ci, &base[..]].concat();
    envs.push(("MADSIM_TEST_NUM", MADSIM_SEEDS));
    let mut tally = cargo_tests("madsim", &args, &envs);
    // madsim's determinism check runs the one seed `MADSIM_TEST_SEED` twice
    // and compares every random draw: one invocation per seed.
    for seed in 1..=DETERMINISM_SEEDS {
        let seed = seed.to_string();
        let envs: Vec<(&str, &str)> = [
            ci,
            &[
                ("RUSTFLAGS", "--cfg madsim"),
                ("CARGO_TARGET_DIR", "target/madsim"),
                ("MADSIM_TEST_SEED", &seed),
            ][..],
            &[("MADSIM_TEST_CHECK_DETERMINISM", "1")][..],
        ]
        .concat();
        let mut args = args.to_vec();
        args.push("safe_holds");
        tally.add(cargo_tests("madsim", &args, &envs));
    }
    tally
}

fn loom_tests(ci: &[(&str, &str)]) -> Tally {
    // A cfg of our own, not `loom` (which would switch tokio's loom paths on).
    let envs: Vec<(&str, &str)> =
        [ci, &[("RUSTFLAGS", "--cfg cusim_loom"), ("CARGO_TARGET_DIR", "target/loom")][..]].concat();
    let args =
        ["test", "--release", "--no-fail-fast", "-p", "cusim-sim", "--no-default-features", "--test", "loom"];
    cargo_tests("loom", &args, &envs)
}

/// `scripts/check-html.sh`: the trace page in headless Chromium (installed
/// from Debian's packages when missing). Each `ok:` line is a passed check.
fn browser_checks(ci: &[(&str, &str)]) -> Tally {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/check-html.sh");
    eprintln!("==> browser: bash {script}");
    let mut command = Command::new("bash");
    command.arg(script);
    let count = |line: &str| line.starts_with("ok: ").then_some((1, 0));
    run_counted("browser", "scripts/check-html.sh", command, ci, count, true)
}

fn run_mode(mode: &str) -> Tally {
    // Release builds: the stepper tests run hundreds of thousands of schedules.
    let ci = [("CI", "true")];
    match mode {
        "unit" => {
            let args =
                ["test", "--release", "--no-fail-fast", "-p", "cusim", "-p", "cusim-serve", "-p", "xtask"];
            cargo_tests("unit", &args, &ci)
        }
        "stepper" => cargo_tests("stepper", &["test", "--release", "--no-fail-fast", "-p", "cusim-sim"], &ci),
        "postgres" => postgres_tests(&ci),
        "http" => http_tests(&ci),
        "madsim" => madsim_tests(&ci),
        "loom" => loom_tests(&ci),
        "browser" => browser_checks(&ci),
        other => unreachable!("unknown mode {other}"),
    }
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// After every mode: the docs' claims tables are what the tests wrote.
fn claims_check() -> Tally {
    eprintln!("==> claims: the docs' tables against the ledger");
    match claims::check(&workspace_root()) {
        Ok(n) => {
            println!("claims: {n} claims in the ledger; README.md and BENCHMARKS.md agree with them");
            Tally { passed: 1, ..Tally::default() }
        }
        Err(error) => {
            eprintln!("claims: {error}");
            Tally { failed: 1, ..Tally::default() }
        }
    }
}

fn test_all(only: &[String]) -> ExitCode {
    // Every mode: the ledger starts empty, so each claim in it comes from
    // this run.
    let every = only.is_empty();
    if every {
        if let Err(error) = claims::clear(&claims::ledger_dir(&workspace_root())) {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    }
    let mut modes: Vec<(&str, Tally)> = MODES
        .iter()
        .filter(|m| only.is_empty() || only.iter().any(|o| o == *m))
        .map(|m| (*m, run_mode(m)))
        .collect();
    if every {
        modes.push(("claims", claims_check()));
    } else {
        eprintln!("claims: not checked (only a full `cargo xtask test` writes the whole ledger)");
    }

    let mut total = Tally::default();
    println!();
    for (mode, tally) in &modes {
        let note =
            if tally.runner_failed && tally.failed == 0 { " (the runner failed: see above)" } else { "" };
        println!("{mode}: {} passed, {} failed{note}", tally.passed, tally.failed);
        total.add(*tally);
    }
    println!("total: {} passed, {} failed", total.passed, total.failed);
    if total.failed > 0 || total.runner_failed || total.passed == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs `cargo bench` with `envs`; whether it succeeded.
fn cargo_bench(name: &str, args: &[&str], envs: &[(&str, &str)]) -> bool {
    eprintln!("==> bench {name}: cargo {}", args.join(" "));
    let mut command = Command::new(env!("CARGO"));
    command.args(args);
    for (key, value) in envs {
        command.env(key, value);
    }
    match command.status() {
        Ok(status) if status.success() => true,
        Ok(status) => {
            eprintln!("bench {name}: cargo exited with {status}");
            false
        }
        Err(error) => {
            eprintln!("bench {name}: could not start cargo: {error}");
            false
        }
    }
}

const BENCHES: [&str; 3] = ["explore", "contention", "http"];

/// `cargo xtask bench [explore] [contention] [http]`: the criterion
/// benchmarks; the madsim half of `explore` in its own build, `contention`
/// and `http` against throwaway Postgres and Redis servers.
fn bench_all(only: &[String]) -> ExitCode {
    let mut ok = true;
    for bench in BENCHES.iter().filter(|b| only.is_empty() || only.iter().any(|o| o == *b)) {
        match *bench {
            "explore" => {
                ok &= cargo_bench("explore", &["bench", "-p", "cusim", "--bench", "explore"], &[]);
                let madsim = [("RUSTFLAGS", "--cfg madsim"), ("CARGO_TARGET_DIR", "target/madsim")];
                ok &=
                    cargo_bench("explore (madsim)", &["bench", "-p", "cusim", "--bench", "explore"], &madsim);
            }
            name => {
                let (package, lines) = match name {
                    "http" => ("cusim-serve", "http.txt"),
                    _ => ("cusim", "contention.txt"),
                };
                let _ = std::fs::remove_file(
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target").join(lines),
                );
                match postgres::Server::start().and_then(|pg| Ok((pg, redis::Server::start()?))) {
                    Ok((server, redis)) => {
                        let envs = [("DATABASE_URL", server.url.as_str()), ("REDIS_URL", redis.url.as_str())];
                        ok &= cargo_bench(name, &["bench", "-p", package, "--bench", name], &envs);
                    }
                    Err(error) => {
                        eprintln!("bench {name}: could not start the servers: {error}");
                        ok = false;
                    }
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `cargo xtask cycles`: prints each import circle; exit 1 when there is one.
fn import_cycles() -> ExitCode {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let circles = cycles::find(&root);
    for circle in &circles {
        let files: Vec<String> =
            circle.iter().map(|p| p.strip_prefix(&root).unwrap_or(p).display().to_string()).collect();
        println!("cycle: {}", files.join(", "));
    }
    if circles.is_empty() {
        println!("no import circle in src/, sim/src/, pg/src/, serve/src/, xtask/src/");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") if args[1..].iter().all(|a| MODES.contains(&a.as_str())) => test_all(&args[1..]),
        Some("bench") if args[1..].iter().all(|a| BENCHES.contains(&a.as_str())) => bench_all(&args[1..]),
        Some("cycles") if args.len() == 1 => import_cycles(),
        Some("claims") if args.len() == 1 => match claims::read(&claims::ledger_dir(&workspace_root())) {
            Ok(lines) => {
                claims::print(&lines);
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::FAILURE
            }
        },
        Some("claims") if args.len() == 2 && args[1] == "--write" => match claims::write(&workspace_root()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("{error}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!(
                "usage: cargo xtask test [MODE...]\n       cargo xtask bench [BENCH...]\n       cargo xtask cycles\n       \
                 cargo xtask claims [--write]\n\n\
                 `test` runs every test mode (or the named ones: {}) and prints one summary line per mode and a \
                 total.\n`bench` runs the criterion benchmarks (or the named ones: {}); see BENCHMARKS.md.\n\
                 `cycles` lists import circles between the files of the project's crates (none: exit 0).\n\
                 `claims` prints the claims ledger the tests wrote (target/claims/); `--write` makes the \
                 README's and BENCHMARKS' claims tables from it.",
                MODES.join(", "),
                BENCHES.join(", ")
            );
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_result_line, parse_tap_summary};

    #[test]
    fn parses_node_tap_summaries() {
        assert_eq!(parse_tap_summary("# pass 12"), Some((12, 0)));
        assert_eq!(parse_tap_summary("# fail 2"), Some((0, 2)));
        assert_eq!(parse_tap_summary("# tests 14"), None);
        assert_eq!(parse_tap_summary("ok 1 - case 1"), None);
    }

    #[test]
    fn parses_libtest_result_lines() {
        let ok =
            "test result: ok. 12 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.15s";
        assert_eq!(parse_result_line(ok), Some((12, 0)));
        let failed = "test result: FAILED. 14 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(parse_result_line(failed), Some((14, 1)));
        assert_eq!(parse_result_line("running 3 tests"), None);
    }
}
