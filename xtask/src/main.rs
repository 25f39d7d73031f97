//! `cargo xtask test`: builds every test executable once (`cargo test
//! --release --workspace --no-run`), runs them on three workers side by
//! side, longest first (the searches, the tests against throwaway Postgres and
//! Redis servers, the client tests, the browser check, the madsim and loom
//! builds and runs), then the free-running race tests by themselves, and ends
//! with the time of each build and job, one summary line per mode and a
//! total (`unit: 41 passed, 0 failed` … `total: …`). Exits non-zero when
//! anything failed or could not be built. A run of every mode starts with
//! an empty claims ledger and ends by checking the docs' tables against it
//! (`claims`). `cargo xtask test quick` is the edit loop.

mod build;
mod claims;
mod cycles;
mod jobs;
mod node;
mod postgres;
mod quick;
mod redis;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use jobs::{Count, Job, Log, Outcome, Tally};

/// The test modes, as `cargo xtask test MODE…` names them.
const MODES: [&str; 7] = ["unit", "stepper", "postgres", "http", "madsim", "loom", "browser"];

/// madsim's seeds: fixed, so CI runs the same 1000 every time.
const MADSIM_FIRST_SEED: &str = "1";
const MADSIM_SEEDS: &str = "1000";
/// Seeds (from 1) whose runs madsim checks for determinism.
const DETERMINISM_SEEDS: u32 = 10;

/// Test executables whose ignored tests need the Postgres and Redis
/// servers: run again with `--ignored`, with the servers.
const IGNORED_NEED_SERVERS: [&str; 4] = [
    "cusim-sim/test:postgres_cli",
    "cusim-serve/test:pg_http",
    "cusim-serve/test:soak",
    "cusim-sim/test:docs",
];

/// Node's test files whose race cases count rounds of concurrent
/// requests: they run after the others, with only their kind.
const NODE_RACE_FILES: [&str; 2] = ["autocreate-race.test.js", "create-customer-race.test.js"];

/// Where a test executable of the one build runs.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// Side by side with the others, with no server.
    Cpu,
    /// Side by side with the others, against the Postgres and Redis servers.
    Servers,
    /// After the others, with only its kind: free-running concurrency that
    /// must show races in a bounded number of rounds.
    Alone,
}

/// About how long a job takes on 2 cores (seconds, as last measured; the
/// rest a few): the workers take the longest first.
fn expected_seconds(label: &str) -> u32 {
    const KNOWN: [(&str, u32); 17] = [
        ("cusim-sim/test:reduction three_requests", 180),
        ("loom:", 120),
        ("madsim:", 100),
        ("cusim-sim/test:postgres_cli --ignored", 100),
        ("cusim-pg/test:pg scripts::", 70),
        ("cusim-sim/test:safe_everywhere", 65),
        ("cusim-pg/test:pg differential::", 55),
        ("cusim-sim/test:reduction reaches_transactional", 48),
        ("cusim-sim/test:reduction reaches_legacy", 40),
        ("cusim-sim/test:reduction in_generated_scenarios", 37),
        ("cusim-sim/test:races", 35),
        ("cusim-sim/test:reduction reaches_safe", 34),
        ("cusim-pg/test:pg replay::", 32),
        ("cusim-sim/test:worlds", 26),
        ("cusim-sim/test:check", 25),
        ("cusim-pg/test:pg --skip", 23),
        ("scripts/check-html.sh", 20),
    ];
    KNOWN.iter().find(|(prefix, _)| label.starts_with(prefix)).map_or(5, |(_, s)| *s)
}

