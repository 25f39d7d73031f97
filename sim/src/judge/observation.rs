//! The observation of a finished run: what every driver hands the oracle.
//! How each request ended, the settle reads, who inserted each customer,
//! how the run ended, and the committed state of the DB, the cache and
//! Stripe. The stepper, the madsim driver, the loom models, the Postgres
//! rounds and the gated replay all build one of these, and
//! [`judge`](super::judge) judges it.

use std::collections::BTreeMap;

use cusim::backend::mem::{Deducted, IsolationBreach, RequestId, StripeCustomer, World};
use cusim::backend::{CacheKey, Point};
use cusim::flow::{client_retries_after, Response};
use cusim::model::{ApiError, CustomerRow, FullCustomer, Scope};
use serde::Serialize;

/// Everything the oracle looks at.
#[derive(Debug, Clone)]
pub struct Observation {
    /// How each of the scenario's requests ended, by index (its last
    /// attempt, if its client retried).
    pub outcomes: Vec<RequestOutcome>,
    /// Per request, how each attempt before the last ended, in order
    /// (empty for a request sent once).
    pub retried: Vec<Vec<RequestOutcome>>,
    /// Per request, per attempt (the earlier ones in order, then the
    /// last): whether a deduction of its usage took effect, in the cache
    /// or the DB, whatever its client heard, and when its keyed deduction
    /// ran at the DB. The model's drivers see it; `None` where nobody
    /// could (a run on Postgres), and then an attempt counts as its client
    /// would count it ([`RequestOutcome::may_have_applied`]), and every
    /// attempt sent with one key is one logical track.
    pub deducted: Option<Vec<Vec<Deducted>>>,
    /// The settle reads after quiescence (none if the run did not get there).
    pub settles: Vec<Settle>,
    /// Who inserted each committed customer, by internal id.
    pub created_by: BTreeMap<String, Creator>,
    pub end: End,
    pub state: State,
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOutcome {
    Responded(Box<Result<Response, ApiError>>),
    Crashed {
        at: Point,
    },
    /// Still parked when the run stopped (a step cap or a stall).
    Unfinished {
        at: Option<Point>,
    },
}

impl RequestOutcome {
    pub fn response(&self) -> Option<&Response> {
        match self {
            RequestOutcome::Responded(result) => result.as_ref().as_ref().ok(),
            _ => None,
        }
    }

    /// Whether an attempt that ended so, not acknowledged, may have taken
    /// effect, as its client can tell: unless it was refused (answered a
    /// 4xx).
    pub fn may_have_applied(&self) -> bool {
        match self {
            RequestOutcome::Responded(result) => match result.as_ref() {
                Ok(_) => true,
                Err(error) => error.http_status() >= 500,
            },
            RequestOutcome::Crashed { .. } | RequestOutcome::Unfinished { .. } => true,
        }
    }

    /// Whether a client with retries left sends the request again after
    /// an attempt that ended so (a crash is a broken connection).
    pub fn client_retries(&self) -> bool {
        match self {
            RequestOutcome::Responded(result) => client_retries_after(Some(result)),
            RequestOutcome::Crashed { .. } => client_retries_after(None),
            RequestOutcome::Unfinished { .. } => false,
        }
    }
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "end")]
pub enum End {
    /// Every request finished or crashed, and no transaction is open.
    Quiescent,
    /// The step cap was reached with requests still runnable (a livelock).
    StepCap { steps: usize },
    /// Nothing can move, yet requests wait: for a transaction nobody will end.
    Stalled { waiting: Vec<(usize, Option<usize>)> },
    /// Every request ended, but one left its transaction open.
    OpenTransaction { requests: Vec<usize> },
}

impl End {
    /// How a run on `world` that stopped moving ended, for requests that
    /// ended as `outcomes`; `holder` names who a waiting request waits for.
    pub fn of_world(
        world: &World,
        outcomes: &[RequestOutcome],
        holder: impl Fn(usize) -> Option<usize>,
    ) -> End {
        let waiting: Vec<(usize, Option<usize>)> = outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| matches!(o, RequestOutcome::Unfinished { .. }))
            .map(|(i, _)| (i, holder(i)))
            .collect();
        let open: Vec<usize> = (0..outcomes.len()).filter(|i| world.open_txn(*i).is_some()).collect();
        if !waiting.is_empty() {
            End::Stalled { waiting }
        } else if open.is_empty() && world.is_quiescent() {
            End::Quiescent
        } else {
            End::OpenTransaction { requests: open }
        }
    }
}

/// Who inserted a customer row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Creator {
    Seed(usize),
    Request(usize),
}

/// Who inserted each customer: the seed customers made before the run
/// (`seeded`: internal id → seed index), then `inserted` (internal id,
/// request) as a driver recorded them. Requests are numbered as drivers
/// number sessions: the scenario's `requests` first, then its seed
/// customers, then settle reads (which insert nothing a run is judged by).
pub fn creators(
    seeded: &BTreeMap<String, usize>,
    inserted: &[(String, RequestId)],
    requests: usize,
    seeds: usize,
) -> BTreeMap<String, Creator> {
    let mut created_by: BTreeMap<String, Creator> =
        seeded.iter().map(|(id, index)| (id.clone(), Creator::Seed(*index))).collect();
    for (id, session) in inserted {
        match *session {
            r if r < requests => {
                created_by.insert(id.clone(), Creator::Request(r));
            }
            r if r < requests + seeds => {
                created_by.insert(id.clone(), Creator::Seed(r - requests));
            }
            _ => {}
        }
    }
    created_by
}

/// A settle read: the strategy's read path, after quiescence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settle {
    pub scope: Scope,
    pub customer: SettleKey,
    pub result: Result<Response, ApiError>,
}

/// What a settle read asks for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SettleKey {
    /// A customer with an id: a read through the cache, no auto-create.
    Id(String),
    /// An id-less customer: the only way a client reaches one is an
    /// id-less create with its email, which returns the existing customer.
    Email(String),
}

impl std::fmt::Display for SettleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettleKey::Id(id) => f.write_str(id),
            SettleKey::Email(email) => write!(f, "email {email}"),
        }
    }
}

/// The committed state at the end of a run, in a canonical order: rows
/// by internal id, Stripe customers by id (a table has no order, and two
/// runs that differ only in the order of independent inserts committed
/// the same state).
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Full customers, by internal id.
    pub customers: Vec<FullCustomer>,
    pub cache: Vec<(CacheKey, FullCustomer)>,
    pub stripe: Vec<StripeCustomer>,
    pub breaches: Vec<IsolationBreach>,
}

impl State {
    /// What `world` committed.
    pub fn of_world(world: &World) -> State {
        State {
            customers: world.committed_fulls(),
            cache: world.cache_entries().map(|(k, v)| (k.clone(), v.clone())).collect(),
            stripe: world.stripe_customers().to_vec(),
            breaches: world.isolation_breaches().to_vec(),
        }
        .canonical()
    }

    /// The same state in the canonical order.
    pub fn canonical(mut self) -> State {
        self.customers.sort_by(|a, b| a.customer.internal_id.cmp(&b.customer.internal_id));
        self.stripe.sort_by(|a, b| a.id.cmp(&b.id));
        self.cache.sort_by(|a, b| a.0.cmp(&b.0));
        self
    }

    pub(super) fn rows(&self) -> Vec<&CustomerRow> {
        self.customers.iter().map(|c| &c.customer).collect()
    }

    pub(super) fn full(&self, internal_id: &str) -> Option<&FullCustomer> {
        self.customers.iter().find(|c| c.customer.internal_id == internal_id)
    }
}
