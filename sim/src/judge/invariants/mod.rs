//! The oracle: SPEC §6's invariants, checked on a finished run.
//!
//! It reads only what a black-box observer could: the responses, the
//! settle reads, and the committed state of the DB, the cache and Stripe.
//! Which defaults a customer is owed it works out for itself, from the
//! request (or seed) that inserted the customer and the catalog.

mod cache;
mod defaults;
mod identity;
mod requests;
mod stripe;

use std::fmt;

use cusim::flow::{Request, Response};
use cusim::model::{Catalog, Scope};
use serde::{Deserialize, Serialize};

use crate::input::scenario::Scenario;

use super::observation::{Creator, End, Observation};

pub use defaults::owed_defaults;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Invariant {
    UniqueCustomer,
    DefaultsPresent,
    NoInternalError,
    FreshCache,
    SingleStripeCustomer,
    UsageConserved,
    ClaimCorrect,
    ResponsesSeeDefaults,
    TenantIsolation,
    Terminates,
}

impl Invariant {
    pub const ALL: [Invariant; 10] = [
        Invariant::UniqueCustomer,
        Invariant::DefaultsPresent,
        Invariant::NoInternalError,
        Invariant::FreshCache,
        Invariant::SingleStripeCustomer,
        Invariant::UsageConserved,
        Invariant::ClaimCorrect,
        Invariant::ResponsesSeeDefaults,
        Invariant::TenantIsolation,
        Invariant::Terminates,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Invariant::UniqueCustomer => "unique_customer",
            Invariant::DefaultsPresent => "defaults_present",
            Invariant::NoInternalError => "no_internal_error",
            Invariant::FreshCache => "fresh_cache",
            Invariant::SingleStripeCustomer => "single_stripe_customer",
            Invariant::UsageConserved => "usage_conserved",
            Invariant::ClaimCorrect => "claim_correct",
            Invariant::ResponsesSeeDefaults => "responses_see_defaults",
            Invariant::TenantIsolation => "tenant_isolation",
            Invariant::Terminates => "terminates",
        }
    }

    pub fn parse(s: &str) -> Option<Invariant> {
        Invariant::ALL.into_iter().find(|i| i.as_str() == s)
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A broken invariant: which, who was involved, and the evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    pub invariant: Invariant,
    /// Scenario request indices involved (settle reads are not requests).
    pub requests: Vec<usize>,
    /// Settle reads involved, by their index in the run's settle reads.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settle_reads: Vec<usize>,
    pub message: String,
    pub evidence: serde_json::Value,
}

/// Which response a check is about: a request's, or a settle read's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Request(usize),
    Settle(usize),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Request(i) => write!(f, "request {i}"),
            Source::Settle(i) => write!(f, "settle read {i}"),
        }
    }
}

/// The requests and the settle reads among `sources`, each sorted.
fn involved(sources: &[Source]) -> (Vec<usize>, Vec<usize>) {
    let mut requests = Vec::new();
    let mut settles = Vec::new();
    for source in sources {
        match source {
            Source::Request(i) => requests.push(*i),
            Source::Settle(i) => settles.push(*i),
        }
    }
    for list in [&mut requests, &mut settles] {
        list.sort();
        list.dedup();
    }
    (requests, settles)
}

struct Checker<'a> {
    scenario: &'a Scenario,
    obs: &'a Observation,
    catalog: Catalog,
    violations: Vec<Violation>,
}

impl Checker<'_> {
    fn violate(
        &mut self,
        invariant: Invariant,
        sources: &[Source],
        message: String,
        evidence: serde_json::Value,
    ) {
        let (requests, settle_reads) = involved(sources);
        self.violations.push(Violation { invariant, requests, settle_reads, message, evidence });
    }

    /// Every successful response that shows a customer, with its source
    /// and the scope it was asked in.
    fn responses(&self) -> Vec<(Source, Scope, Option<&Request>, &Response)> {
        let requests = self.obs.outcomes.iter().enumerate().filter_map(|(i, outcome)| {
            let request = &self.scenario.requests[i].request;
            outcome.response().map(|r| (Source::Request(i), request.scope(), Some(request), r))
        });
        let settles = self.obs.settles.iter().enumerate().filter_map(|(i, s)| {
            s.result.as_ref().ok().map(|r| (Source::Settle(i), s.scope.clone(), None, r))
        });
        requests.chain(settles).collect()
    }

    /// The requests that inserted these customers.
    fn creators(&self, internal_ids: &[String]) -> Vec<Source> {
        internal_ids
            .iter()
            .filter_map(|id| match self.obs.created_by.get(id) {
                Some(Creator::Request(i)) => Some(Source::Request(*i)),
                _ => None,
            })
            .collect()
    }
}

/// Checks every invariant of SPEC §6 on what a run left behind.
pub fn check(scenario: &Scenario, obs: &Observation) -> Vec<Violation> {
    let mut checker = Checker { scenario, obs, catalog: scenario.catalog(), violations: Vec::new() };
    checker.terminates();
    if obs.end == End::Quiescent {
        checker.unique_customer();
        checker.defaults_present();
        checker.fresh_cache();
        checker.usage_conserved();
        checker.single_stripe_customer();
    }
    checker.no_internal_error();
    checker.claim_correct();
    checker.responses_see_defaults();
    checker.tenant_isolation();
    checker.violations
}
