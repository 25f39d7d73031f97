//! `cusim drive`: a real server between cusim's proxies and its databases,
//! its statements let through in the order a scheduler decides.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cusim_sim::check::client::Target;
use cusim_sim::input::scenario::FaultKind;
use cusim_sim::input::schedule::Schedule;
use cusim_sim::live::server::ServerCommand;
use cusim_sim::live::{self as wire, DriveConfig, DriveError, DriveReport, Scheduler};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::{shell_quote, Usage};

/// What `cusim drive` was asked for.
pub(crate) struct DriveArgs {
    pub scenario: String,
    pub target: String,
    pub secret_key: Option<String>,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub database_env: String,
    pub redis_env: String,
    pub scheduler: String,
    pub seeds: u64,
    pub seed: u64,
    pub depth: usize,
    pub replay: Option<String>,
    pub repeat: usize,
    pub fault_sweep: Option<String>,
    pub quiet_ms: u64,
    pub request_timeout_ms: u64,
    pub start_timeout_s: u64,
    pub json: bool,
    pub server_log: Option<PathBuf>,
    pub command: Vec<String>,
}

/// The most schedules one drive may run, or a replay repeat.
const MAX_SCHEDULES: u64 = 100_000;

fn config(args: &DriveArgs) -> Result<(DriveConfig, String), Usage> {
    let (scenario, origin) = crate::load_scenario(&args.scenario)?;
    let target = Target::parse(&args.target).map_err(Usage)?;
    let secret_key = match &args.secret_key {
        Some(key) => key.clone(),
        None => std::env::var("AUTUMN_SECRET_KEY")
            .map_err(|_| Usage("--secret-key: none given, and AUTUMN_SECRET_KEY is not set".into()))?,
    };
    if secret_key.is_empty() || !secret_key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Usage("--secret-key: a key is printable ASCII without spaces".into()));
    }
    let database_url = match &args.database_url {
        Some(url) => url.clone(),
        None => std::env::var("DATABASE_URL")
            .map_err(|_| Usage("--database-url: none given, and DATABASE_URL is not set".into()))?,
    };
    if args.command.is_empty() {
        return Err(Usage(
            "no server command: give it after `--`, e.g. `-- cusim serve --database-url {database_url} …`"
                .into(),
        ));
    }
    for (flag, name) in [("--database-env", &args.database_env), ("--redis-env", &args.redis_env)] {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Usage(format!(
                "{flag} {name:?}: an environment variable's name (letters, digits, _)"
            )));
        }
    }
    if args.seeds == 0 || args.seeds > MAX_SCHEDULES || args.repeat == 0 || args.repeat as u64 > MAX_SCHEDULES
    {
        return Err(Usage(format!("--seeds and --repeat: from 1 to {MAX_SCHEDULES}")));
    }
    if args.quiet_ms == 0 || args.quiet_ms > 60_000 {
        return Err(Usage("--quiet-ms: from 1 to 60000".into()));
    }
    let given = match &args.replay {
        Some(text) => Some(Schedule::parse(text).map_err(|e| Usage(format!("--replay: {e}")))?),
        None => None,
    };
    let scheduler = match (given, args.scheduler.as_str(), &args.fault_sweep) {
        (base, _, Some(kind)) => Scheduler::Sweep {
            base,
            kind: FaultKind::parse(kind).ok_or_else(|| {
                Usage(format!(
                    "--fault-sweep {kind}: one of {}",
                    cusim_sim::live::ON_THE_WIRE.map(FaultKind::as_str).join(", ")
                ))
            })?,
        },
        (Some(schedule), _, None) => Scheduler::Replay { schedule, repeat: args.repeat },
        (None, "pct", None) => Scheduler::Pct { depth: args.depth.max(1) },
        (None, "random", None) => Scheduler::Random,
        (None, other, None) => {
            return Err(Usage(format!(
                "--scheduler {other}: a driven server is scheduled by pct or random (the exhaustive search needs \
                 runs that repeat exactly, which a real server's do not promise)"
            )))
        }
    };
    let run_id = cusim_sim::check::fresh_run_id(args.seed).replace("chk", "drv");
    let server_log = args
        .server_log
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("cusim-drive-{run_id}.log")));
    let config = DriveConfig {
        scenario,
        target,
        secret_key,
        database_url,
        redis_url: args.redis_url.clone(),
        server: ServerCommand {
            argv: args.command.clone(),
            database_env: args.database_env.clone(),
            redis_env: args.redis_env.clone(),
            start_timeout: Duration::from_secs(args.start_timeout_s),
            grace: Duration::from_secs(5),
        },
        scheduler,
        seeds: args.seeds,
        seed: args.seed,
        quiet: Duration::from_millis(args.quiet_ms),
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        server_log,
        run_id,
    };
    Ok((config, origin))
}

