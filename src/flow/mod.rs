//! The flows: create, check and track, and the read path, for each
//! [`Strategy`]. Every flow is a plain `async fn` over a [`Backend`]: it
//! touches shared state only through it, so any driver can run it.
//!
//! Each strategy is one [`Design`], in a module of its own that reads top
//! to bottom beside SPEC §3–§4: [`legacy`], [`transactional`], [`safe`].
//! What designs truly share lives in helper modules that import no design:
//! [`shared`] (all three) and [`modelled`] (the modelled server's pieces,
//! which `legacy` and `transactional` share). `safe` imports neither of the
//! other designs, so an edit to a specimen never changes the design that
//! is claimed to be proven. [`with_design!`] is the one place a `Strategy`
//! meets its design.
//!
//! Entry points validate their input first ([`api`]); auto-creation from
//! check and track goes through the same `create` as the create endpoint.

pub mod api;
pub mod legacy;
mod modelled;
pub mod request;
pub mod safe;
mod shared;
pub mod transactional;

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Constraints};
use crate::model::{ApiError, CustomerData, CustomerId, FullCustomer, Scope};

pub use api::{ApiCustomer, CheckResponse, Expand, TrackResponse};
pub use request::{client_retries_after, execute, execute_keyed, execute_keyed_in, Request, Response};

/// An implementation of the create path under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The modelled server before its fixes: every race window of SPEC §8 open.
    Legacy,
    /// The modelled server after its fix: one transaction for phase 1.
    Transactional,
    /// This project's design: every invariant held in every space the tests
    /// explored (each space, its bound and its size are in the claims
    /// ledger: every schedule of each built-in, every single fault placed,
    /// up to one clock move, with the exceptions the ledger names).
    Safe,
}

/// Runs `$body` with `$design` standing for the [`Design`] of `$strategy`:
/// the one place a [`Strategy`] is mapped to its implementation.
#[macro_export]
macro_rules! with_design {
    ($strategy:expr, $design:ident => $body:expr) => {
        match $strategy {
            $crate::flow::Strategy::Legacy => {
                type $design = $crate::flow::legacy::Legacy;
                $body
            }
            $crate::flow::Strategy::Transactional => {
                type $design = $crate::flow::transactional::Transactional;
                $body
            }
            $crate::flow::Strategy::Safe => {
                type $design = $crate::flow::safe::Safe;
                $body
            }
        }
    };
}

impl Strategy {
    pub const ALL: [Strategy; 3] = [Strategy::Legacy, Strategy::Transactional, Strategy::Safe];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Legacy => "legacy",
            Strategy::Transactional => "transactional",
            Strategy::Safe => "safe",
        }
    }

    pub fn parse(s: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The unique indexes this strategy's schema has (SPEC §1).
    pub fn constraints(self) -> Constraints {
        with_design!(self, D => D::CONSTRAINTS)
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One implementation of the operations of SPEC §3: what differs between
/// strategies. Check and track ([`api`]) are the same for every design,
/// built from these.
#[allow(async_fn_in_trait)]
pub trait Design {
    /// The unique indexes the design's schema has.
    const CONSTRAINTS: Constraints;

    /// Creates a customer, or returns the one that exists (SPEC §3): the
    /// create endpoint and auto-creation alike. `customer_id` is validated.
    async fn create<B: Backend>(
        ctx: &Ctx<'_, B>,
        customer_id: Option<&CustomerId>,
        data: &CustomerData,
        options: &CreateOptions,
    ) -> Result<FullCustomer, ApiError>;

    /// The customer a request is about, through the cache: from the cache,
    /// else the DB; created with `data` when given (check and track's
    /// get-or-create), else `None` (the plain read, and the settle read).
    async fn get_or_create<B: Backend>(
        ctx: &Ctx<'_, B>,
        customer_id: &CustomerId,
        data: Option<&CustomerData>,
    ) -> Result<Option<FullCustomer>, ApiError>;

    /// Records `value` of usage of `feature_id` for `customer`.
    async fn record_usage<B: Backend>(
        ctx: &Ctx<'_, B>,
        customer_id: &CustomerId,
        customer: &FullCustomer,
        feature_id: &str,
        value: i64,
    ) -> Result<(), ApiError>;
}

/// One request's context: its connection and its tenant.
pub struct Ctx<'a, B> {
    pub db: &'a B,
    pub scope: Scope,
    /// The request's `Idempotency-Key`, if it carries one.
    pub idempotency_key: Option<String>,
}

impl<'a, B: Backend> Ctx<'a, B> {
    pub fn new(db: &'a B, scope: Scope) -> Ctx<'a, B> {
        Ctx { db, scope, idempotency_key: None }
    }
}

/// The plan's create options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateOptions {
    pub create_default_products: bool,
    /// Limit default attachment to this group.
    pub default_group: Option<String>,
}

impl Default for CreateOptions {
    fn default() -> CreateOptions {
        CreateOptions { create_default_products: true, default_group: None }
    }
}
