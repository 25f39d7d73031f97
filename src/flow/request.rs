//! A request as a scenario (SPEC §7) or a client states it, and its
//! execution: the one place that turns input into a call of the endpoints.

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, CacheError, KeyClaim};
use crate::model::{ApiError, CustomerData, Env, ErrorCode, FailedKey, FullCustomer, Metadata, Scope};

use super::api::{check, create_customer, get_customer, track, CheckResponse, TrackResponse};
use super::{CreateOptions, Ctx, Design, Expand, Strategy};

fn default_one() -> i64 {
    1
}

fn default_true() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_one(n: &i64) -> bool {
    *n == 1
}

/// One API request. Unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Create {
        /// The external id; `null` (or absent) for an id-less customer.
        #[serde(default)]
        id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fingerprint: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<Metadata>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        disable_default: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        create_in_stripe: bool,
        #[serde(default = "default_true", skip_serializing_if = "is_true")]
        create_default_products: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default_group: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        expand: Vec<Expand>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        org: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        env: Option<Env>,
    },
    Check {
        customer_id: String,
        feature_id: String,
        #[serde(default = "default_one", skip_serializing_if = "is_one")]
        required_balance: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        customer_data: Option<CustomerData>,
        /// Whether a missing customer is created (API versions below
        /// 2.1.0 and scenarios); `false`: `customer_not_found`.
        #[serde(default = "default_true", skip_serializing_if = "is_true")]
        auto_create: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        org: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        env: Option<Env>,
    },
    Track {
        customer_id: String,
        feature_id: String,
        #[serde(default = "default_one", skip_serializing_if = "is_one")]
        value: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        customer_data: Option<CustomerData>,
        /// Whether a missing customer is created (API versions below
        /// 2.1.0 and scenarios); `false`: `customer_not_found`.
        #[serde(default = "default_true", skip_serializing_if = "is_true")]
        auto_create: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        org: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        env: Option<Env>,
    },
    /// A plain read through the strategy's read path (the settle read).
    Get {
        customer_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        org: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        env: Option<Env>,
    },
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Response {
    Customer { customer: FullCustomer },
    Check(CheckResponse),
    Track(TrackResponse),
}

impl Response {
    /// The customer the response shows.
    pub fn customer(&self) -> &FullCustomer {
        match self {
            Response::Customer { customer } => customer,
            Response::Check(check) => &check.customer,
            Response::Track(track) => &track.customer,
        }
    }
}

impl Request {
    /// A create with only an id and customer data.
    pub fn create(id: Option<&str>, data: CustomerData) -> Request {
        Request::Create {
            id: id.map(str::to_owned),
            name: data.name,
            email: data.email,
            fingerprint: data.fingerprint,
            metadata: data.metadata,
            disable_default: data.disable_default,
            create_in_stripe: data.create_in_stripe,
            create_default_products: true,
            default_group: None,
            expand: Vec::new(),
            org: None,
            env: None,
        }
    }

    pub fn check(customer_id: &str, feature_id: &str) -> Request {
        Request::Check {
            customer_id: customer_id.to_owned(),
            feature_id: feature_id.to_owned(),
            required_balance: 1,
            customer_data: None,
            auto_create: true,
            org: None,
            env: None,
        }
    }

    pub fn track(customer_id: &str, feature_id: &str, value: i64) -> Request {
        Request::Track {
            customer_id: customer_id.to_owned(),
            feature_id: feature_id.to_owned(),
            value,
            customer_data: None,
            auto_create: true,
            org: None,
            env: None,
        }
    }

    pub fn get(customer_id: &str) -> Request {
        Request::Get { customer_id: customer_id.to_owned(), org: None, env: None }
    }

    /// The tenant the request acts in (SPEC §7: `org_1`/`sandbox` unless named).
    pub fn scope(&self) -> Scope {
        let (org, env) = match self {
            Request::Create { org, env, .. }
            | Request::Check { org, env, .. }
            | Request::Track { org, env, .. }
            | Request::Get { org, env, .. } => (org, env),
        };
        let default = Scope::default();
        Scope::new(org.clone().unwrap_or(default.org_id), env.unwrap_or(default.env))
    }

    /// The external id the request is about, if it names one.
    pub fn customer_id(&self) -> Option<&str> {
        match self {
            Request::Create { id, .. } => id.as_deref(),
            Request::Check { customer_id, .. }
            | Request::Track { customer_id, .. }
            | Request::Get { customer_id, .. } => Some(customer_id),
        }
    }

    /// The cache key of the customer the request is about, if it names one.
    pub fn cache_key(&self) -> Option<crate::backend::CacheKey> {
        self.customer_id().map(|id| crate::backend::CacheKey { scope: self.scope(), id: id.to_owned() })
    }

