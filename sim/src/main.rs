//! `cusim`: explore and replay schedules of the create-customer flow.
//!
//! Exit codes: 0 no invariant was violated, 1 one was, 2 bad input.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// A schedule allocates and frees many small rows: mimalloc makes the
/// stepper about a third cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use cusim::flow::Strategy;
use cusim_sim::builtin::{self, BUILTINS};
use cusim_sim::explore::{explore, shrink_all, ExploreConfig, ExploreReport, SchedulerKind};
use cusim_sim::html;

/// The deepest bug pct may aim for (deeper is no longer a useful bound).
const MAX_DEPTH: usize = 64;

/// Replays a shrink may spend per violation.
const SHRINK_ATTEMPTS: usize = 20_000;
use cusim_sim::oracle::{self, Invariant};
use cusim_sim::regression::Regression;
use cusim_sim::scenario::Scenario;
use cusim_sim::schedule::Schedule;
use cusim_sim::stepper::{execute_run, Prepared, Replay, RunOptions};
use cusim_sim::trace;
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "cusim",
    version,
    about = "Deterministic simulation of the create-customer flow",
    after_help = "Examples:\n  cusim explore --all\n  cusim explore --scenario r1-same-id-create --strategy legacy --shrink\n  cusim replay --scenario r1-same-id-create --strategy legacy --schedule 1 --html r1.html\n  cusim explain no_internal_error\n\nExit codes: 0 no invariant violated, 1 a violation (or, on Postgres, a disagreement), 2 bad input."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum StrategyArg {
    Legacy,
    Transactional,
    Safe,
}

