//! Judging a finished run: the [`Observation`] every driver builds (how
//! each request ended, the settle reads, who made each customer, how the
//! run ended, the committed state), the one function that judges it
//! ([`judge`], SPEC §6's invariants), and the race of SPEC §8 a failing
//! run shows ([`races`]).
//!
//! The oracle reads only what a black-box observer could: the responses,
//! the settle reads, and the committed state of the DB, the cache and
//! Stripe. It depends on the observation, never on a driver.

pub mod invariants;
pub mod observation;
pub mod races;
pub mod settle;
pub mod trace;

use crate::input::scenario::Scenario;

pub use invariants::{owed_defaults, Invariant, Violation};
pub use observation::{creators, Creator, End, Observation, RequestOutcome, Settle, SettleKey, State};

/// Every invariant of SPEC §6 the observed run of `scenario` violates.
pub fn judge(scenario: &Scenario, observation: &Observation) -> Vec<Violation> {
    invariants::check(scenario, observation)
}
