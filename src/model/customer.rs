//! Customers as stored (rows) and as returned (full customer), and the
//! customer data a request carries.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A customer's environment. Every row is scoped by `(org_id, env)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Env {
    Live,
    Sandbox,
}

impl Env {
    pub fn as_str(self) -> &'static str {
        match self {
            Env::Live => "live",
            Env::Sandbox => "sandbox",
        }
    }
}

/// The tenant boundary: no operation of one scope reads or changes another's rows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Scope {
    pub org_id: String,
    pub env: Env,
}

impl Scope {
    pub fn new(org_id: impl Into<String>, env: Env) -> Scope {
        Scope { org_id: org_id.into(), env }
    }
}

impl Default for Scope {
    /// SPEC §7's default: `org_1` / `sandbox`.
    fn default() -> Scope {
        Scope::new("org_1", Env::Sandbox)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.org_id, self.env.as_str())
    }
}

/// Free-form metadata. A `BTreeMap` so that its order is deterministic.
pub type Metadata = BTreeMap<String, serde_json::Value>;

/// What a request may say about the customer it creates or auto-creates
/// (the plan's `CustomerData`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_default: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_in_stripe: bool,
}

impl CustomerData {
    /// The email, if one is given and non-empty.
    pub fn email(&self) -> Option<&str> {
        self.email.as_deref().filter(|e| !e.is_empty())
    }
}

/// Which default products a customer is owed. Stored on the row (an addition
/// to SPEC §1: `safe`'s healing must know what a customer was created to have).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultScope {
    /// Created with `disable_default` or `create_default_products = false`.
    None,
    /// The default of every group.
    All,
    /// Only the default of this group (`default_group`).
    Group(String),
}

impl DefaultScope {
    pub fn includes(&self, group: &str) -> bool {
        match self {
            DefaultScope::None => false,
            DefaultScope::All => true,
            DefaultScope::Group(g) => g == group,
        }
    }

    pub fn group_filter(&self) -> Option<Option<&str>> {
        match self {
            DefaultScope::None => None,
            DefaultScope::All => Some(None),
            DefaultScope::Group(g) => Some(Some(g)),
        }
    }
}

/// A `customers` row (SPEC §1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRow {
    pub internal_id: String,
    pub org_id: String,
    pub env: Env,
    /// The external id; `None` for an id-less customer.
    pub id: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub fingerprint: Option<String>,
    pub metadata: Metadata,
    /// The Stripe customer id, once there is one.
    pub processor: Option<String>,
    /// Virtual milliseconds.
    pub created_at: u64,
    pub default_scope: DefaultScope,
    /// Whether a Stripe customer was asked for (`create_in_stripe`). Like
    /// `default_scope`, an addition to SPEC §1: recorded before Stripe is
    /// called, so that `safe` can finish the job after a crash.
    pub stripe_wanted: bool,
}

impl CustomerRow {
    pub fn scope(&self) -> Scope {
        Scope::new(self.org_id.clone(), self.env)
    }

    pub fn scope_is(&self, scope: &Scope) -> bool {
        self.org_id == scope.org_id && self.env == scope.env
    }

    /// The id-less email key: `lower(email)` when `id IS NULL AND email <> ''`.
    pub fn idless_email_key(&self) -> Option<String> {
        match (&self.id, &self.email) {
            (None, Some(e)) if !e.is_empty() => Some(e.to_lowercase()),
            _ => None,
        }
    }
}

/// True when a stored name or email counts as empty (and may be filled).
pub fn is_blank(field: &Option<String>) -> bool {
    field.as_deref().is_none_or(str::is_empty)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductStatus {
    Active,
    Trialing,
}

/// A `customer_products` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerProduct {
    pub id: String,
    pub internal_customer_id: String,
    pub product_id: String,
    pub group: String,
    pub status: ProductStatus,
    pub created_at: u64,
}

/// One feature's balance: `granted` is the sum of the feature's included
/// usage over the customer's products.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub granted: i64,
    pub usage: i64,
}

impl Balance {
    pub fn remaining(&self) -> i64 {
        self.granted - self.usage
    }
}

/// A customer with its products and balances: what the cache holds and
/// what responses show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FullCustomer {
    pub customer: CustomerRow,
    /// Ordered by `(group, product_id, id)`.
    pub products: Vec<CustomerProduct>,
    pub balances: BTreeMap<String, Balance>,
}

impl FullCustomer {
    pub fn internal_id(&self) -> &str {
        &self.customer.internal_id
    }

    pub fn has_product_in_group(&self, group: &str) -> bool {
        self.products.iter().any(|p| p.group == group)
    }
}

impl From<&Scope> for Scope {
    fn from(scope: &Scope) -> Scope {
        scope.clone()
    }
}

impl From<&FullCustomer> for Box<FullCustomer> {
    fn from(full: &FullCustomer) -> Box<FullCustomer> {
        Box::new(full.clone())
    }
}
