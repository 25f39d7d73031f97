//! `cusim check`: runs the black-box checker against a server and reports.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cusim::flow::Strategy;
use cusim::model::{ApiVersion, Family};
use cusim_sim::check::client::Target;
use cusim_sim::check::history::{History, Sender};
use cusim_sim::check::preflight::Given;
use cusim_sim::check::profile::Profile;
use cusim_sim::check::reproduce::{reproduce, Reproduction};
use cusim_sim::check::rows::{self, RowsSource};
use cusim_sim::check::verdict::{self, call_name, Finding};
use cusim_sim::check::workload::{self, Workload};
use cusim_sim::check::{self as checker, CheckConfig, CheckError, MAX_CLIENTS};
use cusim_sim::input::scenario::Scenario;
use cusim_sim::judge::races::Race;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::Usage;

/// What `cusim check` was asked for.
pub(crate) struct CheckArgs {
    pub target: String,
    pub secret_key: Option<String>,
    pub workload: String,
    pub clients: usize,
    pub ops: u64,
    pub time_limit_s: u64,
    pub seed: u64,
    pub request_timeout_ms: u64,
    pub server_time_limit_ms: u64,
    pub routes: Option<String>,
    pub api_version: Option<String>,
    pub target_profile: Option<PathBuf>,
    pub catalog: Option<PathBuf>,
    pub history: Option<PathBuf>,
    pub judge: Option<PathBuf>,
    pub json: bool,
    pub html: Option<PathBuf>,
    pub rows: Option<RowsSource>,
    pub reproduce: Option<ReproduceArgs>,
}

/// What `--reproduce` was asked for.
pub(crate) struct ReproduceArgs {
    pub strategy: Strategy,
    pub finding: Option<usize>,
    pub scenarios: PathBuf,
}

/// The most schedules a reproduction searches.
const REPRODUCE_LIMIT: u64 = 200_000;

/// The most a run may last.
const MAX_TIME_LIMIT_S: u64 = 24 * 3600;

fn config(args: &CheckArgs) -> Result<CheckConfig, Usage> {
    let target = Target::parse(&args.target).map_err(Usage)?;
    let secret_key = crate::secret_key(args.secret_key.as_deref())?;
    let workload = match Workload::named(&args.workload) {
        Some(workload) => workload,
        None if Path::new(&args.workload).exists() => {
            Workload::load(Path::new(&args.workload)).map_err(Usage)?
        }
        None => {
            return Err(Usage(format!(
                "--workload {}: no such file, and not a built-in workload ({})",
                args.workload,
                workload::NAMES.join(", ")
            )))
        }
    };
    if args.clients < 2 || args.clients > MAX_CLIENTS {
        return Err(Usage(format!("--clients {}: from 2 to {MAX_CLIENTS}", args.clients)));
    }
    if args.ops == 0 {
        return Err(Usage("--ops 0: at least one call".into()));
    }
    if args.time_limit_s == 0 || args.time_limit_s > MAX_TIME_LIMIT_S {
        return Err(Usage(format!(
            "--time-limit {}: from 1 to {MAX_TIME_LIMIT_S} seconds",
            args.time_limit_s
        )));
    }
    if args.request_timeout_ms == 0 {
        return Err(Usage("--request-timeout-ms 0: a call needs some time".into()));
    }
    let catalog = match &args.catalog {
        None => crate::default_catalog(),
        Some(path) => Scenario::load_catalog(path).map_err(|e| Usage(format!("--catalog {e}")))?,
    };
    checker::feature_of(&catalog).map_err(|e| Usage(format!("--catalog: {e}")))?;
    let given = Given {
        routes: args.routes.as_deref().map(|r| Family::parse(r).expect("clap takes only v1 or rpc")),
        api_version: match &args.api_version {
            None => None,
            Some(text) => Some(ApiVersion::parse(text).ok_or_else(|| {
                Usage(format!("--api-version {text}: expected major.minor.patch, e.g. 2.1.0"))
            })?),
        },
        profile: match &args.target_profile {
            None => None,
            Some(path) => Some(Profile::load(path).map_err(|e| Usage(format!("--target-profile {e}")))?),
        },
        from_file: false,
    };
    Ok(CheckConfig {
        given,
        target,
        secret_key,
        workload,
        clients: args.clients,
        ops: args.ops,
        time_limit: Duration::from_secs(args.time_limit_s),
        seed: args.seed,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        server_time_limit: Duration::from_millis(args.server_time_limit_ms),
        catalog,
        run_id: checker::fresh_run_id(args.seed),
    })
}