impl From<StrategyArg> for Strategy {
    fn from(arg: StrategyArg) -> Strategy {
        match arg {
            StrategyArg::Legacy => Strategy::Legacy,
            StrategyArg::Transactional => Strategy::Transactional,
            StrategyArg::Safe => Strategy::Safe,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum SchedulerArg {
    Random,
    Pct,
    Exhaustive,
}

#[derive(Subcommand)]
enum Command {
    /// Run many schedules of a scenario and report every invariant violated,
    /// each with the shortest schedule found for it.
    #[command(
        after_help = "Examples:\n  cusim explore --scenario fixtures/scenarios/r1-same-id-create.json --strategy legacy\n  cusim explore --scenario r2-stale-cache --strategy safe --scheduler exhaustive --max-preemptions 3\n  cusim explore --all\n\nExit codes: 0 no invariant violated (--all: safe held everywhere and every race of the catalog was found), 1 otherwise, 2 bad input."
    )]
    Explore {
        /// A scenario file, or the name of a built-in scenario.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        scenario: Option<String>,
        #[arg(long, value_enum, required_unless_present = "all", conflicts_with = "all")]
        strategy: Option<StrategyArg>,
        /// Every built-in scenario under every strategy, with a summary table.
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value = "pct")]
        scheduler: SchedulerArg,
        /// Schedules to run (exhaustive: the most to run).
        #[arg(long)]
        seeds: Option<u64>,
        /// The first seed (random, pct) [default: 0].
        #[arg(long)]
        seed: Option<u64>,
        /// Exhaustive: the most preemptions a schedule may have.
        #[arg(long)]
        max_preemptions: Option<usize>,
        /// pct: the bug depth to aim for [default: 3].
        #[arg(long)]
        depth: Option<usize>,
        /// Clock moves (of 5 s) a schedule may contain.
        #[arg(long, default_value_t = 1)]
        max_ticks: usize,
        /// Print one JSON object (with --all: an array of them).
        #[arg(long)]
        json: bool,
        /// Shrink each violation to its smallest case (fewest requests,
        /// faults, preemptions) and print it.
        #[arg(long)]
        shrink: bool,
        /// With --shrink: save each shrunk case of legacy or transactional
        /// as a regression file in this folder.
        #[arg(long, requires = "shrink", value_name = "DIR")]
        save_regressions: Option<PathBuf>,
    },
    /// Run one schedule and show its trace and verdict.
    #[command(
        after_help = "Examples:\n  cusim replay --scenario fixtures/scenarios/r1-same-id-create.json --strategy legacy --schedule 0.1.1.1\n  cusim replay --scenario r1-same-id-create --strategy legacy --schedule 0.1.1.1 \\\n      --backend postgres --database-url postgres://postgres@127.0.0.1:5432/postgres\n  cusim replay --scenario r1-same-id-create --strategy legacy --schedule 1 --html r1.html\n\nExit codes: 0 no invariant violated (and Postgres agrees), 1 a violation or a disagreement, 2 bad input."
    )]
    Replay {
        /// A scenario file, or the name of a built-in scenario.
        #[arg(long)]
        scenario: String,
        #[arg(long, value_enum)]
        strategy: StrategyArg,
        /// Decisions, e.g. `0.1.1.+5000.0!crash`; after them, the lowest runnable request moves.
        #[arg(long, allow_hyphen_values = true)]
        schedule: String,
        /// Where the database is: the model, or a real Postgres server
        /// followed in lockstep with it (every answer compared).
        #[arg(long, value_enum, default_value = "mem")]
        backend: BackendArg,
        /// The Postgres server for `--backend postgres` (default: $DATABASE_URL).
        /// The replay works in a schema of its own and drops it.
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
        #[arg(long)]
        json: bool,
        /// Also write the run as one self-contained HTML page to FILE: a
        /// sequence diagram with a lane per request, lock waits between
        /// lanes, and the violated invariants highlighted.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// What an invariant means, which races break it and which built-in
    /// scenario shows it; or, for a race (R1–R9), its interleaving and the
    /// invariants it breaks.
    #[command(
        after_help = "Examples:\n  cusim explain fresh_cache\n  cusim explain R2\n  cusim explain            # every invariant and race, one line each\n\nExit codes: 0 explained, 2 an unknown name."
    )]
    Explain {
        /// An invariant (`unique_customer`, `fresh-cache`, …) or a race (`R1` … `R9`).
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendArg {
    Mem,
    Postgres,
}

/// `text` as one word for a POSIX shell: as is when it is plainly safe,
/// else in single quotes.
fn shell_quote(text: &str) -> String {
    let plain =
        !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./+,:=@%".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// Bad input: reported with its reason, exit code 2.
struct Usage(String);

fn load_scenario(arg: &str) -> Result<(Scenario, String), Usage> {
    let path = PathBuf::from(arg);
    if !path.exists() {
        if let Some(builtin) = builtin::find(arg) {
            let scenario = builtin.scenario().map_err(|e| Usage(e.to_string()))?;
            return Ok((scenario, builtin.path()));
        }
    }
    let looks_like_a_name = !arg.contains(['/', '\\', '.']);
    if !path.exists() && looks_like_a_name {
        let names: Vec<&str> = BUILTINS.iter().map(|b| b.name()).collect();
        return Err(Usage(format!(
            "--scenario {arg}: no such file, and no built-in scenario of that name (built-ins: {})",
            names.join(", ")
        )));
    }
    let scenario = Scenario::load(Path::new(arg)).map_err(|e| Usage(e.to_string()))?;
    Ok((scenario, arg.to_owned()))
}

fn prepare(scenario: &Scenario, origin: &str, strategy: Strategy) -> Result<Prepared, Usage> {
    Prepared::new(scenario, strategy).map_err(|e| Usage(format!("{origin}: {e}")))
}

fn config(
    scheduler: SchedulerArg,
    seeds: Option<u64>,
    seed: Option<u64>,
    max_preemptions: Option<usize>,
    depth: Option<usize>,
    max_ticks: usize,
) -> Result<ExploreConfig, Usage> {
    // A flag the chosen scheduler does not read is a mistake, not a no-op.
    let only =
        |flag: &str, schedulers: &str| Err(Usage(format!("{flag} applies only to --scheduler {schedulers}")));
    match scheduler {
        SchedulerArg::Exhaustive if seed.is_some() => return only("--seed", "random or pct"),
        SchedulerArg::Random | SchedulerArg::Exhaustive if depth.is_some() => return only("--depth", "pct"),
        SchedulerArg::Random | SchedulerArg::Pct if max_preemptions.is_some() => {
            return only("--max-preemptions", "exhaustive")
        }
        _ => {}
    }
    let (seed, depth) = (seed.unwrap_or(0), depth.unwrap_or(3));
    if !(1..=MAX_DEPTH).contains(&depth) {
        return Err(Usage(format!("--depth must be from 1 to {MAX_DEPTH}")));
    }
    let scheduler = match scheduler {
        SchedulerArg::Random => SchedulerKind::Random,
        SchedulerArg::Pct => SchedulerKind::Pct { depth },
        SchedulerArg::Exhaustive => SchedulerKind::Exhaustive { max_preemptions },
    };
    let default_budget =
        if matches!(scheduler, SchedulerKind::Exhaustive { .. }) { 10_000_000 } else { 1_000 };
    let schedules = seeds.unwrap_or(default_budget);
    if schedules == 0 {
        return Err(Usage("--seeds must be at least 1".into()));
    }
    Ok(ExploreConfig { scheduler, schedules, first_seed: seed, max_ticks, ..ExploreConfig::default() })
}

fn print_report(report: &ExploreReport, origin: &str) {
    let exhausted = if report.scheduler == "exhaustive" {
        if report.exhausted {
            ", the whole space"
        } else {
            ", not the whole space"
        }
    } else {
        ""
    };
    println!(
        "{} under {} ({}): {} schedules{exhausted}",
        report.scenario, report.strategy, report.scheduler, report.schedules_run
    );
    if report.violations.is_empty() {
        println!("  no invariant violated");
    }
    for found in &report.violations {
        println!("  VIOLATED {}: {}", found.invariant, found.message);
        let seed = found.seed.map_or(String::new(), |s| format!(" (seed {s})"));
        println!("    schedule {}{seed}", if found.schedule.is_empty() { "\"\"" } else { &found.schedule });
        println!(
            "    replay: cusim replay --scenario {} --strategy {} --schedule {}",
            shell_quote(origin),
            report.strategy,
            shell_quote(&found.schedule)
        );
        if let Some(shrunk) = &found.shrunk {
            let size = shrunk.size;
            println!(
                "    shrunk ({} replays): {} requests, {} faults, {} seed customers, {} preemptions, schedule '{}'",
                shrunk.attempts,
                size.requests,
                size.faults,
                size.seed_customers,
                size.preemptions,
                shrunk.case.schedule
            );
            let scenario = serde_json::to_string(&shrunk.case.scenario).expect("scenarios serialize");
            println!("    shrunk scenario: {scenario}");
        }
    }
}

fn run_explore(
    scenario: &str,
    strategy: Strategy,
    config: &ExploreConfig,
    json: bool,
    shrink: bool,
    save: Option<&Path>,
) -> Result<ExitCode, Usage> {
    let (scenario, origin) = load_scenario(scenario)?;
    let prepared = prepare(&scenario, &origin, strategy)?;
    let mut stderr = std::io::stderr();
    let terminal = stderr.is_terminal();
    let report = explore(&prepared, config, |n| {
        if n % 10_000 == 0 {
            let _ = if terminal {
                write!(stderr, "\r{n} schedules...")
            } else {
                writeln!(stderr, "{n} schedules...")
            };
        }
    });
    if terminal && report.schedules_run >= 10_000 {
        eprintln!();
    }
    let mut report = report;
    if shrink {
        shrink_all(&mut report, &prepared, SHRINK_ATTEMPTS);
        save_regressions(&report, save)?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report).expect("reports serialize"));
    } else {
        print_report(&report, &origin);
    }
    Ok(if report.violations.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Saves the shrunk cases of a modelled strategy (never `safe`'s: those are bugs to fix, not specimens).
fn save_regressions(report: &ExploreReport, dir: Option<&Path>) -> Result<(), Usage> {
    let Some(dir) = dir else { return Ok(()) };
    if report.strategy == Strategy::Safe {
        return Ok(());
    }
    for shrunk in report.violations.iter().filter_map(|f| f.shrunk.as_ref()) {
        let regression = Regression::from_shrunk(shrunk);
        let path =
            regression.save(dir).map_err(|e| Usage(format!("{}: cannot write: {e}", dir.display())))?;
        eprintln!("saved {}", path.display());
    }
    Ok(())
}

fn run_all(config: &ExploreConfig, json: bool, shrink: bool, save: Option<&Path>) -> Result<ExitCode, Usage> {
    let total = BUILTINS.len() * Strategy::ALL.len();
    let mut reports = Vec::new();
    let mut rows = Vec::new();
    let mut failed = false;
    for (b, builtin) in BUILTINS.iter().enumerate() {
        let scenario = builtin.scenario().map_err(|e| Usage(e.to_string()))?;
        let mut row = vec![builtin.name().to_owned()];
        for (s, strategy) in Strategy::ALL.into_iter().enumerate() {
            let done = b * Strategy::ALL.len() + s + 1;
            let progress = format!("[{done:>2}/{total}] {:<32} {:<13}", builtin.name(), strategy.as_str());
            if std::io::stderr().is_terminal() {
                eprint!("\r{progress}");
            } else {
                eprintln!("{progress}");
            }
            let prepared = prepare(&scenario, &builtin.path(), strategy)?;
            let mut report = explore(&prepared, config, |_| {});
            if shrink {
                shrink_all(&mut report, &prepared, SHRINK_ATTEMPTS);
                save_regressions(&report, save)?;
            }
            let mut cell: Vec<String> = Vec::new();
            for found in &report.violations {
                let expected = builtin.expected.contains(&(strategy, found.invariant));
                cell.push(format!("{}{}", found.invariant, if expected { "" } else { "!" }));
            }
            for (expected_strategy, invariant) in builtin.expected {
                if *expected_strategy == strategy
                    && !report.violations.iter().any(|f| f.invariant == *invariant)
                {
                    cell.push(format!("MISSED {invariant}"));
                    failed = true;
                }
            }
            if strategy == Strategy::Safe && !report.violations.is_empty() {
                failed = true;
            }
            row.push(if cell.is_empty() { "ok".to_owned() } else { cell.join(", ") });
            reports.push(report);
        }
        rows.push(row);
    }
    if std::io::stderr().is_terminal() {
        eprint!("\r{:<60}\r", "");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports).expect("reports serialize"));
    } else {
        let header = ["scenario", "legacy", "transactional", "safe"];
        let widths: Vec<usize> = (0..4)
            .map(|c| rows.iter().map(|r| r[c].len()).chain([header[c].len()]).max().unwrap_or(0))
            .collect();
        let line = |cells: &[&str]| {
            let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            println!("| {} |", padded.join(" | "));
        };
        line(&header);
        println!("|{}|", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"));
        for row in &rows {
            line(&row.iter().map(String::as_str).collect::<Vec<_>>());
        }
        let per_pair = reports.first().map_or(0, |r| r.schedules_run);
        println!(
            "\n{} schedules per pair; an invariant marked ! is broken where SPEC §8 does not expect it.",
            per_pair
        );
        println!(
            "{}",
            if failed {
                "FAILED: safe broke an invariant, or an expected race was missed."
            } else {
                "safe held everywhere; every expected race was found."
            }
        );
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// What a replay on Postgres adds to the model's.
#[cfg(feature = "postgres")]
type PgReport = Option<cusim_sim::postgres::PgReplay>;
#[cfg(not(feature = "postgres"))]
type PgReport = Option<std::convert::Infallible>;

#[cfg(feature = "postgres")]
fn on_postgres(
    url: &str,
    scenario: &Scenario,
    strategy: Strategy,
    schedule: &Schedule,
    options: RunOptions,
) -> Result<(cusim_sim::stepper::Execution, PgReport), Usage> {
    use cusim_sim::postgres::{replay_on_postgres, PgReplayError};
    let schema = format!("cusim_replay_{}", std::process::id());
    match replay_on_postgres(url, &schema, scenario, strategy, schedule, options) {
        Ok((execution, report)) => Ok((execution, Some(report))),
        Err(PgReplayError::Schedule(e)) => Err(Usage(format!("--schedule: {e}"))),
        Err(e) => Err(Usage(format!("--database-url: {e}"))),
    }
}

#[cfg(not(feature = "postgres"))]
fn on_postgres(
    _url: &str,
    _scenario: &Scenario,
    _strategy: Strategy,
    _schedule: &Schedule,
    _options: RunOptions,
) -> Result<(cusim_sim::stepper::Execution, PgReport), Usage> {
    Err(Usage("--backend postgres: this cusim was built without the `postgres` feature".into()))
}

/// What a replay prints and writes.
struct ReplayOutput {
    json: bool,
    /// Where to write the HTML page, if anywhere.
    html: Option<PathBuf>,
}

/// Writes the replay's HTML page to `path`; a path that cannot be written is bad input.
fn write_html(path: &Path, page: &html::Page<'_>) -> Result<(), Usage> {
    std::fs::write(path, page.render())
        .map_err(|e| Usage(format!("--html {}: cannot write the file: {e}", path.display())))
}

fn run_replay(
    scenario: &str,
    strategy: Strategy,
    schedule: &str,
    backend: BackendArg,
    database_url: Option<String>,
    output: &ReplayOutput,
) -> Result<ExitCode, Usage> {
    let json = output.json;
    let (scenario, origin) = load_scenario(scenario)?;
    let schedule = Schedule::parse(schedule).map_err(|e| Usage(format!("--schedule: {e}")))?;
    let prepared = prepare(&scenario, &origin, strategy)?;
    let options = RunOptions { record_trace: true, ..RunOptions::default() };
    let (execution, postgres) = match backend {
        BackendArg::Mem => {
            if database_url.is_some() {
                return Err(Usage("--database-url needs --backend postgres".into()));
            }
            let execution = execute_run(&prepared, &mut Replay::new(&schedule), options)
                .map_err(|e| Usage(format!("--schedule: {e}")))?;
            (execution, None)
        }
        BackendArg::Postgres => {
            let url = database_url.or_else(|| std::env::var("DATABASE_URL").ok()).ok_or_else(|| {
                Usage(
                    "--backend postgres needs --database-url URL (or DATABASE_URL in the environment)".into(),
                )
            })?;
            on_postgres(&url, &scenario, strategy, &schedule, options)?
        }
    };
    let violations = oracle::check(&prepared, &execution);
    let disagrees = postgres_disagrees(&postgres);
    if let Some(path) = &output.html {
        let backend_args = match backend {
            BackendArg::Mem => "",
            BackendArg::Postgres => " --backend postgres",
        };
        let backend = match backend {
            BackendArg::Mem => "mem (the in-memory model)".to_owned(),
            BackendArg::Postgres => postgres_note(&postgres),
        };
        let replay = format!(
            "cusim replay --scenario {} --strategy {strategy} --schedule {}{backend_args}",
            shell_quote(&origin),
            shell_quote(&execution.minimal_schedule().to_string())
        );
        let page = html::Page::new(&scenario, strategy, &execution, &violations)
            .note("scenario file", origin.as_str())
            .note("backend", backend)
            .note("replay", replay);
        write_html(path, &page)?;
        eprintln!("wrote {}", path.display());
    }
    if json {
        let found: Vec<_> = violations
            .iter()
            .map(|v| json!({"invariant": v.invariant, "schedule": execution.minimal_schedule().to_string(), "seed": null, "message": v.message, "requests": v.requests, "settle_reads": v.settle_reads, "evidence": v.evidence}))
            .collect();
        let object = json!({
            "scenario": scenario.name,
            "strategy": strategy,
            "scheduler": "replay",
            "schedules_run": 1,
            "exhausted": false,
            "violations": found,
            "schedule": execution.schedule.to_string(),
            "trace": execution.trace,
            "trace_hash": format!("{:016x}", trace::hash(&execution.trace)),
            "postgres": postgres_json(&postgres),
        });
        println!("{}", serde_json::to_string_pretty(&object).expect("serializes"));
    } else {
        println!("{} under {strategy}, schedule {}", scenario.name, execution.schedule);
        print!("{}", trace::render(&execution.trace));
        if violations.is_empty() {
            println!("verdict: no invariant violated");
        }
        for violation in &violations {
            let settles = if violation.settle_reads.is_empty() {
                String::new()
            } else {
                format!(", settle reads {:?}", violation.settle_reads)
            };
            println!(
                "VIOLATED {} (requests {:?}{settles}): {}",
                violation.invariant, violation.requests, violation.message
            );
            println!("  evidence: {}", violation.evidence);
        }
        print_postgres(&postgres);
    }
    Ok(if violations.is_empty() && !disagrees { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

#[cfg(feature = "postgres")]
fn postgres_disagrees(report: &PgReport) -> bool {
    report.as_ref().is_some_and(|r| !r.agrees())
}

#[cfg(feature = "postgres")]
fn postgres_json(report: &PgReport) -> serde_json::Value {
    match report {
        None => serde_json::Value::Null,
        Some(r) => json!({
            "agrees": r.agrees(),
            "operations_compared": r.compared,
            "waits_parked": r.waits,
            "divergence": r.divergence,
            "state_agrees": r.state_agrees,
            "model_verdict": r.model_verdict,
            "postgres_verdict": r.postgres_verdict,
        }),
    }
}

#[cfg(feature = "postgres")]
fn print_postgres(report: &PgReport) {
    let Some(r) = report else { return };
    let names = |v: &[cusim_sim::oracle::Invariant]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(", ")
        }
    };
    println!(
        "postgres: {} operations compared ({} waits parked on a lock); violated there: {}",
        r.compared,
        r.waits,
        names(&r.postgres_verdict)
    );
    if let Some(d) = &r.divergence {
        println!("postgres DISAGREES with the model: {d}");
    } else if !r.state_agrees {
        println!("postgres DISAGREES with the model: the committed customers differ");
    } else if r.model_verdict != r.postgres_verdict {
        println!("postgres DISAGREES with the model: the verdicts differ");
    } else {
        println!("postgres agrees with the model: every answer, the final state and the verdict");
    }
}

#[cfg(feature = "postgres")]
fn postgres_note(report: &PgReport) -> String {
    match report {
        None => "postgres".to_owned(),
        Some(r) if r.agrees() => {
            format!(
                "postgres, followed in lockstep: agrees with the model ({} operations compared)",
                r.compared
            )
        }
        Some(r) => {
            let why = match &r.divergence {
                Some(d) => d.to_string(),
                None if !r.state_agrees => "the committed customers differ".to_owned(),
                None => "the verdicts differ".to_owned(),
            };
            format!("postgres, followed in lockstep: DISAGREES with the model: {why}")
        }
    }
}

#[cfg(not(feature = "postgres"))]
fn postgres_note(_report: &PgReport) -> String {
    "postgres".to_owned()
}

#[cfg(not(feature = "postgres"))]
fn postgres_disagrees(_report: &PgReport) -> bool {
    false
}

#[cfg(not(feature = "postgres"))]
fn postgres_json(_report: &PgReport) -> serde_json::Value {
    serde_json::Value::Null
}

#[cfg(not(feature = "postgres"))]
fn print_postgres(_report: &PgReport) {}

fn run_explain(name: Option<&str>, json: bool) -> Result<ExitCode, Usage> {
    use cusim_sim::explain;
    let Some(name) = name else {
        if json {
            let all: Vec<explain::Explanation> = Invariant::ALL
                .into_iter()
                .map(explain::Topic::Invariant)
                .chain(cusim_sim::races::Race::ALL.into_iter().map(explain::Topic::Race))
                .map(explain::explain)
                .collect();
            println!("{}", serde_json::to_string_pretty(&all).expect("serializes"));
        } else {
            print!("{}", explain::list());
        }
        return Ok(ExitCode::SUCCESS);
    };
    if name.trim().is_empty() {
        return Err(Usage(
            "explain: the name is empty; `cusim explain` lists every invariant and race".into(),
        ));
    }
    let topic = explain::topic(name).ok_or_else(|| {
        let invariants: Vec<&str> = Invariant::ALL.iter().map(|i| i.as_str()).collect();
        Usage(format!(
            "explain {name}: not an invariant or a race; invariants: {}; races: R1 … R9",
            invariants.join(", ")
        ))
    })?;
    let explanation = explain::explain(topic);
    if json {
        println!("{}", serde_json::to_string_pretty(&explanation).expect("serializes"));
    } else {
        print!("{}", explain::render(&explanation));
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, which turns a closed pipe (`cusim … | head`)
    // into a panic on the next print; a command-line tool should just end.
    #[cfg(unix)]
    // SAFETY: at the start of main, before any thread exists, setting a
    // signal's disposition to its default is sound.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Explore {
            scenario,
            strategy,
            all,
            scheduler,
            seeds,
            seed,
            max_preemptions,
            depth,
            max_ticks,
            json,
            shrink,
            save_regressions,
        } => config(scheduler, seeds, seed, max_preemptions, depth, max_ticks).and_then(|config| {
            if all {
                run_all(&config, json, shrink, save_regressions.as_deref())
            } else {
                let scenario = scenario.expect("clap requires --scenario without --all");
                let strategy = strategy.expect("clap requires --strategy without --all");
                run_explore(&scenario, strategy.into(), &config, json, shrink, save_regressions.as_deref())
            }
        }),
        Command::Replay { scenario, strategy, schedule, backend, database_url, json, html } => {
            let output = ReplayOutput { json, html };
            run_replay(&scenario, strategy.into(), &schedule, backend, database_url, &output)
        }
        Command::Explain { name, json } => run_explain(name.as_deref(), json),
    };
    match result {
        Ok(code) => code,
        Err(Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}
