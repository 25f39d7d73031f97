//! Availability, counted per run: which requests did not succeed, and
//! which of those met a fault in a service they did not need.

use std::collections::BTreeSet;

use cusim::backend::{Op, Outcome};
use cusim::flow::Request;
use serde::Serialize;

use super::Prepared;
use crate::judge::RequestOutcome;

/// A service a request's operations go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Service {
    Db,
    Cache,
    Stripe,
}

impl Service {
    /// The service `op` goes to (the one whose timeout its caller hears).
    pub fn of(op: &Op) -> Service {
        match op.timeout() {
            Outcome::StripeError { .. } => Service::Stripe,
            Outcome::CacheError { .. } => Service::Cache,
            _ => Service::Db,
        }
    }
}

/// Availability: requests that did not succeed, and of those, the ones
/// that met a fault in a service they did not need (the cache, which only
/// speeds things up; Stripe, for a request that asks nothing of it). Not
/// an invariant: a cost of a design, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Availability {
    pub requests: u64,
    pub failed: u64,
    pub failed_by_unneeded_service: u64,
}

impl Availability {
    pub fn add(&mut self, other: Availability) {
        self.requests += other.requests;
        self.failed += other.failed;
        self.failed_by_unneeded_service += other.failed_by_unneeded_service;
    }

    /// The availability of a run of `prepared` whose requests ended with
    /// `outcomes`, request `i` having met faults in `faulted(i)`.
    pub(super) fn of<'a>(
        prepared: &Prepared,
        outcomes: &[RequestOutcome],
        faulted: impl Fn(usize) -> &'a BTreeSet<Service>,
    ) -> Availability {
        let mut availability = Availability { requests: outcomes.len() as u64, ..Availability::default() };
        for (i, outcome) in outcomes.iter().enumerate() {
            if outcome.response().is_some() {
                continue;
            }
            availability.failed += 1;
            let needs_stripe = needs_stripe(prepared, i);
            let unneeded = |s: &Service| *s == Service::Cache || (*s == Service::Stripe && !needs_stripe);
            if faulted(i).iter().any(unneeded) {
                availability.failed_by_unneeded_service += 1;
            }
        }
        availability
    }
}

/// Whether request `i` may need Stripe: it asks for a Stripe customer, or
/// a default it could be owed needs one.
fn needs_stripe(prepared: &Prepared, i: usize) -> bool {
    let asks =
        matches!(&prepared.scenario.requests[i].request, Request::Create { create_in_stripe: true, .. });
    asks || prepared.scenario.catalog().default_candidates().any(|p| p.kind.needs_stripe())
}
