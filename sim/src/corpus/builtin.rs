//! The built-in scenarios (`fixtures/scenarios/`), compiled in, with what
//! SPEC §8 says each must show.

use std::path::Path;

use cusim::flow::Strategy;

use crate::input::scenario::{Scenario, ScenarioError};
use crate::judge::races::Race;
use crate::judge::Invariant;

/// A built-in scenario and the invariants SPEC §8 says each strategy breaks.
pub struct Builtin {
    pub file: &'static str,
    pub text: &'static str,
    /// `(strategy, invariant)` pairs the harness must find.
    pub expected: &'static [(Strategy, Invariant)],
    /// `(strategy, race)` pairs: the catalog races (SPEC §8) the harness
    /// must find, each matched by its interleaving.
    pub races: &'static [(Strategy, Race)],
}

use Invariant::*;
use Race::*;
use Strategy::{Legacy, Transactional};

macro_rules! builtin {
    ($file:literal, $expected:expr) => {
        builtin!($file, $expected, &[])
    };
    ($file:literal, $expected:expr, $races:expr) => {
        Builtin {
            file: $file,
            text: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/scenarios/", $file)),
            expected: $expected,
            races: $races,
        }
    };
}

pub const BUILTINS: &[Builtin] = &[
    builtin!("r1-same-id-create.json", &[(Legacy, NoInternalError)], &[(Legacy, R1)]),
    builtin!("r2-stale-cache.json", &[(Legacy, ResponsesSeeDefaults), (Legacy, FreshCache)], &[(Legacy, R2)]),
    builtin!("r3-crash-before-defaults.json", &[(Legacy, DefaultsPresent)], &[(Legacy, R3)]),
    builtin!("r4-idless-duplicates.json", &[(Legacy, UniqueCustomer)], &[(Legacy, R4)]),
    builtin!("r5-double-claim.json", &[(Legacy, ClaimCorrect)], &[(Legacy, R5)]),
    builtin!(
        "r6-two-stripe-customers.json",
        &[(Legacy, SingleStripeCustomer), (Transactional, SingleStripeCustomer)],
        &[(Legacy, R6), (Transactional, R6)]
    ),
    builtin!("r7-cache-without-stripe.json", &[(Transactional, FreshCache)], &[(Transactional, R7)]),
    builtin!("r8-lost-usage-overwrite.json", &[(Legacy, UsageConserved)], &[(Legacy, R8)]),
    builtin!(
        "r9-lost-usage-invalidation.json",
        &[(Legacy, UsageConserved), (Transactional, UsageConserved)],
        &[(Legacy, R9), (Transactional, R9)]
    ),
    builtin!(
        "w1-keyed-retry-after-lost-response.json",
        &[(Legacy, UsageConserved), (Transactional, UsageConserved)]
    ),
    builtin!(
        "w2-cache-evicted-before-sync.json",
        &[(Legacy, UsageConserved), (Transactional, UsageConserved)]
    ),
    builtin!("w3-skewed-instances.json", &[(Legacy, FreshCache), (Transactional, FreshCache)]),
    builtin!(
        "w4-stripe-window.json",
        &[(Legacy, SingleStripeCustomer), (Transactional, SingleStripeCustomer)]
    ),
    builtin!("clean-distinct-ids.json", &[]),
    builtin!("clean-same-id-two-orgs.json", &[]),
];

impl Builtin {
    /// Where the file lives in the source tree (for replay commands).
    pub fn path(&self) -> String {
        format!("fixtures/scenarios/{}", self.file)
    }

    pub fn name(&self) -> &'static str {
        self.file.trim_end_matches(".json")
    }

    pub fn scenario(&self) -> Result<Scenario, ScenarioError> {
        Scenario::parse(self.text, Path::new(&self.path()))
    }
}

/// A built-in scenario by name (`r1-same-id-create`) or file name.
pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name() == name || b.file == name)
}
