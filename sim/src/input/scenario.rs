//! Scenario files (SPEC §7): a catalog, customers that exist before the
//! run, the requests that race, and faults at named points.
//!
//! Parsing is strict: unknown fields are refused, and every error names the
//! file, the JSON path of the offending field and the reason.

use std::fmt;
use std::path::{Path, PathBuf};

use cusim::backend::mem::Fault;
use cusim::backend::{CacheKey, Op, Point};
use cusim::flow::Request;
use cusim::model::{Catalog, Env, Metadata, Product, Scope};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub force_paid_default: bool,
    #[serde(default)]
    pub products: Vec<Product>,
    /// Customers that exist before the run, each created through `safe`,
    /// one after another.
    #[serde(default)]
    pub customers: Vec<SeedCustomer>,
    /// At least one, except in a catalog file (`cusim serve --catalog`).
    #[serde(default)]
    pub requests: Vec<ScenarioRequest>,
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
    /// Faults at the settle reads (SPEC §6), which follow the requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settle_faults: Vec<SettleFaultSpec>,
    /// The app instances that serve the requests, each with its clock's
    /// skew; none named means one instance whose clock is right.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<Instance>,
}

/// One request of a scenario: what is sent, and how its client behaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioRequest {
    #[serde(flatten)]
    pub request: Request,
    /// After an error or a timeout, the client sends the same request
    /// again, up to this many times.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// The API's `Idempotency-Key` header, the same on every attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The app instance (an index into `instances`) that serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<usize>,
}

impl ScenarioRequest {
    /// Whether its client may send it again after `earlier` attempts
    /// before the one that just ended.
    pub fn has_retry_left(&self, earlier: usize) -> bool {
        earlier < self.retries as usize
    }

    /// The key `cache_evict` removes before `op` (see [`evicted_key`]).
    pub fn evicted_key(&self, op: &Op) -> Option<CacheKey> {
        evicted_key(&self.request, op)
    }
}

/// The key `cache_evict` removes before `op` of `request`: the one `op`
/// touches, else the cache key of the customer the request is about. One
/// rule for requests under a scheduler and for settle reads.
pub fn evicted_key(request: &Request, op: &Op) -> Option<CacheKey> {
    op.cache_key().cloned().or_else(|| request.cache_key())
}

impl From<Request> for ScenarioRequest {
    /// A request sent once, with no key, to the first instance.
    fn from(request: Request) -> ScenarioRequest {
        ScenarioRequest { request, retries: 0, idempotency_key: None, instance: None }
    }
}

impl std::ops::Deref for ScenarioRequest {
    type Target = Request;