pub(crate) fn run_check(args: CheckArgs) -> Result<ExitCode, Usage> {
    let (history, history_path) = match &args.judge {
        Some(path) => (History::load(path).map_err(|e| Usage(format!("--judge {e}")))?, path.clone()),
        None => {
            let config = config(&args)?;
            let path = args
                .history
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("cusim-check-{}.json", config.run_id)));
            (run(&config, args.json)?, path)
        }
    };
    if args.judge.is_none() {
        history.save(&history_path).map_err(Usage)?;
    }
    let mut findings = verdict::judge(&history);
    let mut notes = verdict::notes(&history);
    if let Some(source) = &args.rows {
        let rows = check_rows(source, &history)?;
        findings.extend(rows.findings);
        notes.extend(rows.notes);
    }
    if let Some(path) = &args.html {
        std::fs::write(path, cusim_sim::check::page::render(&history, &findings))
            .map_err(|e| Usage(format!("--html {}: cannot write: {e}", path.display())))?;
    }
    let reproductions = match &args.reproduce {
        Some(wanted) => reproduce_all(&history, &findings, wanted)?,
        None => Vec::new(),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut report = report_json(&history, &history_path, &findings, &notes);
        if args.reproduce.is_some() {
            report["reproductions"] = reproductions.iter().map(reproduction_json).collect();
        }
        let _ = writeln!(out, "{report}");
    } else {
        let _ = write!(out, "{}", report_text(&history, &history_path, &findings, &notes));
        for reproduction in &reproductions {
            let _ = write!(out, "{}", reproduction_text(reproduction));
        }
    }
    let _ = out.flush();
    Ok(if findings.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn runtime() -> Result<tokio::runtime::Runtime, Usage> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Usage(format!("cannot start the runtime: {e}")))
}

/// The read-only checks of the run's committed rows.
fn check_rows(source: &RowsSource, history: &History) -> Result<rows::RowsVerdict, Usage> {
    rows::quoted_schema(&source.schema).map_err(Usage)?;
    runtime()?.block_on(rows::check_rows(source, history)).map_err(|e| Usage(e.to_string()))
}

/// Gives SIGINT its default action back (the run's handler replaced it),
/// so that Ctrl-C stops what follows the run (judging, reproducing).
fn restore_interrupt() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default is
    // async-signal-safe and touches no Rust state.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
}

