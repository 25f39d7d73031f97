//! The oracle: SPEC §6's invariants, checked on a finished run.
//!
//! It reads only what a black-box observer could: the responses, the
//! settle reads, and the committed state of the DB, the cache and Stripe.
//! Which defaults a customer is owed it works out for itself, from the
//! request (or seed) that inserted the customer and the catalog.

use std::collections::BTreeMap;
use std::fmt;

use cusim::flow::{Request, Response};
use cusim::model::{Catalog, CustomerData, ErrorCode, FullCustomer, ProductKind, Scope};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::stepper::{Creator, End, Execution, Prepared, RequestOutcome};

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

/// The defaults a customer is owed, as `(group, product)` pairs in group
/// order: per group the best default by trial > paid > free, then by
/// product id (SPEC §3), restated here independently of the flows.
pub fn owed_defaults(
    catalog: &Catalog,
    disable_default: bool,
    only_group: Option<&str>,
) -> Vec<(String, String)> {
    if disable_default {
        return Vec::new();
    }
    let rank = |kind: ProductKind| match kind {
        ProductKind::Trial => 0,
        ProductKind::Paid => 1,
        ProductKind::Free => 2,
    };
    let mut best: BTreeMap<&str, (u8, &str)> = BTreeMap::new();
    for product in &catalog.products {
        let counts = product.is_default && (product.kind != ProductKind::Paid || catalog.force_paid_default);
        if !counts || only_group.is_some_and(|g| g != product.group) {
            continue;
        }
        let candidate = (rank(product.kind), product.id.as_str());
        let slot = best.entry(product.group.as_str()).or_insert(candidate);
        if candidate < *slot {
            *slot = candidate;
        }
    }
    best.into_iter().map(|(group, (_, id))| (group.to_owned(), id.to_owned())).collect()
}

fn products_of(full: &FullCustomer) -> Vec<(String, String)> {
    let mut products: Vec<(String, String)> =
        full.products.iter().map(|p| (p.group.clone(), p.product_id.clone())).collect();
    products.sort();
    products
}