    fn deref(&self) -> &Request {
        &self.request
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// An app instance: its clock reads `skew_ms` more than the true time
/// (less, if negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    #[serde(default)]
    pub skew_ms: i64,
}

/// The most retries a request may ask for.
pub const MAX_RETRIES: u32 = 10;
/// The largest clock skew an instance may have: an hour either way.
pub const MAX_SKEW_MS: i64 = 60 * 60 * 1_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCustomer {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub fingerprint: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub disable_default: bool,
    #[serde(default)]
    pub create_in_stripe: bool,
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub env: Option<Env>,
}

impl SeedCustomer {
    /// The create request that makes this customer.
    pub fn as_request(&self) -> Request {
        Request::Create {
            id: self.id.clone(),
            name: self.name.clone(),
            email: self.email.clone(),
            fingerprint: self.fingerprint.clone(),
            metadata: self.metadata.clone(),
            disable_default: self.disable_default,
            create_in_stripe: self.create_in_stripe,
            create_default_products: true,
            default_group: None,
            expand: Vec::new(),
            org: self.org.clone(),
            env: self.env,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The request dies at the point; its open transaction rolls back.
    Crash,
    DbError,
    /// `lost_response` at `stripe_create`: Stripe creates the customer,
    /// the caller hears a timeout.
    StripeTimeoutAfterSuccess,
    CacheDown,
    /// The operation takes effect; the caller hears a timeout.
    LostResponse,
    /// The request's cache key vanishes (evicted, or its TTL ran out)
    /// just before the operation.
    CacheEvict,
}

impl FaultKind {
    pub const ALL: [FaultKind; 6] = [
        FaultKind::Crash,
        FaultKind::DbError,
        FaultKind::StripeTimeoutAfterSuccess,
        FaultKind::CacheDown,
        FaultKind::LostResponse,
        FaultKind::CacheEvict,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::DbError => "db_error",
            FaultKind::StripeTimeoutAfterSuccess => "stripe_timeout_after_success",
            FaultKind::CacheDown => "cache_down",
            FaultKind::LostResponse => "lost_response",
            FaultKind::CacheEvict => "cache_evict",
        }
    }

    pub fn parse(s: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The model's fault, for the kinds the world injects (`crash` and
    /// `cache_evict` are the driver's).
    pub fn world_fault(self) -> Option<Fault> {
        match self {
            FaultKind::Crash | FaultKind::CacheEvict => None,
            FaultKind::DbError => Some(Fault::DbError),
            FaultKind::StripeTimeoutAfterSuccess | FaultKind::LostResponse => Some(Fault::LostResponse),
            FaultKind::CacheDown => Some(Fault::CacheDown),
        }
    }

    pub fn applies_to(self, point: Point) -> bool {
        match self {
            FaultKind::StripeTimeoutAfterSuccess => point == Point::StripeCreate,
            _ => self.world_fault().is_none_or(|f| f.applies_to(point)),
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fault at the `occurrence`-th time (from 1) request `request` reaches `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub request: usize,
    pub at: Point,
    pub kind: FaultKind,
    #[serde(default = "first", skip_serializing_if = "is_first")]
    pub occurrence: u32,
}

/// A fault at a settle read: the `settle`-th read (from 0, in the order
/// they run: by org, env, then id or email), at its `occurrence`-th visit
/// of `at`. Not in SPEC §7, which has no way to name a settle read. A
/// settle read cannot crash: it is what the invariants observe, and a crash
/// would leave nothing observed. A read the run does not make gets no
/// fault, as a point a request never reaches gets none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettleFaultSpec {
    pub settle: usize,
    pub at: Point,
    pub kind: FaultKind,
    #[serde(default = "first", skip_serializing_if = "is_first")]
    pub occurrence: u32,
}

fn first() -> u32 {
    1
}

fn is_first(n: &u32) -> bool {
    *n == 1
}

/// The checks every fault gets, at `list[i]` (of a `what`): its kind can
/// happen at its point, its occurrence counts from 1, and no earlier fault
/// of the list is at the same place (`twice`).
fn check_fault(
    (list, i, what): (&str, usize, &str),
    (kind, at, occurrence): (FaultKind, Point, u32),
    twice: bool,
) -> Result<(), (String, String)> {
    if !kind.applies_to(at) {
        return Err((format!("{list}[{i}].kind"), format!("{kind} cannot happen at {at}")));
    }
    if occurrence == 0 {
        return Err((format!("{list}[{i}].occurrence"), "counts from 1".into()));
    }
    if twice {
        return Err((
            format!("{list}[{i}]"),
            format!("a second fault at the same {what}, point and occurrence"),
        ));
    }
    Ok(())
}

/// The largest amount (included usage, tracked value, required balance)
/// a scenario may name: far below where sums could overflow.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// A scenario that could not be read: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}: {reason}", origin.display(), if json_path.is_empty() { "(file)" } else { json_path.as_str() })]
pub struct ScenarioError {
    pub origin: PathBuf,
    /// `requests[1].op`, or empty for the file as a whole.
    pub json_path: String,
    pub reason: String,
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            origin: path.to_owned(),
            json_path: String::new(),
            reason: format!("cannot read the file: {e}"),
        })?;
        Scenario::parse(&text, path)
    }

    /// The catalog of the scenario file at `path` (its `products` and
    /// `force_paid_default`), checked as a scenario is, except that it
    /// needs no requests: `cusim serve --catalog`.
    pub fn load_catalog(path: &Path) -> Result<Catalog, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            origin: path.to_owned(),
            json_path: String::new(),
            reason: format!("cannot read the file: {e}"),
        })?;
        Ok(Scenario::parse_as(&text, path, false)?.catalog())
    }

    /// Parses and checks a scenario; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Scenario, ScenarioError> {
        Scenario::parse_as(text, origin, true)
    }

    fn parse_as(text: &str, origin: &Path, needs_requests: bool) -> Result<Scenario, ScenarioError> {
        let error = |json_path: String, reason: String| ScenarioError {
            origin: origin.to_owned(),
            json_path,
            reason,
        };
        let first = text.trim_start().chars().next();
        if first.is_some_and(|c| c != '{') {
            return Err(error(
                String::new(),
                "a scenario is a JSON object (`{\"name\": …, \"requests\": […]}`)".into(),
            ));
        }
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let scenario: Scenario = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            error(if path == "." { String::new() } else { path }, inner.to_string())
        })?;
        deserializer.end().map_err(|e| error(String::new(), e.to_string()))?;
        scenario.check(needs_requests).map_err(|(path, reason)| error(path, reason))?;
        Ok(scenario)
    }