pub(crate) fn run_drive(args: DriveArgs) -> Result<ExitCode, Usage> {
    let (config, origin) = config(&args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Usage(format!("cannot start the runtime: {e}")))?;
    let bar = if args.json || !std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
    } else {
        let bar = match &config.scheduler {
            Scheduler::Replay { repeat, .. } => ProgressBar::new(*repeat as u64),
            Scheduler::Sweep { .. } => ProgressBar::no_length(),
            _ => ProgressBar::new(config.seeds),
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} {pos}/{len} schedules {msg} [{elapsed}]")
                .expect("a valid template"),
        );
        bar
    };
    let result = runtime.block_on(wire::drive(&config, |p| {
        bar.set_position(p.schedules as u64);
        bar.set_message(format!("{} findings", p.findings));
    }));
    bar.finish_and_clear();
    let report = match result {
        Ok(report) => report,
        Err(error @ (DriveError::BadInput(_) | DriveError::Unreachable(_) | DriveError::Server(_))) => {
            return Err(Usage(error.to_string()))
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("a report encodes"));
    } else {
        print_report(&report, &args, &origin);
    }
    Ok(if report.findings.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The command that runs `schedule` again.
fn replay_command(args: &DriveArgs, origin: &str, schedule: &str) -> String {
    let mut words = vec!["cusim".to_owned(), "drive".into(), "--scenario".into(), origin.to_owned()];
    words.extend(["--target".into(), args.target.clone()]);
    if let Some(url) = &args.database_url {
        words.extend(["--database-url".into(), url.clone()]);
    }
    if let Some(url) = &args.redis_url {
        words.extend(["--redis-url".into(), url.clone()]);
    }
    words.extend(["--replay".into(), schedule.to_owned(), "--repeat".into(), "10".into(), "--".into()]);
    words.extend(args.command.iter().cloned());
    words.iter().map(|w| shell_quote(w)).collect::<Vec<_>>().join(" ")
}

fn print_report(report: &DriveReport, args: &DriveArgs, origin: &str) {
    println!(
        "{}: {} schedules, {} steps through the proxies, {} lock waits parked and woken, {} ms (quiet period {} ms)",
        report.scenario, report.schedules_run, report.steps, report.lock_waits, report.elapsed_ms, report.quiet_ms
    );
    if let (Some(reproduced), Some(same_order)) = (report.reproduced, report.same_order) {
        println!(
            "replay: {reproduced} of {} runs gave the first run's verdict; {same_order} let its steps through in the same order",
            report.schedules_run
        );
    }
    for parked in &report.parked {
        println!("request {} waited on a lock in schedule {}", parked.request, parked.schedule);
    }
    if let Some(trace) = &report.trace {
        println!("statements of the first run:");
        for line in trace {
            println!("  {}", line.text());
        }
    }
    for why in &report.diverged {
        println!("note: {why}");
    }
    if report.findings.is_empty() {
        println!("no invariant broken");
        return;
    }
    for (n, finding) in report.findings.iter().enumerate() {
        let races: Vec<String> = finding.races.iter().map(|r| format!("{r:?}")).collect();
        println!();
        println!("finding {}: {} — {}", n + 1, finding.invariant, finding.message);
        if !races.is_empty() {
            println!("  suspected: {}", races.join(", "));
        }
        println!("  schedule: {}", finding.schedule);
        println!("  replay:   {}", replay_command(args, origin, &finding.schedule));
        println!("  statements:");
        for line in &finding.statements {
            println!("    {}", line.text());
        }
    }
}