fn run(config: &CheckConfig, json: bool) -> Result<History, Usage> {
    let runtime = runtime()?;
    let stop = Arc::new(AtomicBool::new(false));
    let bar = ProgressBar::with_draw_target(Some(config.ops), ProgressDrawTarget::stderr());
    if json || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} calls, {msg}")
            .expect("a fixed template")
            .progress_chars("=> "),
    );
    if !json {
        eprintln!(
            "checking {} with workload {}, seed {}, {} clients, run {} (at most {} calls or {} s; Ctrl-C stops and judges)",
            config.target.url(),
            config.workload.name,
            config.seed,
            config.clients,
            config.run_id,
            config.ops,
            config.time_limit.as_secs()
        );
    }
    let result = runtime.block_on(async {
        let learned = checker::learn(config).await?;
        if !json {
            eprintln!("target profile: {}", learned.profile.describe());
            for line in &learned.lines {
                eprintln!("  {line}");
            }
        }
        let interrupt = Arc::clone(&stop);
        tokio::spawn(async move {
            // The first Ctrl-C ends the run after the group in flight (it
            // is still read back and judged); a second one exits at once.
            while tokio::signal::ctrl_c().await.is_ok() {
                if interrupt.swap(true, Ordering::Relaxed) {
                    eprintln!("interrupted twice: exiting without judging");
                    std::process::exit(130);
                }
                eprintln!("interrupted: finishing the group in flight, then reading back and judging (Ctrl-C again to exit)");
            }
        });
        checker::run(config, &learned, stop, |p| {
            bar.set_position(p.calls.min(config.ops));
            bar.set_message(format!("{} groups", p.groups));
        })
        .await
    });
    bar.finish_and_clear();
    runtime.shutdown_timeout(Duration::from_millis(100));
    restore_interrupt();
    result.map_err(|e| match e {
        CheckError::BadInput(reason) => Usage(reason),
        CheckError::Unreachable(_) | CheckError::Unspoken(_) => {
            Usage(format!("--target {}: {e}", config.target.url()))
        }
    })
}

/// Per race: the first group whose calls showed it, and how many calls
/// and how long the run had taken by the end of that group.
pub(crate) fn first_by_race(history: &History, findings: &[Finding]) -> Vec<(Race, usize, usize, u64)> {
    let mut first: BTreeMap<Race, usize> = BTreeMap::new();
    for finding in findings {
        let Some(group) = finding.group else { continue };
        for race in &finding.suspects {
            let slot = first.entry(*race).or_insert(group);
            *slot = (*slot).min(group);
        }
    }
    first
        .into_iter()
        .map(|(race, group)| {
            let upto = history
                .events
                .iter()
                .filter(|e| e.sender != Sender::Readback && e.group.is_some_and(|g| g <= group));
            let calls = upto.clone().count();
            let time_us = upto.map(|e| e.completed_us).max().unwrap_or(0);
            (race, group, calls, time_us)
        })
        .collect()
}

fn races(races: impl IntoIterator<Item = Race>) -> String {
    let names: Vec<String> = races.into_iter().map(|r| r.to_string()).collect();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(" ")
    }
}

fn run_line(history: &History) -> String {
    let seconds = history.elapsed_us as f64 / 1e6;
    let calls = history.operations();
    let readback = history.events.len() - calls;
    format!(
        "{} groups, {calls} calls in {seconds:.1} s ({:.0} calls/s, stopped by {}); {readback} customers read back",
        history.groups.len(),
        calls as f64 / seconds.max(1e-6),
        history.stopped_by
    )
}

fn report_text(history: &History, path: &Path, findings: &[Finding], notes: &[String]) -> String {
    let mut text = String::new();
    text += &format!(
        "cusim check {} (workload {}, seed {}, {} clients, run {})\n",
        history.target, history.workload, history.seed, history.clients, history.run_id
    );
    text += &format!("{}\nhistory: {}\n", run_line(history), path.display());
    text += &format!("target profile: {}\n\n", history.profile.describe());
    text += &format!("{:<24} {:>8}  {}\n", "invariant", "findings", "races suspected");
    for (invariant, count, suspects) in verdict::summary(findings) {
        text += &format!(
            "{invariant:<24} {count:>8}  {}\n",
            if count == 0 { String::new() } else { races(suspects) }
        );
    }
    for note in notes {
        text += &format!("note: {note}\n");
    }
    let first = first_by_race(history, findings);
    if !first.is_empty() {
        text += "\nfirst seen (race: group, calls and time by its end)\n";
        for (race, group, calls, time_us) in first {
            text += &format!("  {race}: group {group}, {calls} calls, {:.2} s\n", time_us as f64 / 1e6);
        }
    }
    if findings.is_empty() {
        text += "\nno invariant broken\n";
        return text;
    }
    const SHOWN: usize = 20;
    text += &format!(
        "\nfindings ({}{}):\n",
        if findings.len() > SHOWN { "first 20 of " } else { "" },
        findings.len()
    );
    for (number, finding) in findings.iter().enumerate().take(SHOWN) {
        let events: Vec<String> = finding.events.iter().map(|e| e.to_string()).collect();
        let place = match (finding.group, finding.block) {
            (Some(group), Some(block)) => format!("group {group} ({})", block.as_str()),
            _ => "read-back".into(),
        };
        text += &format!(
            "  #{number} {} [{}] {place}: {}\n      events {}\n",
            finding.invariant,
            races(finding.suspects.iter().copied()),
            finding.message,
            events.join(", ")
        );
    }
    if let Some(finding) = findings.first() {
        text += "\nthe calls of the first finding:\n";
        for &index in &finding.events {
            let event = &history.events[index];
            let who = match event.sender {
                Sender::Setup => "setup".to_owned(),
                Sender::Client(n) => format!("client {n}"),
                Sender::Readback => "read-back".to_owned(),
            };
            text += &format!(
                "  {index:>6} {who:<10} {:>9.3}-{:<9.3} ms {} {} -> {}\n",
                event.invoked_us as f64 / 1e3,
                event.completed_us as f64 / 1e3,
                call_name(&event.call),
                event.call.customer_id().unwrap_or("(no id)"),
                event.outcome.short()
            );
        }
    }
    text
}