    /// The checks serde cannot make.
    fn check(&self, needs_requests: bool) -> Result<(), (String, String)> {
        if self.name.trim().is_empty() {
            return Err(("name".into(), "must not be empty".into()));
        }
        if needs_requests && self.requests.is_empty() {
            return Err(("requests".into(), "must hold at least one request".into()));
        }
        for (i, product) in self.products.iter().enumerate() {
            if self.products[..i].iter().any(|p| p.id == product.id) {
                return Err((format!("products[{i}].id"), format!("duplicate product id {:?}", product.id)));
            }
            if product.id.is_empty() || product.group.is_empty() {
                return Err((format!("products[{i}]"), "id and group must not be empty".into()));
            }
        }
        for (i, product) in self.products.iter().enumerate() {
            for (feature, included) in &product.features {
                if !(0..=MAX_AMOUNT).contains(included) {
                    return Err((
                        format!("products[{i}].features.{feature}"),
                        format!("must be from 0 to {MAX_AMOUNT}"),
                    ));
                }
            }
        }
        for (i, request) in self.requests.iter().enumerate() {
            let amount = match &request.request {
                Request::Track { value, .. } => Some(("value", *value)),
                Request::Check { required_balance, .. } => Some(("required_balance", *required_balance)),
                _ => None,
            };
            if let Some((field, amount)) = amount.filter(|(_, a)| !(-MAX_AMOUNT..=MAX_AMOUNT).contains(a)) {
                return Err((
                    format!("requests[{i}].{field}"),
                    format!("{amount} is out of range (±{MAX_AMOUNT})"),
                ));
            }
            if request.retries > MAX_RETRIES {
                return Err((format!("requests[{i}].retries"), format!("must be from 0 to {MAX_RETRIES}")));
            }
            if let Some(key) = &request.idempotency_key {
                if key.is_empty() || key.len() > 255 {
                    return Err((
                        format!("requests[{i}].idempotency_key"),
                        "must be from 1 to 255 bytes long".into(),
                    ));
                }
            }
            if let Some(instance) = request.instance {
                let count = self.instances.len().max(1);
                if instance >= count {
                    return Err((
                        format!("requests[{i}].instance"),
                        if self.instances.is_empty() {
                            "no `instances` are named, so the only instance is 0".into()
                        } else {
                            format!("no instance {instance} (the scenario names {count})")
                        },
                    ));
                }
            }
        }
        for (i, instance) in self.instances.iter().enumerate() {
            if !(-MAX_SKEW_MS..=MAX_SKEW_MS).contains(&instance.skew_ms) {
                return Err((
                    format!("instances[{i}].skew_ms"),
                    format!("must be within ±{MAX_SKEW_MS} (an hour)"),
                ));
            }
        }
        for (i, customer) in self.customers.iter().enumerate() {
            if customer.id.is_none() && customer.email.as_deref().is_none_or(str::is_empty) {
                return Err((format!("customers[{i}]"), "an id-less customer needs an email".into()));
            }
            // Seeds are made through `safe`; under a schema without its
            // indexes two of them could be duplicates nobody raced for.
            let key = |c: &SeedCustomer| {
                let request = c.as_request();
                (
                    request.scope(),
                    c.id.clone(),
                    c.id.is_none().then(|| c.email.clone().unwrap_or_default().to_lowercase()),
                )
            };
            if self.customers[..i].iter().any(|earlier| key(earlier) == key(customer)) {
                return Err((format!("customers[{i}]"), "the same customer as an earlier seed".into()));
            }
        }
        for (i, fault) in self.faults.iter().enumerate() {
            if fault.request >= self.requests.len() {
                return Err((
                    format!("faults[{i}].request"),
                    format!("no request {} (the scenario has {})", fault.request, self.requests.len()),
                ));
            }
            let place = |f: &FaultSpec| (f.request, f.at, f.occurrence);
            let twice = self.faults[..i].iter().any(|f| place(f) == place(fault));
            check_fault(("faults", i, "request"), (fault.kind, fault.at, fault.occurrence), twice)?;
        }
        for (i, fault) in self.settle_faults.iter().enumerate() {
            if fault.kind == FaultKind::Crash {
                return Err((
                    format!("settle_faults[{i}].kind"),
                    "a settle read cannot crash: it is what the invariants observe".into(),
                ));
            }
            let place = |f: &SettleFaultSpec| (f.settle, f.at, f.occurrence);
            let twice = self.settle_faults[..i].iter().any(|f| place(f) == place(fault));
            check_fault(
                ("settle_faults", i, "settle read"),
                (fault.kind, fault.at, fault.occurrence),
                twice,
            )?;
        }
        Ok(())
    }

