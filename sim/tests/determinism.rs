//! The same scenario, strategy and schedule give the same trace, byte for
//! byte; a failing schedule replays in a fresh process.

mod support;

use std::process::Command;

use cusim::flow::Strategy;
use cusim_sim::corpus::builtin::BUILTINS;
use cusim_sim::drive::stepper::{execute_run, Lenient, Prepared, Replay, RunOptions};
use cusim_sim::explore::{explore, pct_chooser, ExploreConfig, SchedulerKind};
use cusim_sim::input::schedule::{Schedule, Token};
use cusim_sim::report::text as trace;
use support::*;

fn traced(prepared: &Prepared, schedule: &Schedule) -> (String, u64, Schedule) {
    let options = RunOptions { record_trace: true, ..RunOptions::default() };
    let run = execute_run(prepared, &mut Replay::new(schedule), options).unwrap();
    (trace::render(&run.trace), trace::hash(&run.trace), run.schedule)
}

#[test]
fn sampled_schedules_replayed_twice_give_identical_traces() {
    let mut compared = 0;
    for builtin in BUILTINS {
        let scenario = builtin.scenario().unwrap();
        for strategy in Strategy::ALL {
            let prepared = Prepared::new(&scenario, strategy).unwrap();
            let again = Prepared::new(&scenario, strategy).unwrap();
            for seed in 0..20 {
                let options = RunOptions { record_trace: true, ..RunOptions::default() };
                // A pct schedule, as an explorer would produce it, and an
                // arbitrary one (its tokens that cannot be followed skipped).
                let pct = execute_run(&prepared, &mut pct_chooser(&prepared, seed, 3, 1), options).unwrap();
                let mut rng = cusim_sim::explore::seeded(seed);
                let tokens = (0..12).map(|_| Token::run(rng.below(scenario.requests.len())));
                let arbitrary = Schedule(tokens.collect());
                let lenient = execute_run(&prepared, &mut Lenient::new(&arbitrary), options).unwrap();
                for run in [pct, lenient] {
                    let expected = (trace::render(&run.trace), trace::hash(&run.trace));
                    // The full schedule the run reports replays to the same
                    // trace, byte for byte, on this preparation and another.
                    let (text_a, hash_a, full_a) = traced(&prepared, &run.schedule);
                    let (text_b, hash_b, full_b) = traced(&again, &run.schedule);
                    assert_eq!((&text_a, hash_a), (&expected.0, expected.1), "{} {strategy}", scenario.name);
                    assert_eq!((text_b, hash_b), expected, "{} {strategy} {}", scenario.name, run.schedule);
                    assert_eq!(full_a, run.schedule);
                    assert_eq!(full_b, run.schedule);
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, BUILTINS.len() * Strategy::ALL.len() * 20 * 2);
}

#[test]
fn the_same_seed_explores_the_same_schedules() {
    let scenario = builtin_scenario("r2-stale-cache");
    let prepared = Prepared::new(&scenario, Strategy::Legacy).unwrap();
    for scheduler in [SchedulerKind::Random, SchedulerKind::Pct { depth: 3 }] {
        let config = ExploreConfig { first_seed: 7, ..ExploreConfig::sampled(scheduler, 200, 1) };
        let a = serde_json::to_string(&explore(&prepared, &config, |_| {})).unwrap();
        let b = serde_json::to_string(&explore(&prepared, &config, |_| {})).unwrap();
        assert_eq!(a, b);
    }
}

fn cusim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cusim"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("the cusim binary runs")
}

#[test]
fn a_failing_schedule_replays_in_a_fresh_process() {
    for builtin in BUILTINS.iter().filter(|b| !b.expected.is_empty()) {
        let scenario = builtin.scenario().unwrap();
        let (strategy, invariant) = builtin.expected[0];
        let report = pct(&scenario, strategy, 500);
        let found = report.violations.iter().find(|f| f.invariant == invariant).expect("pct finds it");

        let path = builtin.path();
        let output = cusim(&[
            "replay",
            "--scenario",
            &path,
            "--strategy",
            strategy.as_str(),
            "--schedule",
            &found.schedule,
            "--json",
        ]);
        assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let names: Vec<&str> =
            json["violations"].as_array().unwrap().iter().map(|v| v["invariant"].as_str().unwrap()).collect();
        assert!(names.contains(&invariant.as_str()), "{}: {names:?}", builtin.name());

        // The in-process trace and the fresh process's agree byte for byte.
        let prepared = Prepared::new(&scenario, strategy).unwrap();
        let (_, hash, _) = traced(&prepared, &Schedule::parse(&found.schedule).unwrap());
        assert_eq!(json["trace_hash"].as_str().unwrap(), format!("{hash:016x}"));
    }
}