fn report_json(history: &History, path: &Path, findings: &[Finding], notes: &[String]) -> serde_json::Value {
    let seconds = history.elapsed_us as f64 / 1e6;
    let calls = history.operations();
    json!({
        "target": history.target,
        "workload": history.workload,
        "seed": history.seed,
        "run_id": history.run_id,
        "clients": history.clients,
        "groups": history.groups.len(),
        "calls": calls,
        "read_back": history.events.len() - calls,
        "elapsed_s": seconds,
        "calls_per_s": calls as f64 / seconds.max(1e-6),
        "stopped_by": history.stopped_by,
        "history": path.display().to_string(),
        "profile": history.profile,
        "generations": history.profile.generations().iter().map(|g| g.name()).collect::<Vec<_>>(),
        "preflight": history.preflight,
        "summary": verdict::summary(findings).into_iter().map(|(invariant, count, suspects)| {
            json!({"invariant": invariant, "findings": count, "suspects": suspects})
        }).collect::<Vec<_>>(),
        "first_by_race": first_by_race(history, findings).into_iter().map(|(race, group, calls, time_us)| {
            json!({"race": race, "group": group, "calls": calls, "time_s": time_us as f64 / 1e6})
        }).collect::<Vec<_>>(),
        "notes": notes,
        "unjudged": verdict::unjudged(history),
        "findings": findings,
    })
}

/// One reproduction, done or refused.
pub(crate) struct Reproduced {
    number: usize,
    finding: Finding,
    scenario_path: PathBuf,
    result: Result<Reproduction, String>,
}

/// The findings `wanted` names: finding N, or the first of each race
/// suspected (the first finding, when none names a race).
fn reproduce_all(
    history: &History,
    findings: &[Finding],
    wanted: &ReproduceArgs,
) -> Result<Vec<Reproduced>, Usage> {
    let chosen: Vec<usize> = match wanted.finding {
        Some(n) if n < findings.len() => vec![n],
        Some(n) => {
            return Err(Usage(format!("--finding {n}: the report has {} findings (from 0)", findings.len())))
        }
        None => {
            let mut chosen = Vec::new();
            let mut seen = std::collections::BTreeSet::new();
            for (n, finding) in findings.iter().enumerate() {
                if finding.group.is_some() && finding.suspects.iter().any(|r| seen.insert(*r)) {
                    chosen.push(n);
                }
            }
            if chosen.is_empty() {
                chosen.extend(findings.iter().position(|f| f.group.is_some()));
            }
            chosen
        }
    };
    std::fs::create_dir_all(&wanted.scenarios)
        .map_err(|e| Usage(format!("--scenarios {}: cannot create: {e}", wanted.scenarios.display())))?;
    Ok(chosen
        .into_iter()
        .map(|number| {
            let finding = findings[number].clone();
            let name = format!(
                "{}-g{}-{}.json",
                history.run_id,
                finding.group.unwrap_or(0),
                finding.invariant.replace('_', "-")
            );
            let scenario_path = wanted.scenarios.join(name);
            let result = reproduce(history, &finding, wanted.strategy, &scenario_path, REPRODUCE_LIMIT);
            Reproduced { number, finding, scenario_path, result }
        })
        .collect())
}