    /// Whether the scenario places any fault (at a request or a settle read).
    pub fn has_faults(&self) -> bool {
        !self.faults.is_empty() || !self.settle_faults.is_empty()
    }

    /// The fault scheduled for settle read `n` at its `occurrence`-th visit of `point`.
    pub fn settle_fault_at(&self, n: usize, point: Point, occurrence: u32) -> Option<FaultKind> {
        self.settle_faults
            .iter()
            .find(|f| f.settle == n && f.at == point && f.occurrence == occurrence)
            .map(|f| f.kind)
    }

    pub fn catalog(&self) -> Catalog {
        Catalog::new(self.products.clone(), self.force_paid_default)
    }

    /// The fault scheduled for `request` at its `occurrence`-th visit of `point`.
    pub fn fault_at(&self, request: usize, point: Point, occurrence: u32) -> Option<FaultKind> {
        self.faults
            .iter()
            .find(|f| f.request == request && f.at == point && f.occurrence == occurrence)
            .map(|f| f.kind)
    }

    /// How far the clock of the instance serving request `request` is off.
    pub fn skew_ms(&self, request: usize) -> i64 {
        let instance = self.requests.get(request).and_then(|r| r.instance).unwrap_or(0);
        self.instances.get(instance).map_or(0, |i| i.skew_ms)
    }

    /// Every `(scope, id)` the scenario names: what the settle reads visit.
    pub fn named_customers(&self) -> Vec<(Scope, String)> {
        let mut named: Vec<(Scope, String)> = self
            .customers
            .iter()
            .map(SeedCustomer::as_request)
            .chain(self.requests.iter().map(|r| r.request.clone()))
            .filter_map(|r| r.customer_id().map(|id| (r.scope(), id.to_owned())))
            .collect();
        named.sort();
        named.dedup();
        named
    }
}
