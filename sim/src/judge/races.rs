//! Which race of SPEC §8 a failing run shows, told from its violations,
//! its evidence and its trace.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use crate::input::scenario::{FaultKind, Scenario};
use crate::input::schedule::{Schedule, Token};

use super::invariants::{Invariant, Violation};
use super::trace::{Event, EventKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Race {
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
}

impl Race {
    pub const ALL: [Race; 9] =
        [Race::R1, Race::R2, Race::R3, Race::R4, Race::R5, Race::R6, Race::R7, Race::R8, Race::R9];
}

impl fmt::Display for Race {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

fn products(value: &serde_json::Value) -> usize {
    value["products"].as_array().map_or(0, Vec::len)
}

/// The races a run of `scenario` by `schedule` shows. Needs the run's
/// trace (`record_trace`) to tell R8 from R9.
pub fn classify(
    scenario: &Scenario,
    schedule: &Schedule,
    trace: &[Event],
    violations: &[Violation],
) -> BTreeSet<Race> {
    let crashed = scenario.faults.iter().any(|f| f.kind == FaultKind::Crash)
        || schedule.0.iter().any(|t| matches!(t, Token::Run { fault: Some(FaultKind::Crash), .. }));
    let sync_lost = trace.iter().any(|e| {
        matches!(&e.kind, EventKind::Op { point: cusim::backend::Point::SyncUsage, result, .. } if result.starts_with("no cache entry"))
    });
    let mut races = BTreeSet::new();
    for violation in violations {
        let race = match violation.invariant {
            Invariant::NoInternalError if violation.message.contains("23505") => Some(Race::R1),
            Invariant::FreshCache => {
                let cached = &violation.evidence["cached"];
                let db = &violation.evidence["db"];
                if products(cached) < products(db) {
                    Some(Race::R2)
                } else if cached["customer"]["processor"].is_null() && !db["customer"]["processor"].is_null()
                {
                    Some(Race::R7)
                } else {
                    None
                }
            }
            Invariant::DefaultsPresent if crashed => Some(Race::R3),
            Invariant::UniqueCustomer if violation.message.contains("id-less rows") => Some(Race::R4),
            Invariant::ClaimCorrect => Some(Race::R5),
            Invariant::SingleStripeCustomer if violation.message.contains(" Stripe customers [") => {
                Some(Race::R6)
            }
            Invariant::UsageConserved if sync_lost => Some(Race::R9),
            Invariant::UsageConserved => Some(Race::R8),
            _ => None,
        };
        races.extend(race);
    }
    races
}
