//! The flows: create, check and track, and the read path, for each
//! [`Strategy`]. Every flow is a plain `async fn` over a [`Backend`]: it
//! touches shared state only through it, so any driver can run it.
//!
//! Entry points validate their input first ([`api`]); auto-creation from
//! check and track goes through the same [`create`] as the create endpoint.

pub mod api;
mod common;
mod legacy;
pub mod request;
mod safe;
mod transactional;

use serde::{Deserialize, Serialize};

use crate::backend::mem::Constraints;
use crate::backend::Backend;
use crate::model::{ApiError, CustomerData, CustomerId, FullCustomer, Scope};

pub use api::{
    check, create_customer, get_customer, track, ApiCustomer, CheckResponse, Expand, TrackResponse,
};
pub use request::{execute, Request, Response};

/// An implementation of the create path under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The modelled server before its fixes: every race window of SPEC §8 open.
    Legacy,
    /// The modelled server after its fix: one transaction for phase 1.
    Transactional,
    /// This project's design: free of every race under every schedule and fault.
    Safe,
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
        match self {
            Strategy::Legacy => Constraints { idless_email_unique: false, product_group_unique: false },
            Strategy::Transactional => Constraints { idless_email_unique: true, product_group_unique: false },
            Strategy::Safe => Constraints { idless_email_unique: true, product_group_unique: true },
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request's context: its connection, its tenant and the strategy.
pub struct Ctx<'a, B> {
    pub db: &'a B,
    pub scope: Scope,
    pub strategy: Strategy,
}

impl<'a, B: Backend> Ctx<'a, B> {
    pub fn new(db: &'a B, scope: Scope, strategy: Strategy) -> Ctx<'a, B> {
        Ctx { db, scope, strategy }
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

/// Creates a customer, or returns the one that exists (SPEC §3): the one
/// create entry point, for the create endpoint and for auto-creation alike.
/// `customer_id` is already validated.
pub async fn create<B: Backend>(
    ctx: &Ctx<'_, B>,
    customer_id: Option<&CustomerId>,
    customer_data: &CustomerData,
    options: &CreateOptions,
) -> Result<FullCustomer, ApiError> {
    match ctx.strategy {
        Strategy::Legacy => {
            legacy::create(ctx, customer_id, customer_data, options).await.map_err(Into::into)
        }
        Strategy::Transactional => transactional::create(ctx, customer_id, customer_data, options).await,
        Strategy::Safe => safe::create(ctx, customer_id, customer_data, options).await,
    }
}

/// The customer a check or track is about: from the cache, else the DB,
/// else created with `customer_data` (SPEC §3's get-or-create).
pub async fn get_or_create<B: Backend>(
    ctx: &Ctx<'_, B>,
    customer_id: &CustomerId,
    customer_data: &CustomerData,
) -> Result<FullCustomer, ApiError> {
    let found = through_cache(ctx, customer_id, Some(customer_data)).await?;
    Ok(found.expect("get-or-create with customer data always yields a customer"))
}

/// The strategy's own read path, without auto-creation: cache first, then
/// the DB (and the cache is filled as the strategy fills it). The
/// harness's settle read.
pub async fn read_customer<B: Backend>(
    ctx: &Ctx<'_, B>,
    customer_id: &CustomerId,
) -> Result<Option<FullCustomer>, ApiError> {
    through_cache(ctx, customer_id, None).await
}

/// Each strategy's path through the cache; creates only when given data.
async fn through_cache<B: Backend>(
    ctx: &Ctx<'_, B>,
    customer_id: &CustomerId,
    customer_data: Option<&CustomerData>,
) -> Result<Option<FullCustomer>, ApiError> {
    match ctx.strategy {
        Strategy::Legacy | Strategy::Transactional => {
            common::cached_get_or_create(ctx, customer_id, customer_data).await
        }
        Strategy::Safe => safe::get_or_create(ctx, customer_id, customer_data).await,
    }
}

/// Records `value` of usage of `feature_id` for the customer.
pub async fn record_usage<B: Backend>(
    ctx: &Ctx<'_, B>,
    customer_id: &CustomerId,
    customer: &FullCustomer,
    feature_id: &str,
    value: i64,
) -> Result<(), ApiError> {
    match ctx.strategy {
        Strategy::Legacy | Strategy::Transactional => {
            common::deduct_in_cache_then_sync(ctx, customer_id, customer, feature_id, value).await
        }
        Strategy::Safe => safe::deduct_at_source(ctx, customer, feature_id, value).await,
    }
}