/// Test executables (by label) whose tests run as jobs of their own, by
/// test-name filter, with their extra arguments; one more job runs every
/// other test of the executable.
/// - The Postgres tests' one binary (`pg/tests/pg.rs`, a module per file):
///   the free-running rounds with only their kind, the long files side by
///   side (the differential's three tests wait on Postgres most of the
///   time, so all three run at once).
/// - The reduction's comparisons, the longest test executable: on one
///   worker it would end after every other job.
const OWN_JOBS: [(&str, &str, Place, &[&str]); 10] = [
    ("cusim-pg/test:pg", "concurrent::", Place::Alone, &[]),
    ("cusim-pg/test:pg", "differential::", Place::Servers, &["--test-threads", "3"]),
    ("cusim-pg/test:pg", "replay::", Place::Servers, &[]),
    ("cusim-pg/test:pg", "scripts::", Place::Servers, &[]),
    ("cusim-sim/test:reduction", "three_requests", Place::Cpu, &[]),
    ("cusim-sim/test:reduction", "in_generated_scenarios", Place::Cpu, &[]),
    ("cusim-sim/test:reduction", "reaches_legacy", Place::Cpu, &[]),
    ("cusim-sim/test:reduction", "reaches_transactional", Place::Cpu, &[]),
    ("cusim-sim/test:reduction", "reaches_safe", Place::Cpu, &[]),
    ("cusim-sim/test:reduction", "commute", Place::Cpu, &[]),
];

/// The runs of a test executable: each with its mode, its place and its
/// arguments. None for madsim's (empty without `--cfg madsim`).
fn runs(bin: &build::TestBin) -> Vec<(&'static str, Place, Vec<String>)> {
    let owned = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let (package, name) = (bin.package.as_str(), bin.name.as_str());
    let (mode, place) = match package {
        "cusim-pg" => ("postgres", Place::Servers),
        "cusim-sim" => ("stepper", Place::Cpu),
        _ => ("unit", Place::Cpu),
    };
    if (package, name) == ("cusim-sim", "madsim") {
        return Vec::new();
    }
    let label = bin.label();
    let own: Vec<_> = OWN_JOBS.iter().filter(|(of, ..)| *of == label).collect();
    if own.is_empty() {
        return vec![(mode, place, Vec::new())];
    }
    let mut runs: Vec<_> = own
        .iter()
        .map(|(_, filter, place, extra)| (mode, *place, owned(&[&[*filter][..], extra].concat())))
        .collect();
    let rest = own.iter().flat_map(|(_, filter, ..)| ["--skip", filter]).collect::<Vec<_>>();
    runs.push((mode, place, owned(&rest)));
    runs
}

/// Runs `bin` (from its package's folder, as cargo does) with `args`.
fn run_bin(log: &mut Log, bin: &build::TestBin, args: &[&str], envs: &[(String, String)]) {
    let mut command = Command::new(&bin.exe);
    command.args(args).current_dir(&bin.dir).env("CARGO_MANIFEST_DIR", &bin.dir);
    command.envs(envs.iter().map(|(k, v)| (k, v)));
    let what = format!("{} {}", bin.label(), args.join(" "));
    log.run(what.trim(), command, Count::Libtest, false);
}

/// A job that runs `bin` with `args`.
fn bin_job(mode: &'static str, bin: &build::TestBin, args: Vec<String>, envs: &[(String, String)]) -> Job {
    let (bin, envs) = (bin.clone(), envs.to_vec());
    let label = if args.is_empty() { bin.label() } else { format!("{} {}", bin.label(), args.join(" ")) };
    Job::new(mode, label, move |log| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_bin(log, &bin, &args, &envs);
    })
}