    pub fn op_name(&self) -> &'static str {
        match self {
            Request::Create { .. } => "create",
            Request::Check { .. } => "check",
            Request::Track { .. } => "track",
            Request::Get { .. } => "get",
        }
    }

    /// The customer data carried by a create.
    pub fn create_data(&self) -> Option<(CustomerData, CreateOptions)> {
        match self {
            Request::Create {
                name,
                email,
                fingerprint,
                metadata,
                disable_default,
                create_in_stripe,
                create_default_products,
                default_group,
                ..
            } => Some((
                CustomerData {
                    name: name.clone(),
                    email: email.clone(),
                    fingerprint: fingerprint.clone(),
                    metadata: metadata.clone(),
                    disable_default: *disable_default,
                    create_in_stripe: *create_in_stripe,
                },
                CreateOptions {
                    create_default_products: *create_default_products,
                    default_group: default_group.clone(),
                },
            )),
            _ => None,
        }
    }
}

/// Whether a client that has retries left sends its request again after
/// an attempt that ended so (`None`: the connection broke, the server died
/// mid-request): after a 429 or a 5xx, or a broken connection, as
/// autumn-js does when retries are configured (with `retryConnectionErrors`).
pub fn client_retries_after(result: Option<&Result<Response, ApiError>>) -> bool {
    match result {
        None => true,
        Some(Ok(_)) => false,
        Some(Err(error)) => matches!(error.code.http_status(), 429 | 500 | 502 | 503 | 504),
    }
}

/// Runs `request` on connection `db` under `strategy`.
pub async fn execute<B: Backend>(
    db: &B,
    strategy: Strategy,
    request: &Request,
) -> Result<Response, ApiError> {
    execute_keyed(db, strategy, request, None).await
}

/// Runs `request`, sent with the `Idempotency-Key` header `key`, on
/// connection `db` under `strategy`, through the API's idempotency
/// middleware, as the modelled server has it (API.md): the key is claimed
/// in the cache store before the handler runs, per (org, env), for 24 h; a
/// key already claimed is `409 duplicate_idempotency_key` (the first
/// response is not replayed); a request that fails with a status of 400 or
/// more, other than 409, gives its key back. If the store does not answer,
/// the request runs unguarded (fail-open). `safe` keeps this contract and
/// adds its own: a keyed track counts once at the source of truth.
pub async fn execute_keyed<B: Backend>(
    db: &B,
    strategy: Strategy,
    request: &Request,
    key: Option<&str>,
) -> Result<Response, ApiError> {
    execute_keyed_in(db, strategy, request, key, FailedKey::GivenBack).await
}

/// [`execute_keyed`] under a generation's middleware (docs/API.md,
/// "Generations"): with [`FailedKey::Kept`], a failed request's key stays
/// claimed, as the servers of 2026-01 and 2026-02 kept it.
pub async fn execute_keyed_in<B: Backend>(
    db: &B,
    strategy: Strategy,
    request: &Request,
    key: Option<&str>,
    failed: FailedKey,
) -> Result<Response, ApiError> {
    let Some(key) = key else {
        return crate::with_design!(strategy, D => execute_as::<D, B>(db, request, None).await);
    };
    let scope = request.scope();
    if let Ok(KeyClaim::Taken) = db.idempotency_claim(scope.clone(), key).await {
        return Err(ApiError::new(
            ErrorCode::DuplicateIdempotencyKey,
            format!("Another request with idempotency key {key} has already been received"),
        ));
    }
    let result = crate::with_design!(strategy, D => execute_as::<D, B>(db, request, Some(key)).await);
    if let Err(error) = &result {
        if failed == FailedKey::GivenBack
            && error.code.http_status() >= 400
            && error.code.http_status() != 409
        {
            // Best effort, as the middleware's own delete is.
            let _released: Result<(), CacheError> = db.idempotency_release(scope, key).await;
        }
    }
    result
}

/// Runs `request` (sent with `key`, which only the handlers read) on
/// connection `db` with design `D`.
pub async fn execute_as<D: Design, B: Backend>(
    db: &B,
    request: &Request,
    key: Option<&str>,
) -> Result<Response, ApiError> {
    let mut ctx = Ctx::new(db, request.scope());
    ctx.idempotency_key = key.map(str::to_owned);
    match request {
        Request::Create { id, .. } => {
            let (data, options) = request.create_data().expect("a create carries customer data");
            let customer = create_customer::<D, B>(&ctx, id.as_deref(), &data, &options).await?;
            Ok(Response::Customer { customer })
        }
        Request::Check { customer_id, feature_id, required_balance, customer_data, auto_create, .. } => {
            let data = auto_create.then(|| customer_data.clone().unwrap_or_default());
            Ok(Response::Check(
                check::<D, B>(&ctx, customer_id, feature_id, *required_balance, data.as_ref()).await?,
            ))
        }
        Request::Track { customer_id, feature_id, value, customer_data, auto_create, .. } => {
            let data = auto_create.then(|| customer_data.clone().unwrap_or_default());
            Ok(Response::Track(track::<D, B>(&ctx, customer_id, feature_id, *value, data.as_ref()).await?))
        }
        Request::Get { customer_id, .. } => {
            Ok(Response::Customer { customer: get_customer::<D, B>(&ctx, customer_id).await? })
        }
    }
}
