//! `cusim drive`: a real server between cusim's proxies and its databases,
//! its statements let through in the order a scheduler decides.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cusim_sim::check::client::Target;
use cusim_sim::check::rows::Layout;
use cusim_sim::input::scenario::FaultKind;
use cusim_sim::input::schedule::Schedule;
use cusim_sim::live::server::ServerCommand;
use cusim_sim::live::{self as wire, DriveConfig, DriveError, DriveReport, Scheduler};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::{shell_quote, Usage};

/// The defaults of the flags a replay command repeats when they differ.
const DATABASE_ENV: &str = "DATABASE_URL";
const REDIS_ENV: &str = "REDIS_URL";
const QUIET_MS: u64 = 100;
const REQUEST_TIMEOUT_MS: u64 = 10_000;
const START_TIMEOUT_S: u64 = 30;

/// What `cusim drive` was asked for.
#[derive(clap::Args)]
pub(crate) struct DriveArgs {
    /// A scenario file, or the name of a built-in scenario (SPEC §7; the
    /// requests the API can send).
    #[arg(long)]
    pub(crate) scenario: String,
    /// Where the server listens once started, e.g. http://127.0.0.1:3111.
    #[arg(long)]
    pub(crate) target: String,
    /// The secret key to send (default: $AUTUMN_SECRET_KEY).
    #[arg(long)]
    pub(crate) secret_key: Option<String>,
    /// The real Postgres server (default: $DATABASE_URL).
    #[arg(long, value_name = "URL")]
    pub(crate) database_url: Option<String>,
    /// The real Redis server, if the server uses one.
    #[arg(long, value_name = "URL")]
    pub(crate) redis_url: Option<String>,
    /// The environment variable that gets the Postgres proxy's URL.
    #[arg(long, value_name = "NAME", default_value = DATABASE_ENV)]
    pub(crate) database_env: String,
    /// The environment variable that gets the Redis proxy's URL.
    #[arg(long, value_name = "NAME", default_value = REDIS_ENV)]
    pub(crate) redis_env: String,
    /// Who decides: pct, random, or exhaustive (every order within
    /// --max-preemptions, depth first, at most --seeds schedules).
    #[arg(long, default_value = "pct")]
    pub(crate) scheduler: String,
    /// Schedules to run (exhaustive: the most it may run).
    #[arg(long, default_value_t = 50)]
    pub(crate) seeds: u64,
    /// exhaustive: the most preemptions a schedule may make (a request
    /// set aside while it could still move; an arrival preempts nobody).
    /// `none` for no bound.
    #[arg(long, value_name = "N", default_value = "2")]
    pub(crate) max_preemptions: String,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// pct: the bug depth to aim for.
    #[arg(long, default_value_t = 3)]
    pub(crate) depth: usize,
    /// Run this schedule (request numbers, e.g. `0.1.1.0`) instead.
    #[arg(long, value_name = "SCHEDULE")]
    pub(crate) replay: Option<String>,
    /// With --replay: run it this many times and count how many give the
    /// first run's verdict and statement order.
    #[arg(long, default_value_t = 1, requires = "replay")]
    pub(crate) repeat: usize,
    /// Run a base schedule (--replay's, or pct's of --seed), then the same
    /// with this fault at each step it let through that the fault can hit,
    /// one schedule each: db_error (a Postgres connection closed before the
    /// statement reaches the server), cache_down (the same for a Redis
    /// command), lost_response (the step runs, its reply is lost and the
    /// connection closed).
    #[arg(long, value_name = "KIND", conflicts_with = "repeat")]
    pub(crate) fault_sweep: Option<String>,
    /// How long nothing new must happen after a move for the system to be quiet.
    #[arg(long, value_name = "MS", default_value_t = QUIET_MS)]
    pub(crate) quiet_ms: u64,
    /// A call unanswered this long has an unknown outcome.
    #[arg(long, value_name = "MS", default_value_t = REQUEST_TIMEOUT_MS)]
    pub(crate) request_timeout_ms: u64,
    /// How long the server may take to listen on --target.
    #[arg(long, value_name = "S", default_value_t = START_TIMEOUT_S)]
    pub(crate) start_timeout: u64,
    /// Where the server's output goes [default: a file in the temporary folder].
    #[arg(long, value_name = "FILE")]
    pub(crate) server_log: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also judge each schedule's committed rows (SPEC §1's tables, or the
    /// modelled server's own), read-only and straight from --database-url:
    /// the schema of the server's tables.
    #[arg(long, value_name = "SCHEMA")]
    pub(crate) schema: Option<String>,
    /// With --schema: how the tables are laid out: cusim or autumn
    /// [default: the one whose tables the schema holds].
    #[arg(long, value_name = "LAYOUT", value_parser = ["cusim", "autumn"], requires = "schema")]
    pub(crate) rows_schema: Option<String>,
    /// Run this SQL file straight on --database-url before each schedule
    /// (and FLUSHDB on --redis-url), for a server whose state must be
    /// reset (the ids are fresh per schedule, so most need not).
    #[arg(long, value_name = "FILE")]
    pub(crate) reset_sql: Option<PathBuf>,
    /// Start the server anew for each schedule.
    #[arg(long)]
    pub(crate) restart: bool,
    /// Also write the report as one HTML page, a lane per request.
    #[arg(long, value_name = "FILE")]
    pub(crate) html: Option<PathBuf>,
    /// The server command and its arguments.
    #[arg(last = true, value_name = "SERVER_CMD")]
    pub(crate) command: Vec<String>,
}