fn owned(envs: &[(&str, &str)]) -> Vec<(String, String)> {
    envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Builds with `cargo ARGS` (`envs`; its output in `log`) and returns the
/// test executable named `name` it made; `None` (the job failed) when the
/// build failed or made none.
fn build_test(
    log: &mut Log,
    root: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    name: &str,
) -> Option<build::TestBin> {
    let shown: Vec<String> = envs.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    log.note(&format!("==> {}cargo {} --no-run", shown.concat(), args.join(" ")));
    let stderr = log.stdio();
    match build::build(root, args, envs, stderr) {
        Ok(built) => {
            let found = built.bins.into_iter().find(|b| b.name == name);
            if found.is_none() {
                log.fail(&format!("the build made no {name} test"));
            }
            found
        }
        Err(error) => {
            log.fail(&error);
            None
        }
    }
}

/// madsim: its own build (`--cfg madsim` changes every crate; in the
/// `madsim` profile, unoptimized: see the workspace's Cargo.toml), then
/// the 1000 seeds and the determinism check of seeds 1–10 on the
/// executable.
fn madsim_job(root: &Path, ci: &[(String, String)]) -> Job {
    let (root, ci) = (root.to_path_buf(), ci.to_vec());
    Job::new("madsim", "madsim: build and seeds", move |log| {
        let target = root.join("target/madsim");
        let target = target.to_string_lossy();
        let args =
            ["test", "--profile", "madsim", "-p", "cusim-sim", "--no-default-features", "--test", "madsim"];
        let envs = [("RUSTFLAGS", "--cfg madsim"), ("CARGO_TARGET_DIR", &*target)];
        let Some(bin) = build_test(log, &root, &args, &envs, "madsim") else { return };
        let mut envs = ci.clone();
        envs.extend(owned(&[("MADSIM_TEST_SEED", MADSIM_FIRST_SEED), ("MADSIM_TEST_NUM", MADSIM_SEEDS)]));
        run_bin(log, &bin, &[], &envs);
        // madsim's determinism check runs the one seed `MADSIM_TEST_SEED`
        // twice and compares every random draw.
        for seed in 1..=DETERMINISM_SEEDS {
            let mut envs = ci.clone();
            envs.extend(owned(&[
                ("MADSIM_TEST_SEED", &seed.to_string()),
                ("MADSIM_TEST_CHECK_DETERMINISM", "1"),
            ]));
            run_bin(log, &bin, &["safe_holds"], &envs);
        }
    })
}

/// loom: the `loom` feature (the shared world's locks are loom's), built
/// in the test command's own target folder: only cusim and cusim-sim (and
/// loom) build again.
fn loom_job(root: &Path, ci: &[(String, String)]) -> Job {
    let (root, ci) = (root.to_path_buf(), ci.to_vec());
    Job::new("loom", "loom: build and models", move |log| {
        let args = [
            "test",
            "--profile",
            PROFILE,
            "-p",
            "cusim-sim",
            "--no-default-features",
            "--features",
            "loom",
            "--test",
            "loom",
        ];
        if let Some(bin) = build_test(log, &root, &args, &[], "loom") {
            run_bin(log, &bin, &[], &ci);
        }
    })
}

/// Node and the client tests' packages (`npm ci`), made ready while the
/// tests build.
fn prepare_node(tests: &Path) -> Result<(), String> {
    node::ensure().map_err(|e| format!("no Node: {e}"))?;
    let installed = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(tests)
        .stdout(Stdio::null())
        .status();
    match installed {
        Ok(status) if status.success() => Ok(()),
        _ => Err("npm ci failed in client-tests/".into()),
    }
}

/// One of `client-tests/`' files: the plan's acceptance cases through
/// autumn-js against `cusim serve`, in memory and on the servers.
fn node_job(root: &Path, file: &str, ready: &Result<(), String>, envs: &[(String, String)]) -> Job {
    let (tests, file, ready, mut envs) =
        (root.join("client-tests"), file.to_owned(), ready.clone(), envs.to_vec());
    envs.push(("CUSIM_BIN".into(), cusim_bin(root)));
    Job::new("http", format!("client-tests/test/{file}"), move |log| {
        if let Err(error) = ready {
            return log.fail(&error);
        }
        let mut command = Command::new("node");
        command.args(["--test", "--test-reporter=tap"]).arg(format!("test/{file}")).current_dir(&tests);
        command.envs(envs.iter().map(|(k, v)| (k, v)));
        log.run(&format!("node --test test/{file}"), command, Count::Tap, true);
    })
}

/// The build profile of the test command: the searches need the release
/// profile. (A profile with the dependencies and the Postgres and HTTP
/// crates at opt-level 1 built no faster and made the Postgres tests
/// slower.)
const PROFILE: &str = "release";

/// The `cusim` tool the test command built.
fn cusim_bin(root: &Path) -> String {
    root.join("target").join(PROFILE).join("cusim").to_string_lossy().into_owned()
}

/// `scripts/check-html.sh`: the trace page in headless Chromium (installed
/// from Debian's packages when missing). Each `ok:` line is a passed check.
fn browser_job(root: &Path, ci: &[(String, String)]) -> Job {
    let (script, ci, bin) = (root.join("scripts/check-html.sh"), ci.to_vec(), cusim_bin(root));
    Job::new("browser", "scripts/check-html.sh", move |log| {
        let mut command = Command::new("bash");
        command.arg(&script).envs(ci.iter().map(|(k, v)| (k, v))).env("CUSIM_BIN", &bin);
        log.run("scripts/check-html.sh", command, Count::OkLines, true);
    })
}

fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

/// After every mode: the docs' claims tables are what the tests wrote.
fn claims_check() -> Tally {
    eprintln!("==> claims: the docs' tables against the ledger");
    match claims::check(&workspace_root()) {
        Ok(n) => {
            println!(
                "claims: {n} claims in the ledger; the claims chapter and BENCHMARKS.md agree with them"
            );
            Tally { passed: 1, ..Tally::default() }
        }
        Err(error) => {
            eprintln!("claims: {error}");
            Tally { failed: 1, ..Tally::default() }
        }
    }
}

/// The summary: one line per mode, a total, and the time of each build
/// and job, longest first. Whether everything passed.
fn summarise(
    outcomes: &[Outcome],
    builds: &[(String, f64)],
    extra: &[(&str, Tally)],
    started: Instant,
) -> bool {
    println!();
    println!("time per build and job (seconds; workers w1–w3 run side by side, then alone1–alone2):");
    for (what, seconds) in builds {
        println!("{seconds:>8.1}  build  {what}");
    }
    let mut by_time: Vec<&Outcome> = outcomes.iter().collect();
    by_time.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    for outcome in by_time {
        println!("{:>8.1}  {:<5}  {}", outcome.seconds, outcome.worker, outcome.label);
    }
    println!("{:>8.1}  wall clock in all", started.elapsed().as_secs_f64());
    println!();
    let mut total = Tally::default();
    let mut modes: Vec<(&str, Tally)> = Vec::new();
    for outcome in outcomes {
        match modes.iter_mut().find(|(m, _)| *m == outcome.mode) {
            Some((_, tally)) => tally.add(outcome.tally),
            None => modes.push((outcome.mode, outcome.tally)),
        }
    }
    modes.sort_by_key(|(m, _)| MODES.iter().position(|x| x == m).unwrap_or(MODES.len()));
    modes.extend_from_slice(extra);
    for (mode, tally) in &modes {
        let note =
            if tally.runner_failed && tally.failed == 0 { " (the runner failed: see above)" } else { "" };
        println!("{mode}: {} passed, {} failed{note}", tally.passed, tally.failed);
        total.add(*tally);
    }
    println!("total: {} passed, {} failed", total.passed, total.failed);
    total.failed == 0 && !total.runner_failed && total.passed > 0
}

fn test_all(only: &[String]) -> ExitCode {
    let started = Instant::now();
    let root = workspace_root();
    let every = only.is_empty();
    let wanted = |mode: &str| every || only.iter().any(|o| o == mode);
    // Every mode: the ledger starts empty, so each claim in it comes from
    // this run.
    if every {
        if let Err(error) = claims::clear(&claims::ledger_dir(&root)) {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    }
    let ci = owned(&[("CI", "true")]);
    // Node and the client tests' packages while the tests build.
    let preparing = wanted("http").then(|| {
        let tests = root.join("client-tests");
        std::thread::spawn(move || prepare_node(&tests))
    });
    // One build of every test executable, in one resolve of features, in
    // the release profile.
    // (The benchmarks' package has no tests: left out, criterion is not built.)
    let args = ["test", "--profile", PROFILE, "--workspace", "--exclude", "cusim-bench"];
    eprintln!("==> build: cargo {} --no-run", args.join(" "));
    let ci_refs: Vec<(&str, &str)> = ci.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let built = match build::build(&root, &args, &ci_refs, Stdio::inherit()) {
        Ok(built) => built,
        Err(error) => {
            eprintln!("build: {error}");
            println!("total: 0 passed, 0 failed (the build failed: see above)");
            return ExitCode::FAILURE;
        }
    };
    let builds = vec![(format!("cargo {} --no-run", args.join(" ")), built.seconds)];
    // The servers for the postgres and http modes: Postgres and Redis,
    // throwaway, stopped also when tests fail.
    let mut server_envs = ci.clone();
    let mut servers = None;
    let mut setup_failed = Tally::default();
    if wanted("postgres") || wanted("http") {
        match postgres::Server::start().and_then(|pg| Ok((redis::Server::start()?, pg))) {
            Ok((redis, pg)) => {
                server_envs.extend(owned(&[("DATABASE_URL", &pg.url), ("REDIS_URL", &redis.url)]));
                servers = Some((pg, redis));
            }
            Err(error) => {
                eprintln!("postgres: could not start the servers: {error}");
                setup_failed.runner_failed = true;
            }
        }
    }
    let have_servers = servers.is_some();
    let (mut side_by_side, mut alone) = (Vec::new(), Vec::new());
    for bin in &built.bins {
        for (mode, place, args) in runs(bin).into_iter().filter(|(mode, ..)| wanted(mode)) {
            match place {
                Place::Cpu => side_by_side.push(bin_job(mode, bin, args, &ci)),
                Place::Servers if have_servers => side_by_side.push(bin_job(mode, bin, args, &server_envs)),
                Place::Alone if have_servers => alone.push(bin_job(mode, bin, args, &server_envs)),
                _ => {}
            }
        }
        if wanted("postgres") && have_servers && IGNORED_NEED_SERVERS.contains(&bin.label().as_str()) {
            side_by_side.push(bin_job("postgres", bin, vec!["--ignored".into()], &server_envs));
        }
    }
    let node_ready = preparing.map(|p| p.join().unwrap_or_else(|_| Err("preparing Node panicked".into())));
    if let (Some(node_ready), true) = (node_ready, have_servers) {
        let mut files: Vec<String> = std::fs::read_dir(root.join("client-tests/test"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|name| name.ends_with(".test.js"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        if files.is_empty() {
            eprintln!("http: no test files in client-tests/test");
            setup_failed.runner_failed = true;
        }
        for file in files {
            let job = node_job(&root, &file, &node_ready, &server_envs);
            if NODE_RACE_FILES.contains(&file.as_str()) {
                alone.push(job);
            } else {
                side_by_side.push(job);
            }
        }
    }
    if wanted("browser") {
        side_by_side.push(browser_job(&root, &ci));
    }
    if wanted("madsim") {
        side_by_side.push(madsim_job(&root, &ci));
    }
    if wanted("loom") {
        side_by_side.push(loom_job(&root, &ci));
    }
    // The longest first, so that the workers end together. Three workers
    // on two cores: the tests against Postgres wait on it most of the
    // time, and the searches take the cores meanwhile.
    side_by_side.sort_by_key(|job| std::cmp::Reverse(expected_seconds(&job.label)));
    let mut outcomes = jobs::run(side_by_side, 3, "w", &root);
    // The free-running race tests: two at a time, with nothing else.
    outcomes.extend(jobs::run(alone, 2, "alone", &root));
    drop(servers);
    let mut extra = Vec::new();
    if setup_failed.runner_failed {
        extra.push(("setup", setup_failed));
    }
    if every {
        extra.push(("claims", claims_check()));
    } else {
        eprintln!("claims: not checked (only a full `cargo xtask test` writes the whole ledger)");
    }
    if summarise(&outcomes, &builds, &extra, started) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
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

const BENCHES: [&str; 5] = ["explore", "contention", "http", "wire", "soak"];

/// `cargo xtask bench [explore] [contention] [http] [wire] [soak]`: the
/// criterion benchmarks, and the ten-minute soak (not criterion); the
/// madsim half of `explore` in its own build, `contention`, `http`,
/// `wire` and `soak` against throwaway Postgres and Redis servers.
fn bench_all(only: &[String]) -> ExitCode {
    let mut ok = true;
    for bench in BENCHES.iter().filter(|b| only.is_empty() || only.iter().any(|o| o == *b)) {
        match *bench {
            "explore" => {
                ok &= cargo_bench("explore", &["bench", "-p", "cusim-bench", "--bench", "explore"], &[]);
                let madsim = [("RUSTFLAGS", "--cfg madsim"), ("CARGO_TARGET_DIR", "target/madsim")];
                ok &= cargo_bench(
                    "explore (madsim)",
                    &["bench", "-p", "cusim-bench", "--bench", "explore"],
                    &madsim,
                );
            }
            name => {
                let lines = match name {
                    "http" => "http.txt",
                    "soak" => "soak.txt",
                    _ => "contention.txt",
                };
                let _ = std::fs::remove_file(
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target").join(lines),
                );
                match postgres::Server::start().and_then(|pg| Ok((pg, redis::Server::start()?))) {
                    Ok((server, redis)) => {
                        let envs = [("DATABASE_URL", server.url.as_str()), ("REDIS_URL", redis.url.as_str())];
                        ok &= cargo_bench(name, &["bench", "-p", "cusim-bench", "--bench", name], &envs);
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

/// What `cargo xtask ARGS` asks for.
#[derive(Debug, PartialEq)]
enum Task<'a> {
    Quick,
    Test(&'a [String]),
    Bench(&'a [String]),
    Cycles,
    Claims,
    WriteClaims,
}

/// The task `args` name, or `None` for a usage error.
fn task(args: &[String]) -> Option<Task<'_>> {
    let rest = args.get(1..).unwrap_or(&[]);
    match args.first().map(String::as_str)? {
        "test" if rest.len() == 1 && rest[0] == "quick" => Some(Task::Quick),
        "test" if rest.iter().all(|a| MODES.contains(&a.as_str())) => Some(Task::Test(rest)),
        "bench" if rest.iter().all(|a| BENCHES.contains(&a.as_str())) => Some(Task::Bench(rest)),
        "cycles" if rest.is_empty() => Some(Task::Cycles),
        "claims" if rest.is_empty() => Some(Task::Claims),
        "claims" if rest.len() == 1 && rest[0] == "--write" => Some(Task::WriteClaims),
        _ => None,
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match task(&args) {
        Some(Task::Quick) => quick::run(&workspace_root()),
        Some(Task::Test(modes)) => test_all(modes),
        Some(Task::Bench(benches)) => bench_all(benches),
        Some(Task::Cycles) => import_cycles(),
        Some(Task::Claims) => match claims::read(&claims::ledger_dir(&workspace_root())) {
            Ok(lines) => {
                claims::print(&lines);
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::FAILURE
            }
        },
        Some(Task::WriteClaims) => match claims::write(&workspace_root()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("{error}");
                ExitCode::FAILURE
            }
        },
        None => {
            eprintln!(
                "usage: cargo xtask test [MODE...]\n       cargo xtask test quick\n       cargo xtask bench [BENCH...]\n       cargo xtask cycles\n       \
                 cargo xtask claims [--write]\n\n\
                 `test` runs every test mode (or the named ones: {}) and prints one summary line per mode and a \
                 total.\n`test quick` is the edit loop: every crate's unit tests, the pinned behaviour file and one \
                 exhaustive built-in per strategy, in the dev profile.\n`bench` runs the criterion benchmarks (or the named ones: {}); see BENCHMARKS.md.\n\
                 `cycles` lists import circles between the files of the project's crates (none: exit 0).\n\
                 `claims` prints the claims ledger the tests wrote (target/claims/); `--write` makes the \
                 claims chapter's (docs/book/claims.md) and BENCHMARKS' claims tables from it.",
                MODES.join(", "),
                BENCHES.join(", ")
            );
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    /// A split binary's jobs run each of its tests once: each filter of its
    /// own, every other test in one job that skips them.
    #[test]
    fn the_split_jobs_cover_the_binary_without_overlap() {
        for (package, name) in [("cusim-pg", "pg"), ("cusim-sim", "reduction")] {
            let bin = build::TestBin {
                package: package.into(),
                kind: "test".into(),
                name: name.into(),
                exe: PathBuf::from(name),
                dir: PathBuf::from(name),
            };
            let runs = runs(&bin);
            let own: Vec<_> = OWN_JOBS.iter().filter(|(of, ..)| *of == bin.label()).collect();
            assert!(own.len() >= 4, "{package}");
            assert_eq!(runs.len(), own.len() + 1);
            let rest = &runs.last().expect("the job of every other test").2;
            for ((_, filter, ..), (_, _, args)) in own.iter().zip(&runs) {
                assert_eq!(args[0], *filter);
                assert!(
                    rest.windows(2).any(|w| w[0] == "--skip" && w[1] == *filter),
                    "{rest:?} runs {filter} again"
                );
            }
        }
    }

    #[test]
    fn reads_its_arguments() {
        assert_eq!(task(&args("test quick")), Some(Task::Quick));
        assert!(matches!(task(&args("test postgres http")), Some(Task::Test(m)) if m.len() == 2));
        assert!(task(&args("test quick postgres")).is_none());
        assert!(task(&args("test everything")).is_none());
        assert!(task(&args("claims --write")) == Some(Task::WriteClaims));
        assert!(task(&[]).is_none());
    }

    /// Every `cargo xtask …` line the docs show is one this runner takes.
    #[test]
    fn every_xtask_command_in_the_docs_is_one_it_takes() {
        let root = workspace_root();
        let mut files =
            vec![root.join("README.md"), root.join("ARCHITECTURE.md"), root.join("BENCHMARKS.md")];
        if let Ok(entries) = std::fs::read_dir(root.join("docs/book")) {
            files.extend(
                entries
                    .filter_map(|e| Some(e.ok()?.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "md")),
            );
        }
        let mut seen = 0;
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            for (n, line) in text.lines().enumerate() {
                let mut rest = line;
                while let Some(at) = rest.find("cargo xtask ") {
                    let after = &rest[at + "cargo xtask ".len()..];
                    let end = after.find(['`', ')', ',', '#']).unwrap_or(after.len());
                    let words: Vec<String> = after[..end]
                        .split_whitespace()
                        .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
                        .map(String::from)
                        .collect();
                    // `cargo xtask …` in prose names no task.
                    assert!(
                        words.is_empty() || task(&words).is_some(),
                        "{}:{}: `cargo xtask {}` is not a task",
                        file.display(),
                        n + 1,
                        words.join(" ")
                    );
                    seen += 1;
                    rest = &after[end..];
                }
            }
        }
        assert!(seen > 0, "no `cargo xtask` line in the docs");
    }
}