struct Checker<'a> {
    obs: &'a Observation<'a>,
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
            let request = &self.obs.scenario.requests[i];
            outcome.response().map(|r| (Source::Request(i), request.scope(), Some(request), r))
        });
        let settles = self.obs.settles.iter().enumerate().filter_map(|(i, s)| {
            s.result.as_ref().ok().map(|r| (Source::Settle(i), s.scope.clone(), None, r))
        });
        requests.chain(settles).collect()
    }

    /// The defaults owed to the customer `internal_id`, from whoever inserted it.
    fn owed(&self, internal_id: &str) -> Option<Vec<(String, String)>> {
        let (data, options_group, create_defaults) = match self.obs.created_by.get(internal_id)? {
            Creator::Seed(i) => {
                let seed = &self.obs.scenario.customers[*i];
                (
                    CustomerData { disable_default: seed.disable_default, ..CustomerData::default() },
                    None,
                    true,
                )
            }
            Creator::Request(i) => match &self.obs.scenario.requests[*i] {
                request @ Request::Create { .. } => {
                    let (data, options) = request.create_data().expect("a create carries data");
                    (data, options.default_group, options.create_default_products)
                }
                Request::Check { customer_data, .. } | Request::Track { customer_data, .. } => {
                    (customer_data.clone().unwrap_or_default(), None, true)
                }
                Request::Get { .. } => return None,
            },
        };
        Some(owed_defaults(&self.catalog, data.disable_default || !create_defaults, options_group.as_deref()))
    }

    fn terminates(&mut self) {
        let (message, sources) = match &self.obs.end {
            End::Quiescent => return,
            End::StepCap { steps } => {
                (format!("the run had not ended after {steps} steps (livelock)"), vec![])
            }
            End::Stalled { waiting } => (
                format!("requests wait for transactions nobody will end: {waiting:?} (request, holder)"),
                waiting.iter().map(|(r, _)| Source::Request(*r)).collect(),
            ),
            End::OpenTransaction { requests } => (
                format!("requests {requests:?} ended with their transactions open"),
                requests.iter().map(|r| Source::Request(*r)).collect(),
            ),
        };
        let unfinished: Vec<String> = self
            .obs
            .outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| matches!(o, RequestOutcome::Unfinished { .. }))
            .map(|(i, o)| format!("request {i}: {o:?}"))
            .collect();
        self.violate(
            Invariant::Terminates,
            &sources,
            message,
            json!({ "end": self.obs.end, "unfinished": unfinished }),
        );
    }

    fn unique_customer(&mut self) {
        let rows = self.obs.state.rows();
        let mut by_id: BTreeMap<(Scope, String), Vec<String>> = BTreeMap::new();
        let mut by_email: BTreeMap<(Scope, String), Vec<String>> = BTreeMap::new();
        for row in &rows {
            if let Some(id) = &row.id {
                by_id.entry((row.scope(), id.clone())).or_default().push(row.internal_id.clone());
            } else if let Some(email) = row.email.as_ref().filter(|e| !e.is_empty()) {
                by_email
                    .entry((row.scope(), email.to_lowercase()))
                    .or_default()
                    .push(row.internal_id.clone());
            }
        }
        for ((scope, id), internal_ids) in by_id.into_iter().filter(|(_, v)| v.len() > 1) {
            let creators = self.creators(&internal_ids);
            self.violate(
                Invariant::UniqueCustomer,
                &creators,
                format!("{} rows with id {id} in {scope}", internal_ids.len()),
                json!({ "id": id, "internal_ids": internal_ids }),
            );
        }
        for ((scope, email), internal_ids) in by_email.into_iter().filter(|(_, v)| v.len() > 1) {
            let creators = self.creators(&internal_ids);
            self.violate(
                Invariant::UniqueCustomer,
                &creators,
                format!("{} id-less rows with email {email} in {scope}", internal_ids.len()),
                json!({ "email": email, "internal_ids": internal_ids }),
            );
        }
        let mut answers: BTreeMap<(Scope, String), Vec<(Source, String)>> = BTreeMap::new();
        for (source, scope, request, response) in self.responses() {
            let asked = match request {
                Some(request) => request.customer_id().map(str::to_owned),
                None => match source {
                    Source::Settle(i) => match &self.obs.settles[i].customer {
                        crate::stepper::SettleKey::Id(id) => Some(id.clone()),
                        crate::stepper::SettleKey::Email(_) => None,
                    },
                    Source::Request(_) => None,
                },
            };
            if let Some(id) = asked {
                answers
                    .entry((scope, id))
                    .or_default()
                    .push((source, response.customer().customer.internal_id.clone()));
            }
        }
        for ((scope, id), seen) in answers {
            let mut distinct: Vec<&String> = seen.iter().map(|(_, internal)| internal).collect();
            distinct.sort();
            distinct.dedup();
            if distinct.len() > 1 {
                let sources: Vec<Source> = seen.iter().map(|(s, _)| *s).collect();
                let who: Vec<String> =
                    seen.iter().map(|(s, internal)| format!("{s} got {internal}")).collect();
                self.violate(
                    Invariant::UniqueCustomer,
                    &sources,
                    format!("responses for id {id} in {scope} name {} different customers", distinct.len()),
                    json!({ "id": id, "responses": who }),
                );
            }
        }
    }

    fn creators(&self, internal_ids: &[String]) -> Vec<Source> {
        internal_ids
            .iter()
            .filter_map(|id| match self.obs.created_by.get(id) {
                Some(Creator::Request(i)) => Some(Source::Request(*i)),
                _ => None,
            })
            .collect()
    }

    fn defaults_present(&mut self) {
        for row in self.obs.state.rows() {
            let Some(owed) = self.owed(&row.internal_id) else { continue };
            let full = self.obs.state.full(&row.internal_id).expect("a committed row reads back");
            let has = products_of(full);
            if has != owed {
                let creators = self.creators(std::slice::from_ref(&row.internal_id));
                self.violate(
                    Invariant::DefaultsPresent,
                    &creators,
                    format!(
                        "customer {} (id {}) has products {has:?}, owes {owed:?}",
                        row.internal_id,
                        row.id.as_deref().unwrap_or("null")
                    ),
                    json!({ "customer": full, "owed": owed }),
                );
            }
        }
    }

    fn responses_see_defaults(&mut self) {
        let mut found = Vec::new();
        for (source, _, _, response) in self.responses() {
            let customer = response.customer();
            let Some(owed) = self.owed(&customer.customer.internal_id) else { continue };
            let shown = products_of(customer);
            if shown != owed {
                found.push((source, customer.customer.internal_id.clone(), shown, owed, customer.clone()));
            }
        }
        for (source, internal_id, shown, owed, customer) in found {
            self.violate(
                Invariant::ResponsesSeeDefaults,
                &[source],
                format!("{source} showed customer {internal_id} with products {shown:?}; it owes {owed:?}"),
                json!({ "response_customer": customer }),
            );
        }
    }

    fn no_internal_error(&mut self) {
        let mut found = Vec::new();
        for (i, outcome) in self.obs.outcomes.iter().enumerate() {
            if let RequestOutcome::Responded(result) = outcome {
                let Err(error) = result.as_ref() else { continue };
                if error.code == ErrorCode::InternalError {
                    found.push((Source::Request(i), error.clone()));
                }
            }
        }
        for (i, settle) in self.obs.settles.iter().enumerate() {
            if let Err(error) = &settle.result {
                if error.code == ErrorCode::InternalError {
                    found.push((Source::Settle(i), error.clone()));
                }
            }
        }
        for (source, error) in found {
            self.violate(
                Invariant::NoInternalError,
                &[source],
                format!("{source} failed with internal_error: {}", error.message),
                json!({ "error": error }),
            );
        }
    }

    fn fresh_cache(&mut self) {
        let mut found = Vec::new();
        for (key, cached) in self.obs.state.cache.iter().map(|(k, v)| (k, v)) {
            let db = self.obs.state.full(&cached.customer.internal_id);
            let names_row = db.as_ref().is_some_and(|db| {
                db.customer.id.as_deref() == Some(key.id.as_str()) && db.customer.scope() == key.scope
            });
            if db != Some(cached) || !names_row {
                found.push((key.to_string(), cached.clone(), db));
            }
        }
        for (key, cached, db) in found {
            // Who showed the stale snapshot (most likely who cached it);
            // failing that, who created the customer.
            let showed: Vec<Source> = self
                .responses()
                .into_iter()
                .filter(|(_, _, _, response)| response.customer() == &cached)
                .map(|(source, ..)| source)
                .collect();
            let creators = if showed.iter().any(|s| matches!(s, Source::Request(_))) {
                showed
            } else {
                self.creators(std::slice::from_ref(&cached.customer.internal_id))
            };
            let message = match &db {
                None => format!(
                    "cache {key} holds customer {} that the DB does not have",
                    cached.customer.internal_id
                ),
                Some(_) => {
                    format!("cache {key} differs from the DB's view of {}", cached.customer.internal_id)
                }
            };
            self.violate(Invariant::FreshCache, &creators, message, json!({ "cached": cached, "db": db }));
        }
    }

    fn single_stripe_customer(&mut self) {
        let rows = self.obs.state.rows();
        let mut by_customer: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for stripe in self.obs.state.stripe.iter() {
            by_customer.entry(stripe.params.internal_id.as_str()).or_default().push(stripe.id.as_str());
        }
        let mut found = Vec::new();
        for (internal_id, stripe_ids) in &by_customer {
            let row = rows.iter().find(|r| r.internal_id == *internal_id);
            let processor = row.and_then(|r| r.processor.as_deref());
            let message = if row.is_none() {
                Some(format!(
                    "Stripe customers {stripe_ids:?} belong to customer {internal_id}, which does not exist"
                ))
            } else if stripe_ids.len() > 1 {
                Some(format!(
                    "customer {internal_id} has {} Stripe customers {stripe_ids:?}; processor names {}",
                    stripe_ids.len(),
                    processor.unwrap_or("none")
                ))
            } else if processor != Some(stripe_ids[0]) {
                Some(format!(
                    "customer {internal_id}'s Stripe customer is {}, but processor names {}",
                    stripe_ids[0],
                    processor.unwrap_or("none")
                ))
            } else {
                None
            };
            if let Some(message) = message {
                found.push((
                    internal_id.to_string(),
                    message,
                    stripe_ids.clone(),
                    processor.map(str::to_owned),
                ));
            }
        }
        for row in &rows {
            if let Some(processor) = &row.processor {
                if !by_customer
                    .get(row.internal_id.as_str())
                    .is_some_and(|ids| ids.contains(&processor.as_str()))
                {
                    found.push((
                        row.internal_id.clone(),
                        format!(
                            "customer {} names processor {processor}, not one of its Stripe customers",
                            row.internal_id
                        ),
                        by_customer.get(row.internal_id.as_str()).cloned().unwrap_or_default(),
                        Some(processor.clone()),
                    ));
                }
            }
        }
        for (internal_id, message, stripe_ids, processor) in found {
            let creators = self.creators(std::slice::from_ref(&internal_id));
            let mut sources = creators;
            for (i, request) in self.obs.scenario.requests.iter().enumerate() {
                let touched = self.obs.outcomes[i]
                    .response()
                    .is_some_and(|r| r.customer().customer.internal_id == internal_id);
                if touched && !matches!(request, Request::Get { .. }) {
                    sources.push(Source::Request(i));
                }
            }
            self.violate(
                Invariant::SingleStripeCustomer,
                &sources,
                message,
                json!({ "customer": internal_id, "stripe_customers": stripe_ids, "processor": processor }),
            );
        }
    }

    fn usage_conserved(&mut self) {
        let mut accepted: BTreeMap<(String, String), (i64, Vec<Source>)> = BTreeMap::new();
        for (i, outcome) in self.obs.outcomes.iter().enumerate() {
            if let Some(Response::Track(track)) = outcome.response() {
                let key = (track.customer.customer.internal_id.clone(), track.feature_id.clone());
                let entry = accepted.entry(key).or_default();
                entry.0 += track.value;
                entry.1.push(Source::Request(i));
            }
        }
        let mut recorded: BTreeMap<(String, String), i64> = BTreeMap::new();
        for row in self.obs.state.rows() {
            let full = self.obs.state.full(&row.internal_id).expect("reads back");
            for (feature, balance) in &full.balances {
                if balance.usage != 0 {
                    recorded.insert((row.internal_id.clone(), feature.clone()), balance.usage);
                }
            }
        }
        let mut keys: Vec<(String, String)> = accepted.keys().chain(recorded.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        let mut found = Vec::new();
        for key in keys {
            let (sum, sources) = accepted.get(&key).cloned().unwrap_or_default();
            let in_db = recorded.get(&key).copied().unwrap_or(0);
            if sum != in_db {
                found.push((
                    sources.clone(),
                    format!("customer {} {}: tracks accepted {sum}, the DB has {in_db}", key.0, key.1),
                    json!({ "customer": key.0, "feature": key.1, "accepted": sum, "in_db": in_db }),
                ));
            }
            for (cache_key, cached) in self.obs.state.cache.iter().map(|(k, v)| (k, v)) {
                if cached.customer.internal_id == key.0 {
                    let in_cache = cached.balances.get(&key.1).map_or(0, |b| b.usage);
                    if in_cache != sum {
                        found.push((
                            sources.clone(),
                            format!(
                                "customer {} {}: tracks accepted {sum}, cache {cache_key} has {in_cache}",
                                key.0, key.1
                            ),
                            json!({
                                "customer": key.0,
                                "feature": key.1,
                                "accepted": sum,
                                "cache_key": cache_key.to_string(),
                                "in_cache": in_cache,
                            }),
                        ));
                    }
                }
            }
        }
        for (sources, message, evidence) in found {
            self.violate(Invariant::UsageConserved, &sources, message, evidence);
        }
    }

    fn claim_correct(&mut self) {
        let rows = self.obs.state.rows();
        let mut found = Vec::new();
        for (i, outcome) in self.obs.outcomes.iter().enumerate() {
            let request = &self.obs.scenario.requests[i];
            let (Request::Create { id: Some(asked), .. }, Some(response)) = (request, outcome.response())
            else {
                continue;
            };
            let customer = &response.customer().customer;
            let now = rows.iter().find(|r| r.internal_id == customer.internal_id);
            let evidence = json!({ "asked": asked.as_str(), "returned": customer, "now": now });
            if customer.id.as_deref() != Some(asked.as_str()) {
                found.push((
                    i,
                    None,
                    format!(
                        "create {{id: {asked}}} returned customer {} with id {}",
                        customer.internal_id,
                        customer.id.as_deref().unwrap_or("null")
                    ),
                    evidence,
                ));
                continue;
            }
            if now.and_then(|r| r.id.as_deref()) != Some(asked.as_str()) {
                // Whoever asked for the id the row has now took it over.
                let taker = now.and_then(|r| r.id.as_deref()).and_then(|id| {
                    self.obs.scenario.requests.iter().position(
                        |r| matches!(r, Request::Create { id: Some(other), .. } if other.as_str() == id),
                    )
                });
                found.push((
                    i,
                    taker,
                    format!(
                        "create {{id: {asked}}} returned customer {}, whose id is now {}",
                        customer.internal_id,
                        now.map_or("gone".to_owned(), |r| r.id.clone().unwrap_or_else(|| "null".into()))
                    ),
                    evidence,
                ));
            }
        }
        for (i, taker, message, evidence) in found {
            let sources: Vec<Source> = std::iter::once(i).chain(taker).map(Source::Request).collect();
            self.violate(Invariant::ClaimCorrect, &sources, message, evidence);
        }
    }

    fn tenant_isolation(&mut self) {
        let breaches = self.obs.state.breaches.clone();
        for breach in breaches {
            let sources = if breach.request < self.obs.scenario.requests.len() {
                vec![Source::Request(breach.request)]
            } else {
                vec![]
            };
            self.violate(
                Invariant::TenantIsolation,
                &sources,
                format!(
                    "request {} in {} touched a row of {} at {}",
                    breach.request, breach.request_scope, breach.touched_scope, breach.point
                ),
                json!({ "breach": breach }),
            );
        }
        let mut found = Vec::new();
        for (source, scope, _, response) in self.responses() {
            let shown = response.customer().customer.scope();
            if shown != scope {
                let evidence =
                    json!({ "asked_in": scope.to_string(), "shown": response.customer().customer });
                found.push((
                    source,
                    format!("{source} in {scope} was shown a customer of {shown}"),
                    evidence,
                ));
            }
        }
        for (source, message, evidence) in found {
            self.violate(Invariant::TenantIsolation, &[source], message, evidence);
        }
    }
}

