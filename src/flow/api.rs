//! The endpoints: input validation (one id rule for create, check and
//! track, SPEC §2), then the flows of a [`Design`]; and the API view of a
//! customer. Check and track are the same for every design.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::model::{
    validation_error, ApiError, Balance, CustomerData, CustomerId, Env, FieldError, FullCustomer, Metadata,
    ProductStatus,
};

use super::{CreateOptions, Ctx, Design};

/// Validates a customer id for the field `field`.
pub fn parse_customer_id(field: &'static str, raw: &str) -> Result<CustomerId, ApiError> {
    CustomerId::parse(raw).map_err(|err| validation_error(&[FieldError::customer_id(field, &err)]))
}

/// `POST /customers`: `id` may be null (then `email` is required).
pub async fn create_customer<D: Design, B: Backend>(
    ctx: &Ctx<'_, B>,
    id: Option<&str>,
    data: &CustomerData,
    options: &CreateOptions,
) -> Result<FullCustomer, ApiError> {
    let id = id.map(|raw| parse_customer_id("id", raw)).transpose()?;
    D::create(ctx, id.as_ref(), data, options).await
}

/// `GET /customers/:id` through the strategy's read path (no auto-create).
pub async fn get_customer<D: Design, B: Backend>(
    ctx: &Ctx<'_, B>,
    id: &str,
) -> Result<FullCustomer, ApiError> {
    let id = parse_customer_id("id", id)?;
    D::get_or_create(ctx, &id, None).await?.ok_or_else(|| ApiError::not_found(id.as_str()))
}

/// The customer a check or track is about: from the cache, else the DB,
/// else created with `customer_data` (SPEC §3's get-or-create); with no
/// customer data (API versions from 2.1.0 on), a missing customer is
/// `customer_not_found`.
async fn get_or_create<D: Design, B: Backend>(
    ctx: &Ctx<'_, B>,
    customer_id: &CustomerId,
    customer_data: Option<&CustomerData>,
) -> Result<FullCustomer, ApiError> {
    let found = D::get_or_create(ctx, customer_id, customer_data).await?;
    found.ok_or_else(|| ApiError::not_found(customer_id.as_str()))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResponse {
    pub customer_id: String,
    pub feature_id: String,
    pub required_balance: i64,
    pub allowed: bool,
    /// The feature's balance, when the customer has the feature.
    pub balance: Option<Balance>,
    pub customer: FullCustomer,
}

/// `POST /check`: get-or-create the customer (or find it, with no
/// `customer_data`), then
/// `allowed = granted - usage >= required_balance`.
pub async fn check<D: Design, B: Backend>(
    ctx: &Ctx<'_, B>,
    customer_id: &str,
    feature_id: &str,
    required_balance: i64,
    customer_data: Option<&CustomerData>,
) -> Result<CheckResponse, ApiError> {
    let id = parse_customer_id("customer_id", customer_id)?;
    let customer = get_or_create::<D, B>(ctx, &id, customer_data).await?;
    let balance = customer.balances.get(feature_id).copied();
    let remaining = balance.map_or(0, |b| b.remaining());
    Ok(CheckResponse {
        customer_id: customer_id.to_owned(),
        feature_id: feature_id.to_owned(),
        required_balance,
        allowed: remaining >= required_balance,
        balance,
        customer,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackResponse {
    pub customer_id: String,
    pub feature_id: String,
    /// The usage accepted; it must never be lost.
    pub value: i64,
    pub customer: FullCustomer,
}

/// `POST /track`: get-or-create the customer (or find it, with no
/// `customer_data`), then record `value` of usage.
pub async fn track<D: Design, B: Backend>(
    ctx: &Ctx<'_, B>,
    customer_id: &str,
    feature_id: &str,
    value: i64,
    customer_data: Option<&CustomerData>,
) -> Result<TrackResponse, ApiError> {
    let id = parse_customer_id("customer_id", customer_id)?;
    let customer = get_or_create::<D, B>(ctx, &id, customer_data).await?;
    D::record_usage(ctx, &id, &customer, feature_id, value).await?;
    Ok(TrackResponse {
        customer_id: customer_id.to_owned(),
        feature_id: feature_id.to_owned(),
        value,
        customer,
    })
}

/// What a create may ask to expand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expand {
    Invoices,
    TrialsUsed,
    Entities,
}

/// A customer as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiCustomer {
    pub autumn_id: String,
    pub id: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub fingerprint: Option<String>,
    pub metadata: Metadata,
    pub env: Env,
    pub stripe_id: Option<String>,
    pub created_at: u64,
    pub products: Vec<ApiProduct>,
    pub features: BTreeMap<String, ApiBalance>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoices: Option<Vec<ApiInvoice>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trials_used: Option<Vec<ApiTrialUsed>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entities: Option<Vec<ApiEntity>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiProduct {
    pub id: String,
    pub group: String,
    pub status: ProductStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiBalance {
    pub granted: i64,
    pub usage: i64,
    pub remaining: i64,
}

/// An invoice. This model bills nothing, so the list is always empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiInvoice {
    pub product_ids: Vec<String>,
    pub stripe_id: String,
    pub status: String,
    pub total: i64,
    pub currency: String,
    pub created_at: u64,
}

/// A trial the customer has used: one per trialing product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiTrialUsed {
    pub plan_id: String,
    pub customer_id: Option<String>,
    pub fingerprint: Option<String>,
}

/// An entity (sub-customer). This model has none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiEntity {
    pub id: String,
    pub name: Option<String>,
    pub customer_id: String,
    pub feature_id: String,
    pub created_at: u64,
    pub env: Env,
}

impl ApiCustomer {
    pub fn from_full(full: &FullCustomer, expand: &[Expand]) -> ApiCustomer {
        let row = &full.customer;
        let wants = |e: Expand| expand.contains(&e);
        ApiCustomer {
            autumn_id: row.internal_id.clone(),
            id: row.id.clone(),
            name: row.name.clone(),
            email: row.email.clone().filter(|e| !e.is_empty()),
            fingerprint: row.fingerprint.clone(),
            metadata: row.metadata.clone(),
            env: row.env,
            stripe_id: row.processor.clone(),
            created_at: row.created_at,
            products: full
                .products
                .iter()
                .map(|p| ApiProduct { id: p.product_id.clone(), group: p.group.clone(), status: p.status })
                .collect(),
            features: full
                .balances
                .iter()
                .map(|(f, b)| {
                    (f.clone(), ApiBalance { granted: b.granted, usage: b.usage, remaining: b.remaining() })
                })
                .collect(),
            invoices: wants(Expand::Invoices).then(Vec::new),
            trials_used: wants(Expand::TrialsUsed).then(|| {
                full.products
                    .iter()
                    .filter(|p| p.status == ProductStatus::Trialing)
                    .map(|p| ApiTrialUsed {
                        plan_id: p.product_id.clone(),
                        customer_id: row.id.clone(),
                        fingerprint: row.fingerprint.clone(),
                    })
                    .collect()
            }),
            entities: wants(Expand::Entities).then(Vec::new),
        }
    }
}