/// The most schedules one drive may run, or a replay repeat.
const MAX_SCHEDULES: u64 = 100_000;

fn config(args: &DriveArgs) -> Result<(DriveConfig, String), Usage> {
    let (scenario, origin) = crate::load_scenario(&args.scenario)?;
    let target = Target::parse(&args.target).map_err(Usage)?;
    let secret_key = crate::secret_key(args.secret_key.as_deref())?;
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
        (None, "exhaustive", None) => Scheduler::Exhaustive {
            max_preemptions: match args.max_preemptions.as_str() {
                "none" => None,
                n => Some(n.parse().map_err(|_| {
                    Usage(format!("--max-preemptions {n:?}: a number, or `none` for no bound"))
                })?),
            },
        },
        (None, other, None) => {
            return Err(Usage(format!("--scheduler {other}: one of pct, random, exhaustive")))
        }
    };
    let reset_sql = match &args.reset_sql {
        Some(path) => {
            let sql = std::fs::read_to_string(path)
                .map_err(|e| Usage(format!("--reset-sql {}: cannot read it: {e}", path.display())))?;
            if sql.trim().is_empty() {
                return Err(Usage(format!("--reset-sql {}: the file holds no SQL", path.display())));
            }
            Some(sql)
        }
        None => None,
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
            start_timeout: Duration::from_secs(args.start_timeout),
            grace: Duration::from_secs(5),
        },
        scheduler,
        seeds: args.seeds,
        seed: args.seed,
        quiet: Duration::from_millis(args.quiet_ms),
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        server_log,
        run_id,
        reset_sql,
        restart: args.restart,
        rows: args.schema.as_ref().map(|schema| wire::Rows {
            schema: schema.clone(),
            layout: args.rows_schema.as_deref().and_then(Layout::parse),
        }),
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
            Scheduler::Sweep { .. } | Scheduler::Exhaustive { .. } => ProgressBar::no_length(),
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
    if let Some(path) = &args.html {
        let commands: Vec<String> =
            report.findings.iter().map(|f| replay_command(&args, &origin, &f.schedule)).collect();
        let page = wire::page::render(&report, &args.target, &commands, args.replay.as_deref());
        std::fs::write(path, page)
            .map_err(|e| Usage(format!("--html {}: cannot write it: {e}", path.display())))?;
    }
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
    if let Some(key) = &args.secret_key {
        words.extend(["--secret-key".into(), key.clone()]);
    }
    if let Some(url) = &args.database_url {
        words.extend(["--database-url".into(), url.clone()]);
    }
    if let Some(url) = &args.redis_url {
        words.extend(["--redis-url".into(), url.clone()]);
    }
    // What the run was given beyond the defaults, so the replay reaches the
    // server as it did and waits as long.
    for (flag, value, default) in [
        ("--database-env", args.database_env.clone(), DATABASE_ENV.to_owned()),
        ("--redis-env", args.redis_env.clone(), REDIS_ENV.to_owned()),
        ("--quiet-ms", args.quiet_ms.to_string(), QUIET_MS.to_string()),
        ("--request-timeout-ms", args.request_timeout_ms.to_string(), REQUEST_TIMEOUT_MS.to_string()),
        ("--start-timeout", args.start_timeout.to_string(), START_TIMEOUT_S.to_string()),
    ] {
        if value != default {
            words.extend([flag.to_owned(), value]);
        }
    }
    if let Some(schema) = &args.schema {
        words.extend(["--schema".into(), schema.clone()]);
    }
    if let Some(path) = &args.reset_sql {
        words.extend(["--reset-sql".into(), path.display().to_string()]);
    }
    if args.restart {
        words.push("--restart".into());
    }
    if let Some(layout) = &args.rows_schema {
        words.extend(["--rows-schema".into(), layout.clone()]);
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
    if report.server_steps > 0 {
        println!(
            "{} of the steps were the server's own work, each a decision of mover {}",
            report.server_steps, report.requests
        );
    }
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
    if let Some(search) = &report.search {
        let bound = search.max_preemptions.map_or("any number of".to_owned(), |n| format!("at most {n}"));
        if search.complete {
            println!(
                "exhaustive: every order with {bound} preemptions ran ({} schedules, {} not followed as given){}",
                report.schedules_run,
                report.diverged.len(),
                if search.pruned { "; the bound left others out" } else { "" }
            );
        } else {
            println!(
                "exhaustive: stopped after {} schedules (--seeds) before every order with {bound} preemptions ran",
                report.schedules_run
            );
        }
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