fn replay_command(reproduced: &Reproduced, reproduction: &Reproduction) -> Option<String> {
    reproduction.schedule.as_ref().map(|schedule| {
        format!(
            "cusim replay --scenario {} --strategy {} --schedule {}",
            crate::shell_quote(&reproduced.scenario_path.display().to_string()),
            reproduction.strategy,
            crate::shell_quote(schedule)
        )
    })
}

fn reproduction_text(reproduced: &Reproduced) -> String {
    let finding = &reproduced.finding;
    let mut text = format!(
        "\nreproduce #{} ({}, group {}, suspected {}):\n",
        reproduced.number,
        finding.invariant,
        finding.group.map_or("-".into(), |g| g.to_string()),
        races(finding.suspects.iter().copied())
    );
    match &reproduced.result {
        Err(reason) => text += &format!("  not reproduced: {reason}\n"),
        Ok(reproduction) => {
            let events: Vec<String> = reproduction.events.iter().map(|e| e.to_string()).collect();
            text += &format!(
                "  scenario {} ({} requests, for events {})\n",
                reproduced.scenario_path.display(),
                reproduction.events.len(),
                events.join(", ")
            );
            match replay_command(reproduced, reproduction) {
                Some(command) => {
                    let broken: Vec<&str> = reproduction.broken.iter().map(|i| i.as_str()).collect();
                    text += &format!(
                        "  a schedule of the model ({}) answers as the server did, found after {} schedules; it breaks {}; races in its trace: {}\n  {command}\n",
                        reproduction.strategy,
                        reproduction.schedules_run,
                        if broken.is_empty() { "nothing".to_owned() } else { broken.join(", ") },
                        races(reproduction.races.iter().copied())
                    );
                }
                None if reproduction.exhausted => {
                    text += &format!(
                        "  no schedule of the model ({}), with no clock move and no fault, answers these calls as the server did and breaks {}: {} sets of two or three of the group's calls tried, each set's whole (reduced) space run, {} schedules. The server did something the model cannot\n",
                        reproduction.strategy, finding.invariant, reproduction.sets_tried, reproduction.schedules_run
                    );
                }
                None => {
                    text += &format!(
                        "  no schedule of the model ({}) answering as the server did within {} schedules ({} sets of calls tried; at most 20,000 schedules a set, 200,000 in all: the spaces are larger)\n",
                        reproduction.strategy, reproduction.schedules_run, reproduction.sets_tried
                    );
                }
            }
        }
    }
    text
}

fn reproduction_json(reproduced: &Reproduced) -> serde_json::Value {
    let mut value = json!({
        "finding": reproduced.number,
        "invariant": reproduced.finding.invariant,
        "scenario": reproduced.scenario_path.display().to_string(),
    });
    match &reproduced.result {
        Err(reason) => value["error"] = json!(reason),
        Ok(reproduction) => {
            value["strategy"] = json!(reproduction.strategy.to_string());
            value["events"] = json!(reproduction.events);
            value["schedule"] = json!(reproduction.schedule);
            value["replay"] = json!(replay_command(reproduced, reproduction));
            value["broken"] = json!(reproduction.broken);
            value["races"] = json!(reproduction.races);
            value["schedules_run"] = json!(reproduction.schedules_run);
            value["exhausted"] = json!(reproduction.exhausted);
            value["sets_tried"] = json!(reproduction.sets_tried);
        }
    }
    value
}
