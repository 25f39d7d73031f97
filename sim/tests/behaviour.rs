//! Behaviour pinned down: a fixed sample of built-in schedules and the
//! whole regression corpus, each with the schedule a seed expands to, the
//! hash of its trace and the hash of its verdict (every violation's
//! invariant, requests, settle reads, message and evidence), compared
//! with `golden/behaviour.txt`.
//!
//! A change to the code that is meant to leave behaviour alone (a
//! refactor, a speed-up) must leave this file as it is. A change meant to
//! alter behaviour regenerates it (`CUSIM_BLESS=1 cargo test -p cusim-sim
//! --test behaviour`) and says why.

use std::fmt::Write;
use std::path::Path;

use cusim::flow::Strategy;
use cusim_sim::corpus::builtin::BUILTINS;
use cusim_sim::corpus::regression::Regression;
use cusim_sim::drive::stepper::{execute_run, Chooser, Prepared, Replay, RunOptions};
use cusim_sim::explore::{pct_chooser, random_chooser};
use cusim_sim::input::schedule::Schedule;
use cusim_sim::report::text as trace;

/// Seeds per (built-in scenario, strategy), for each of pct and random:
/// 11 scenarios × 3 strategies × 2 schedulers × 16 seeds = 1,056 schedules.
const SEEDS: u64 = 16;

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// One line: how the schedule came about, the full schedule it ran, the
/// trace hash, the verdict hash and the invariants broken.
fn line(label: &str, prepared: &Prepared, chooser: &mut dyn Chooser) -> String {
    let options = RunOptions { record_trace: true, ..RunOptions::default() };
    let run = execute_run(prepared, chooser, options).expect("the schedule replays");
    let violations = cusim_sim::judge::judge(&prepared.scenario, &run.observation);
    let verdict = serde_json::to_string(&violations).expect("violations serialize");
    let mut names: Vec<&str> = violations.iter().map(|v| v.invariant.as_str()).collect();
    names.dedup();
    // The schedule string must replay to the very same trace.
    let replayed = execute_run(prepared, &mut Replay::new(&run.schedule), options).expect("it replays");
    assert_eq!(trace::hash(&replayed.trace), trace::hash(&run.trace), "{label}: the schedule string replays");
    format!(
        "{label} {} {:016x} {:016x} {}\n",
        if run.schedule.is_empty() { "-".to_owned() } else { run.schedule.to_string() },
        trace::hash(&run.trace),
        fnv(&verdict),
        if names.is_empty() { "-".to_owned() } else { names.join(",") }
    )
}

fn behaviour() -> String {
    let mut out = String::from("# label schedule trace_hash verdict_hash violated\n");
    for builtin in BUILTINS {
        let scenario = builtin.scenario().unwrap();
        for strategy in Strategy::ALL {
            let prepared = Prepared::new(&scenario, strategy).unwrap();
            for seed in 0..SEEDS {
                let label = format!("{} {strategy} pct:{seed}", builtin.name());
                out += &line(&label, &prepared, &mut pct_chooser(&prepared, seed, 3, 1));
                let label = format!("{} {strategy} random:{seed}", builtin.name());
                out += &line(&label, &prepared, &mut random_chooser(seed, 1));
            }
        }
    }
    for (path, regression) in Regression::corpus().unwrap() {
        let prepared = Prepared::new(&regression.scenario, regression.strategy).unwrap();
        let schedule = Schedule::parse(&regression.schedule).unwrap();
        let label = format!("corpus {} replay", path.file_stem().unwrap().to_string_lossy());
        let _ = write!(out, "{}", line(&label, &prepared, &mut Replay::new(&schedule)));
    }
    out
}

#[test]
fn sampled_schedules_and_the_corpus_behave_as_pinned() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/behaviour.txt"));
    let actual = behaviour();
    assert!(actual.lines().count() > 1_000 + 20, "the sample holds over 1,000 schedules and the corpus");
    if std::env::var_os("CUSIM_BLESS").is_some() {
        std::fs::write(path, &actual).unwrap();
        return;
    }
    let expected =
        std::fs::read_to_string(path).expect("golden/behaviour.txt exists (CUSIM_BLESS=1 makes it)");
    for (n, (want, got)) in expected.lines().zip(actual.lines()).enumerate() {
        assert_eq!(got, want, "line {}: behaviour changed", n + 1);
    }
    assert_eq!(actual.lines().count(), expected.lines().count(), "the sample's size changed");
}