/// Everything the oracle looks at: the scenario, how each request ended,
/// the settle reads, who inserted each customer, how the run ended, and
/// the committed state of the DB, the cache and Stripe.
pub struct Observation<'a> {
    pub scenario: &'a crate::scenario::Scenario,
    pub outcomes: &'a [RequestOutcome],
    pub settles: &'a [crate::stepper::Settle],
    pub created_by: &'a BTreeMap<String, Creator>,
    pub end: &'a End,
    pub state: State,
}

/// The committed state at the end of a run.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Full customers, in insertion order.
    pub customers: Vec<FullCustomer>,
    pub cache: Vec<(cusim::backend::CacheKey, FullCustomer)>,
    pub stripe: Vec<cusim::backend::mem::StripeCustomer>,
    pub breaches: Vec<cusim::backend::mem::IsolationBreach>,
}

impl State {
    pub fn of_world(world: &cusim::backend::mem::World) -> State {
        State {
            customers: world
                .committed_customers()
                .iter()
                .map(|row| world.committed_full(&row.internal_id).expect("a committed row reads back"))
                .collect(),
            cache: world.cache_entries().map(|(k, v)| (k.clone(), v.clone())).collect(),
            stripe: world.stripe_customers().to_vec(),
            breaches: world.isolation_breaches().to_vec(),
        }
    }

    fn rows(&self) -> Vec<&cusim::model::CustomerRow> {
        self.customers.iter().map(|c| &c.customer).collect()
    }

    fn full(&self, internal_id: &str) -> Option<&FullCustomer> {
        self.customers.iter().find(|c| c.customer.internal_id == internal_id)
    }
}

/// Checks every invariant of SPEC §6 on a finished run.
pub fn check(prepared: &Prepared, run: &Execution) -> Vec<Violation> {
    check_observation(&Observation {
        scenario: &prepared.scenario,
        outcomes: &run.outcomes,
        settles: &run.settles,
        created_by: &run.created_by,
        end: &run.end,
        state: State::of_world(&run.world),
    })
}

/// Checks every invariant of SPEC §6 on what a run left behind.
pub fn check_observation(obs: &Observation<'_>) -> Vec<Violation> {
    let mut checker = Checker { obs, catalog: obs.scenario.catalog(), violations: Vec::new() };
    checker.terminates();
    if *obs.end == End::Quiescent {
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
