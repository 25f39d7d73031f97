//! `cusim replay`: one schedule, its trace and verdict; on the model, or
//! followed in lockstep on Postgres; as text, JSON or an HTML page.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cusim::flow::Strategy;
use cusim_sim::drive::stepper::{execute_run, Execution, Replay, RunOptions};
use cusim_sim::input::scenario::Scenario;
use cusim_sim::input::schedule::Schedule;
use cusim_sim::judge::judge;
use cusim_sim::judge::races::race_of;
use cusim_sim::report::{html, text as trace};
use serde_json::json;

use crate::{load_scenario, prepare, shell_quote, BackendArg, Usage};

/// What a replay on Postgres adds to the model's.
#[cfg(feature = "postgres")]
type PgReport = Option<cusim_sim::drive::postgres::PgReplay>;
#[cfg(not(feature = "postgres"))]
type PgReport = Option<std::convert::Infallible>;

/// The servers of `--backend postgres`.
pub(crate) struct Servers {
    pub(crate) database_url: Option<String>,
    pub(crate) redis_url: Option<String>,
}

#[cfg(feature = "postgres")]
fn on_postgres(
    url: &str,
    redis_url: Option<String>,
    scenario: &Scenario,
    strategy: Strategy,
    schedule: &Schedule,
    options: RunOptions,
) -> Result<(Execution, PgReport), Usage> {
    use cusim_sim::drive::postgres::{replay_on_postgres, PgReplayError, Target};
    let schema = format!("cusim_replay_{}", std::process::id());
    let target = Target::postgres(url).with_redis(redis_url);
    match replay_on_postgres(&target, &schema, scenario, strategy, schedule, options) {
        Ok((execution, report)) => Ok((execution, Some(report))),
        Err(PgReplayError::Schedule(e)) => Err(Usage(format!("--schedule: {e}"))),
        Err(PgReplayError::Redis(e)) => Err(Usage(format!("--redis-url: {e}"))),
        Err(e) => Err(Usage(format!("--database-url: {e}"))),
    }
}

#[cfg(not(feature = "postgres"))]
fn on_postgres(
    _url: &str,
    _redis_url: Option<String>,
    _scenario: &Scenario,
    _strategy: Strategy,
    _schedule: &Schedule,
    _options: RunOptions,
) -> Result<(Execution, PgReport), Usage> {
    Err(Usage("--backend postgres: this cusim was built without the `postgres` feature".into()))
}

/// What a replay prints and writes.
pub(crate) struct ReplayOutput {
    pub(crate) json: bool,
    /// Where to write the HTML page, if anywhere.
    pub(crate) html: Option<PathBuf>,
}

/// Writes the replay's HTML page to `path`; a path that cannot be written is bad input.
fn write_html(path: &Path, page: &html::Page<'_>) -> Result<(), Usage> {
    std::fs::write(path, page.render())
        .map_err(|e| Usage(format!("--html {}: cannot write the file: {e}", path.display())))
}

pub(crate) fn run_replay(
    scenario: &str,
    strategy: Strategy,
    schedule: &str,
    backend: BackendArg,
    servers: Servers,
    output: &ReplayOutput,
) -> Result<ExitCode, Usage> {
    let Servers { database_url, redis_url } = servers;
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
            if redis_url.is_some() {
                return Err(Usage("--redis-url needs --backend postgres".into()));
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
            on_postgres(&url, redis_url.clone(), &scenario, strategy, &schedule, options)?
        }
    };
    let violations = judge(&scenario, &execution.observation);
    let disagrees = postgres_disagrees(&postgres);
    if let Some(path) = &output.html {
        let backend_args = match (backend, &redis_url) {
            (BackendArg::Mem, _) => "",
            (BackendArg::Postgres, None) => " --backend postgres",
            (BackendArg::Postgres, Some(_)) => " --backend postgres --redis-url URL",
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
            .map(|v| json!({"invariant": v.invariant, "race": race_of(&execution.trace, v), "schedule": execution.minimal_schedule().to_string(), "seed": null, "message": v.message, "requests": v.requests, "settle_reads": v.settle_reads, "evidence": v.evidence}))
            .collect();
        let object = json!({
            "scenario": scenario.name,
            "strategy": strategy,
            "scheduler": "replay",
            "schedules_run": 1,
            "exhausted": false,
            "covered": false,
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
            let race = race_of(&execution.trace, violation)
                .map_or_else(|| "no catalog race".to_owned(), |r| format!("race {r}"));
            println!(
                "VIOLATED {} ({race}; requests {:?}{settles}): {}",
                violation.invariant, violation.requests, violation.message
            );
            println!("  evidence: {}", violation.evidence);
        }
        print_postgres(&postgres);
    }
    // A server that failed mid-run: the report above is kept, and the run
    // ends with the error (exit 2).
    if let Some(failure) = postgres_failure(&postgres) {
        return Err(Usage(format!("the replay could not finish: {failure}")));
    }
    Ok(if violations.is_empty() && !disagrees { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

#[cfg(feature = "postgres")]
fn postgres_disagrees(report: &PgReport) -> bool {
    report.as_ref().is_some_and(|r| !r.agrees())
}

#[cfg(feature = "postgres")]
fn postgres_failure(report: &PgReport) -> Option<&str> {
    report.as_ref().and_then(|r| r.failure.as_deref())
}

#[cfg(feature = "postgres")]
fn postgres_json(report: &PgReport) -> serde_json::Value {
    match report {
        None => serde_json::Value::Null,
        Some(r) => json!({
            "agrees": r.agrees(),
            "cache": if r.on_redis { "redis" } else { "memory" },
            "operations_compared": r.compared,
            "waits_parked": r.waits,
            "divergence": r.divergence,
            "state_agrees": r.state_agrees,
            "cache_agrees": r.cache_agrees,
            "failure": r.failure,
            "model_verdict": r.model_verdict,
        }),
    }
}

#[cfg(feature = "postgres")]
fn print_postgres(report: &PgReport) {
    let Some(r) = report else { return };
    let names = |v: &[cusim_sim::judge::Invariant]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(", ")
        }
    };
    println!(
        "postgres{}: {} operations compared ({} waits parked on a lock); the model's verdict: {}",
        if r.on_redis { " + redis" } else { "" },
        r.compared,
        r.waits,
        names(&r.model_verdict)
    );
    let cache = if r.on_redis { " (cache on Redis)" } else { "" };
    match (&r.failure, r.disagreement()) {
        (Some(failure), _) => println!("postgres{cache}: the replay ended early: {failure}"),
        (None, Some(why)) => println!("postgres{cache} DISAGREES with the model: {why}"),
        (None, None) => {
            println!("postgres{cache} agrees with the model: every answer and the final state")
        }
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
            let why = match &r.failure {
                Some(failure) => format!("ended early: {failure}"),
                None => r.disagreement().unwrap_or_default(),
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
fn postgres_failure(_report: &PgReport) -> Option<&str> {
    None
}

#[cfg(not(feature = "postgres"))]
fn postgres_json(_report: &PgReport) -> serde_json::Value {
    serde_json::Value::Null
}

#[cfg(not(feature = "postgres"))]
fn print_postgres(_report: &PgReport) {}
