//! The claims ledger. Each test that proves something the docs state
//! writes one line when it passes: the claim in words, its scope
//! (scenarios, strategies, clock moves, faults), its bound by name
//! ([`Bound`]: complete, complete within N preemptions, sampled N, …) and
//! its figures (schedules run, faults placed, …). `cargo xtask claims`
//! prints the ledger; the claims chapter's table (docs/book/claims.md) and BENCHMARKS' table of
//! exhaustive spaces are made from it (`cargo xtask claims --write`), and
//! `cargo xtask test` fails when the checked-in tables differ from what
//! the tests wrote: a figure in the docs is one a test produced, and a
//! claim the tests no longer make drops out of the docs' tables.
//!
//! The ledger is a folder of files, one per claim (`target/claims/`, or
//! `CUSIM_CLAIMS_DIR`), each one line of tab-separated fields: id, claim,
//! scope, bound, figures (`name=value`, space-separated), seconds. Tests
//! run side by side, each writing its own file. The seconds are the test's
//! own time, for the printed ledger only: the docs' tables hold what does
//! not change from run to run.

use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

/// How far a claim's evidence reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// Every schedule of the space (with a reduction: one of every class of
    /// equivalent schedules), or every case of a finite set.
    Complete,
    /// Every schedule within this many preemptions (plain search).
    WithinPreemptions(usize),
    /// This many cases drawn at random (seeds, generated scenarios, calls).
    Sampled(u64),
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Complete => f.write_str("complete"),
            Bound::WithinPreemptions(1) => f.write_str("complete within 1 preemption"),
            Bound::WithinPreemptions(n) => write!(f, "complete within {n} preemptions"),
            Bound::Sampled(n) => write!(f, "sampled {n}"),
        }
    }
}

/// One claim, as a test makes it.
#[derive(Debug, Clone)]
pub struct Claim {
    /// A stable name (`safe/r1-same-id-create`), its file's name.
    pub id: String,
    /// What is claimed, in words.
    pub claim: String,
    /// Over what: scenarios, strategies, clock moves, faults.
    pub scope: String,
    pub bound: Bound,
    /// Counts that back it (schedules, faults placed, operations compared).
    pub figures: Vec<(String, u64)>,
}

impl Claim {
    pub fn new(
        id: impl Into<String>,
        claim: impl Into<String>,
        scope: impl Into<String>,
        bound: Bound,
    ) -> Claim {
        Claim { id: id.into(), claim: claim.into(), scope: scope.into(), bound, figures: Vec::new() }
    }

    /// Adds a figure (`schedules`, `faults`, …).
    pub fn figure(mut self, name: &str, value: u64) -> Claim {
        self.figures.push((name.to_owned(), value));
        self
    }

    /// Writes the claim to the ledger, with the time since `started`.
    ///
    /// # Panics
    /// When the ledger cannot be written (the test cannot stand behind
    /// its claim then).
    pub fn record(&self, started: Instant) {
        let dir = ledger_dir();
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("{}: cannot make the ledger: {e}", dir.display()));
        let path = dir.join(format!("{}.tsv", self.id.replace('/', "__")));
        let line = self.line(started.elapsed().as_secs_f64());
        std::fs::write(&path, line).unwrap_or_else(|e| panic!("{}: cannot write: {e}", path.display()));
    }

    /// The ledger line.
    fn line(&self, seconds: f64) -> String {
        let clean = |text: &str| text.replace(['\t', '\n'], " ");
        let figures: Vec<String> =
            self.figures.iter().map(|(name, value)| format!("{name}={value}")).collect();
        format!(
            "{}\t{}\t{}\t{}\t{}\t{seconds:.1}\n",
            clean(&self.id),
            clean(&self.claim),
            clean(&self.scope),
            self.bound,
            figures.join(" ")
        )
    }
}

/// A scope's clock moves in words: `no clock move`, `up to 1 clock move`,
/// `up to N clock moves`.
pub fn clock_moves(n: usize) -> String {
    match n {
        0 => "no clock move".into(),
        1 => "up to 1 clock move".into(),
        n => format!("up to {n} clock moves"),
    }
}

/// Where the ledger is: `CUSIM_CLAIMS_DIR`, else the workspace's
/// `target/claims`.
pub fn ledger_dir() -> PathBuf {
    std::env::var_os("CUSIM_CLAIMS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/claims")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_holds_every_field_without_tabs_or_newlines() {
        let claim = Claim::new("safe/r1", "safe\tholds", "r1,\nsafe", Bound::WithinPreemptions(3))
            .figure("schedules", 12)
            .figure("faults", 3);
        let line = claim.line(2.0);
        assert_eq!(
            line,
            "safe/r1\tsafe holds\tr1, safe\tcomplete within 3 preemptions\tschedules=12 faults=3\t2.0\n"
        );
        assert_eq!(Bound::Sampled(1000).to_string(), "sampled 1000");
    }
}
