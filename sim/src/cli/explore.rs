//! `cusim explore`: one scenario under one strategy, or every built-in
//! under every strategy (`--all`), with a progress bar on a terminal.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use cusim::flow::Strategy;
use cusim_sim::corpus::builtin::BUILTINS;
use cusim_sim::drive::stepper::Availability;
use cusim_sim::explore::{
    explore_on, shrink_all, Completeness, ExploreConfig, ExploreReport, Reduction, SchedulerKind, Shard,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::{load_scenario, prepare, shell_quote, ReductionArg, SchedulerArg, Usage};

/// The deepest bug pct may aim for (deeper is no longer a useful bound).
const MAX_DEPTH: usize = 64;

/// Replays a shrink may spend per violation.
const SHRINK_ATTEMPTS: usize = 20_000;

/// Schedules between two updates of the progress bar.
const PROGRESS_EVERY: u64 = 256;

/// A progress bar on stderr: of `len` steps, or a counter when the end is
/// not known. Hidden with `--json` and when stderr is not a terminal, so
/// logs and pipes get only the result.
fn progress(len: Option<u64>, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match len {
        Some(len) => (ProgressBar::new(len), "{msg:40} [{bar:30}] {pos}/{len} ({elapsed}, {eta} left)"),
        None => (ProgressBar::no_length(), "{msg:40} {pos} schedules ({elapsed})"),
    };
    let style = ProgressStyle::with_template(template).expect("the template is valid").progress_chars("=> ");
    bar.set_style(style);
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar
}

pub(crate) fn config(
    scheduler: SchedulerArg,
    seeds: Option<u64>,
    seed: Option<u64>,
    (max_preemptions, reduction): (Option<usize>, Option<ReductionArg>),
    depth: Option<usize>,
    (max_ticks, split): (usize, bool),
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
        SchedulerArg::Random | SchedulerArg::Pct if reduction.is_some() => {
            return only("--reduction", "exhaustive")
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
    let reduction = match reduction {
        Some(ReductionArg::None) => Reduction::None,
        Some(ReductionArg::SleepSets) => Reduction::SleepSets,
        Some(ReductionArg::States) => Reduction::States,
        Some(ReductionArg::WakeupTrees) => Reduction::WakeupTrees,
        Some(ReductionArg::SourceSets) => Reduction::SourceSets,
        // States cached run one search on one thread, and on every space
        // measured the fastest (BENCHMARKS, "The default reduction"); a
        // search split over threads or shards takes source sets, which
        // split.
        None if split => Reduction::SourceSets,
        None => Reduction::States,
    };
    let config = match scheduler {
        SchedulerKind::Exhaustive { max_preemptions } => {
            ExploreConfig::exhaustive(reduction, max_preemptions, max_ticks, schedules)
        }
        sampler => ExploreConfig::sampled(sampler, schedules, max_ticks),
    };
    Ok(ExploreConfig { first_seed: seed, ..config })
}

/// What an exploration covered, in words.
fn coverage(report: &ExploreReport) -> String {
    let shard = report.shard.map_or(String::new(), |s| format!(" (shard {s})"));
    let reduction = match report.reduction {
        Some(Reduction::SourceSets) => {
            format!(", source sets ({} equivalent runs cut short)", report.redundant_runs)
        }
        Some(Reduction::WakeupTrees) => {
            format!(", wakeup trees ({} equivalent runs cut short)", report.redundant_runs)
        }
        Some(Reduction::SleepSets) => {
            format!(", sleep sets ({} equivalent runs cut short)", report.redundant_runs)
        }
        Some(Reduction::None) => ", no reduction".to_owned(),
        Some(Reduction::States) => {
            format!(
                ", states cached ({} states met, {} runs stopped at a state met before)",
                report.states_met.unwrap_or(0),
                report.redundant_runs
            )
        }
        None => String::new(),
    };
    let completeness = match report.completeness {
        Completeness::Sampled => "",
        Completeness::Complete => ", the whole space",
        Completeness::CompleteWithinBound => ", the whole space within the preemption bound",
        Completeness::Bounded => ", bounded in preemptions (a reduced search is not complete within a bound)",
        Completeness::Partial => ", not the whole space",
    };
    format!("{shard}{completeness}{reduction}")
}

fn print_report(report: &ExploreReport, origin: &str) {
    let coverage = coverage(report);
    println!(
        "{} under {} ({}): {} schedules{coverage}",
        report.scenario, report.strategy, report.scheduler, report.schedules_run
    );
    if report.violations.is_empty() {
        println!("  no invariant violated");
    }
    for found in &report.violations {
        let race = found.race.map_or_else(|| "no catalog race".to_owned(), |r| format!("race {r}"));
        println!("  VIOLATED {} ({race}): {}", found.invariant, found.message);
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

pub(crate) fn run_explore(
    scenario: &str,
    strategy: Strategy,
    (config, threads): (&ExploreConfig, usize),
    json: bool,
    shrink: bool,
    save: Option<&Path>,
) -> Result<ExitCode, Usage> {
    let (scenario, origin) = load_scenario(scenario)?;
    let prepared = prepare(&scenario, &origin, strategy)?;
    // The exhaustive scheduler's budget is a cap, not the size of its space.
    let bar = match config.scheduler {
        SchedulerKind::Exhaustive { .. } => progress(None, json),
        _ => progress(Some(config.schedules), json),
    };
    bar.set_message(format!("{} under {strategy}", scenario.name));
    let mut report = explore_on(&prepared, config, threads, |n| {
        if n % PROGRESS_EVERY == 0 {
            bar.set_position(n);
        }
    });
    bar.finish_and_clear();
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
        let regression = shrunk.to_regression();
        let path =
            regression.save(dir).map_err(|e| Usage(format!("{}: cannot write: {e}", dir.display())))?;
        eprintln!("saved {}", path.display());
    }
    Ok(())
}

/// How far "safe held" reaches, in words: a sample, every schedule, or
/// every schedule of some pairs only.
fn held_bound(reports: &[ExploreReport]) -> String {
    let safe: Vec<&ExploreReport> = reports.iter().filter(|r| r.strategy == Strategy::Safe).collect();
    let whole = safe.iter().filter(|r| r.completeness == Completeness::Complete).count();
    match safe.first().map(|r| r.completeness) {
        None => "no pair of safe ran".into(),
        Some(Completeness::Sampled) => {
            format!("a sample: {} schedules per pair, not every schedule", safe[0].schedules_run)
        }
        Some(_) if whole == safe.len() => format!("every schedule of each of the {} pairs run", safe.len()),
        Some(_) => {
            format!("every schedule of {whole} of the {} pairs run; the others only in part", safe.len())
        }
    }
}

/// One line on what `--all` ran: schedules per pair, and, for the
/// exhaustive scheduler, its reduction and how many pairs it covered whole.
fn summary(reports: &[ExploreReport], shard: Option<Shard>) -> String {
    let shard = shard.map_or(String::new(), |s| format!("shard {s}: "));
    let Some(first) = reports.first() else { return format!("{shard}no pair ran") };
    let total: u64 = reports.iter().map(|r| r.schedules_run).sum();
    let least = reports.iter().map(|r| r.schedules_run).min().unwrap_or(0);
    let most = reports.iter().map(|r| r.schedules_run).max().unwrap_or(0);
    let per_pair = if least == most { format!("{least}") } else { format!("{least} to {most}") };
    let mut line = format!("{shard}{} pairs, {per_pair} schedules per pair ({total} in all)", reports.len());
    if let Some(reduction) = first.reduction {
        let whole = reports.iter().filter(|r| r.completeness == Completeness::Complete).count();
        let reduction = serde_json::to_value(reduction).expect("reductions serialize");
        line.push_str(&format!(
            "; exhaustive with reduction {}: {whole} of {} pairs run whole",
            reduction.as_str().unwrap_or("?"),
            reports.len()
        ));
        let partial: Vec<String> = reports
            .iter()
            .filter(|r| r.completeness != Completeness::Complete)
            .map(|r| format!("{} under {}", r.scenario, r.strategy))
            .collect();
        if !partial.is_empty() {
            line.push_str(&format!(" (not whole: {})", partial.join(", ")));
        }
    }
    line
}

pub(crate) fn run_all(
    config: &ExploreConfig,
    (shard, threads): (Option<Shard>, usize),
    json: bool,
    shrink: bool,
    save: Option<&Path>,
) -> Result<ExitCode, Usage> {
    let pairs = (BUILTINS.len() * Strategy::ALL.len()) as u64;
    let owned = |k: u64| shard.is_none_or(|s| s.owns(k));
    let bar = progress(Some((0..pairs).filter(|&k| owned(k)).count() as u64), json);
    let mut reports = Vec::new();
    let mut pair = 0;
    let mut availability: BTreeMap<Strategy, Availability> = BTreeMap::new();
    let mut rows = Vec::new();
    let mut failed = false;
    for builtin in BUILTINS {
        let scenario = builtin.scenario().map_err(|e| Usage(e.to_string()))?;
        let mut row = vec![builtin.name().to_owned()];
        for strategy in Strategy::ALL {
            pair += 1;
            if !owned(pair - 1) {
                let count = shard.map_or(1, |s| s.count) as u64;
                row.push(format!("(shard {})", (pair - 1) % count + 1));
                continue;
            }
            bar.set_message(format!("{} under {strategy}", builtin.name()));
            let prepared = prepare(&scenario, &builtin.path(), strategy)?;
            let mut report = explore_on(&prepared, config, threads, |_| {});
            if shrink {
                shrink_all(&mut report, &prepared, SHRINK_ATTEMPTS);
                save_regressions(&report, save)?;
            }
            let mut cell: Vec<String> = Vec::new();
            for found in &report.violations {
                let expected = builtin.expected.contains(&(strategy, found.invariant));
                let race = found.race.map_or(String::new(), |r| format!(" {r}"));
                cell.push(format!("{}{}{race}", found.invariant, if expected { "" } else { "!" }));
            }
            for (expected_strategy, invariant) in builtin.expected {
                if *expected_strategy == strategy
                    && !report.violations.iter().any(|f| f.invariant == *invariant)
                {
                    cell.push(format!("MISSED {invariant}"));
                    failed = true;
                }
            }
            for (expected_strategy, race) in builtin.races {
                if *expected_strategy == strategy && !report.violations.iter().any(|f| f.race == Some(*race))
                {
                    cell.push(format!("MISSED {race}"));
                    failed = true;
                }
            }
            if strategy == Strategy::Safe && !report.violations.is_empty() {
                failed = true;
            }
            row.push(if cell.is_empty() { "ok".to_owned() } else { cell.join(", ") });
            availability.entry(strategy).or_default().add(report.availability);
            reports.push(report);
            bar.inc(1);
        }
        rows.push(row);
    }
    bar.finish_and_clear();
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
        println!("\n{}", summary(&reports, shard));
        println!("An invariant marked ! is broken where SPEC §8 does not expect it.");
        println!("\nAvailability (requests over every schedule; not an invariant):");
        for (strategy, a) in &availability {
            println!(
                "  {:<13} {} sent, {} failed, {} of them because of a fault in a service they did not need",
                strategy.as_str(),
                a.requests,
                a.failed,
                a.failed_by_unneeded_service
            );
        }
        if failed {
            println!("FAILED: safe broke an invariant, or an expected race was missed.");
        } else {
            println!(
                "safe held in every schedule run ({}); every expected race was found.",
                held_bound(&reports)
            );
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
