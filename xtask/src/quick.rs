//! `cargo xtask test quick`: the edit loop. In the dev profile
//! (incremental), one resolve of features for both invocations so the
//! second builds nothing the first built:
//! - every crate's unit tests, and the reference implementation's and the
//!   HTTP server's in-memory tests (acceptance cases 1–15, validation,
//!   every route in process);
//! - the pinned behaviour file (`sim/tests/golden/behaviour.txt`: 1,440
//!   seeded schedules and every regression, each schedule, trace hash and
//!   verdict) and one exhaustive built-in per strategy (acceptance case 9:
//!   r4 under `legacy` breaks `unique_customer`, under `transactional` and
//!   `safe` every schedule holds);
//! - every command the README and the book show, run in memory with its
//!   output compared, and every relative link of the docs.
//!
//! It proves much less than `cargo xtask test` and writes no claims.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use crate::jobs::{parse_result_line, Tally};

/// The in-memory test files of the unit mode that quick runs too.
const IN_MEMORY_TESTS: [&str; 6] =
    ["acceptance", "validation", "mem_model", "sequential_flows", "http", "shutdown"];

/// The named tests of the stepper that quick runs.
const PINNED: [(&str, &str); 4] = [
    ("behaviour", "sampled_schedules_and_the_corpus_behave_as_pinned"),
    ("races", "case_09_create_concurrent_null_id_same_email_interleaved"),
    ("docs", "every_command_shown_in_memory_runs_as_shown"),
    ("docs", "every_relative_link_in_the_docs_leads_somewhere"),
];

/// Runs `cargo ARGS`, echoing its stdout and counting libtest's results.
fn cargo(root: &Path, args: &[String]) -> Tally {
    eprintln!("==> quick: cargo {}", args.join(" "));
    let spawned = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(root)
        .env("CI", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            eprintln!("quick: could not start cargo: {error}");
            return Tally::runner_failed();
        }
    };
    let mut tally = Tally::default();
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        println!("{line}");
        if let Some((passed, failed)) = parse_result_line(&line) {
            tally.passed += passed;
            tally.failed += failed;
        }
    }
    if !child.wait().is_ok_and(|s| s.success()) {
        tally.runner_failed = tally.failed == 0;
    }
    tally
}

/// The two cargo invocations quick makes.
fn invocations() -> [Vec<String>; 2] {
    let mut unit: Vec<String> =
        ["test", "--workspace", "--exclude", "cusim-bench", "--lib", "--bins"].map(String::from).to_vec();
    for name in IN_MEMORY_TESTS {
        unit.extend(["--test".into(), name.into()]);
    }
    let mut pinned: Vec<String> =
        ["test", "--workspace", "--exclude", "cusim-bench"].map(String::from).to_vec();
    let mut files: Vec<&str> = PINNED.iter().map(|(file, _)| *file).collect();
    files.dedup();
    for file in files {
        pinned.extend(["--test".into(), file.into()]);
    }
    pinned.extend(["--".into(), "--exact".into()]);
    pinned.extend(PINNED.iter().map(|(_, test)| test.to_string()));
    [unit, pinned]
}

pub fn run(root: &Path) -> ExitCode {
    let started = Instant::now();
    let mut total = Tally::default();
    for args in invocations() {
        total.add(cargo(root, &args));
    }
    println!(
        "quick: {} passed, {} failed in {:.0} s (the whole proof: cargo xtask test)",
        total.passed,
        total.failed,
        started.elapsed().as_secs_f64()
    );
    if total.failed == 0 && !total.runner_failed && total.passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file and test quick names exists, so a rename fails here
    /// rather than quick running nothing.
    #[test]
    fn quick_names_tests_that_exist() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for name in IN_MEMORY_TESTS {
            let found =
                ["tests", "serve/tests"].iter().any(|dir| root.join(dir).join(format!("{name}.rs")).exists());
            assert!(found, "no test file {name}.rs in tests/ or serve/tests/");
        }
        for (file, test) in PINNED {
            let path = root.join("sim/tests").join(format!("{file}.rs"));
            let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(source.contains(&format!("fn {test}()")), "{}: no test {test}", path.display());
        }
        let [unit, pinned] = invocations();
        assert!(unit.contains(&"--workspace".into()) && pinned.contains(&"--workspace".into()));
    }
}
