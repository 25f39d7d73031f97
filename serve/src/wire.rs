//! The wire: request bodies as the modelled server's API takes them, read
//! into the harness's [`Request`], and the flows' answers written in the
//! shapes autumn-js 1.3.13 validates (API.md; every customer response has
//! all 15 keys, with explicit `null`s).

use std::collections::BTreeMap;

use cusim::flow::{Expand, Request, Response};
use cusim::model::{Balance, Catalog, CustomerData, FullCustomer, Metadata, ProductStatus, Scope};
use serde_json::{json, Map, Value};

use crate::errors::HttpError;

/// The longest string field (a name, a fingerprint) the server takes.
pub const MAX_TEXT_CHARS: usize = 1024;
/// The longest email: Postgres indexes an id-less customer's email.
pub const MAX_EMAIL_CHARS: usize = 320;

/// `value` and `required_balance` are integers within this bound (the
/// model counts usage in `i64`, and no sum of bounded values overflows).
pub const MAX_AMOUNT: i64 = 1_000_000_000;

/// What kind of JSON value `value` is, as validation messages name it.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Reads typed fields out of a body, collecting every field's error.
pub struct Fields<'a> {
    object: &'a Map<String, Value>,
    errors: Vec<String>,
}

impl<'a> Fields<'a> {
    /// The body as an object, or why it is not one.
    pub fn of(body: &'a [u8], parsed: &'a mut Option<Value>) -> Result<Fields<'a>, HttpError> {
        let text =
            std::str::from_utf8(body).map_err(|_| HttpError::invalid_inputs("body is not UTF-8 text"))?;
        if text.trim().is_empty() {
            return Err(HttpError::invalid_inputs("body is empty: expected a JSON object"));
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| HttpError::invalid_inputs(format!("body is not valid JSON: {e}")))?;
        match parsed.insert(value) {
            Value::Object(object) => Ok(Fields { object, errors: Vec::new() }),
            other => {
                Err(HttpError::invalid_inputs(format!("body must be a JSON object, not {}", kind(other))))
            }
        }
    }

    /// An empty body (the `GET` route's).
    pub fn empty(object: &'a Map<String, Value>) -> Fields<'a> {
        Fields { object, errors: Vec::new() }
    }

    fn fail(&mut self, field: &str, message: impl std::fmt::Display) {
        self.errors.push(format!("{field}: {message}"));
    }

    /// `field` must be there (its value may be `null`).
    pub fn fail_required(&mut self, field: &str) {
        self.fail(field, "Required");
    }

    /// Whether the body has `field` at all (even as `null`).
    pub fn has(&self, field: &str) -> bool {
        self.object.contains_key(field)
    }

    /// A string or null; absent is `None`.
    pub fn string(&mut self, field: &str) -> Option<String> {
        match self.object.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.contains('\0') => {
                self.fail(field, "cannot contain a NUL character");
                None
            }
            Some(Value::String(s)) if s.chars().count() > MAX_TEXT_CHARS => {
                self.fail(field, format!("must be at most {MAX_TEXT_CHARS} characters"));
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                let message = format!("Expected string, received {}", kind(other));
                self.fail(field, message);
                None
            }
        }
    }

    /// An email: a string of at most [`MAX_EMAIL_CHARS`], or null.
    pub fn email(&mut self, field: &str) -> Option<String> {
        let email = self.string(field)?;
        if email.chars().count() > MAX_EMAIL_CHARS {
            self.fail(field, format!("must be at most {MAX_EMAIL_CHARS} characters"));
            return None;
        }
        Some(email)
    }

    /// A string that must be there.
    pub fn required_string(&mut self, field: &str) -> Option<String> {
        match self.object.get(field) {
            None => {
                self.fail(field, "Required");
                None
            }
            Some(Value::Null) => {
                self.fail(field, "Expected string, received null");
                None
            }
            Some(_) => self.string(field),
        }
    }

    pub fn boolean(&mut self, field: &str) -> Option<bool> {
        match self.object.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                let message = format!("Expected boolean, received {}", kind(other));
                self.fail(field, message);
                None
            }
        }
    }

    /// An integer within ±[`MAX_AMOUNT`].
    pub fn amount(&mut self, field: &str) -> Option<i64> {
        match self.object.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_i64().filter(|v| v.abs() <= MAX_AMOUNT) {
                Some(v) => Some(v),
                None => {
                    self.fail(field, format!("Expected an integer between -{MAX_AMOUNT} and {MAX_AMOUNT}"));
                    None
                }
            },
            Some(other) => {
                let message = format!("Expected number, received {}", kind(other));
                self.fail(field, message);
                None
            }
        }
    }

    /// A JSON object or null, with no NUL character in any key or string.
    pub fn metadata(&mut self, field: &str) -> Option<Metadata> {
        match self.object.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => {
                let value = Value::Object(map.clone());
                if has_nul(&value) {
                    self.fail(field, "cannot contain a NUL character");
                    return None;
                }
                Some(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<BTreeMap<_, _>>())
            }
            Some(other) => {
                let message = format!("Expected object, received {}", kind(other));
                self.fail(field, message);
                None
            }
        }
    }

    /// `expand`: the values the model has; the client's other values are
    /// accepted and not expanded (the model has nothing to show for them).
    pub fn expand(&mut self, field: &str) -> Vec<Expand> {
        match self.object.get(field) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                let mut expand = Vec::new();
                for item in items {
                    match item.as_str() {
                        Some("invoices") => expand.push(Expand::Invoices),
                        Some("trials_used") => expand.push(Expand::TrialsUsed),
                        Some("entities") => expand.push(Expand::Entities),
                        Some(_) => {}
                        None => {
                            let message = format!("Expected string items, received {}", kind(item));
                            self.fail(field, message);
                            return Vec::new();
                        }
                    }
                }
                expand.sort();
                expand.dedup();
                expand
            }
            Some(other) => {
                let message = format!("Expected array, received {}", kind(other));
                self.fail(field, message);
                Vec::new()
            }
        }
    }

    /// `customer_data` of the older check and track routes.
    pub fn customer_data(&mut self, field: &str) -> Option<CustomerData> {
        match self.object.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => {
                let mut inner = Fields { object: map, errors: Vec::new() };
                let data = CustomerData {
                    name: inner.string("name"),
                    email: inner.email("email"),
                    fingerprint: inner.string("fingerprint"),
                    metadata: inner.metadata("metadata"),
                    ..CustomerData::default()
                };
                let nested: Vec<String> = inner.errors.iter().map(|e| format!("{field}.{e}")).collect();
                self.errors.extend(nested);
                Some(data)
            }
            Some(other) => {
                let message = format!("Expected object, received {}", kind(other));
                self.fail(field, message);
                None
            }
        }
    }

    /// Every field's error at once, as one `invalid_inputs`.
    pub fn finish(self) -> Result<(), HttpError> {
        match self.errors.as_slice() {
            [] => Ok(()),
            [one] => Err(HttpError::invalid_inputs(one.clone())),
            many => Err(HttpError::invalid_inputs(format!("[Validation Errors] {}", many.join("; ")))),
        }
    }
}

fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// How a customer is to be shown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shown {
    pub expand: Vec<Expand>,
    /// Whether the internal id is shown (`autumn_id`).
    pub with_autumn_id: bool,
}

fn balance_json(feature_id: &str, balance: Balance) -> Value {
    json!({
        "feature_id": feature_id,
        "granted": balance.granted,
        "remaining": balance.remaining(),
        "usage": balance.usage,
        "unlimited": false,
        "overage_allowed": false,
        "max_purchase": null,
        "next_reset_at": null,
    })
}

/// A customer, with all 15 keys of the client's schema.
pub fn customer_json(full: &FullCustomer, shown: &Shown) -> Value {
    let row = &full.customer;
    let subscriptions: Vec<Value> = full
        .products
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "plan_id": p.product_id,
                "auto_enable": true,
                "add_on": false,
                "status": match p.status {
                    ProductStatus::Active => "active",
                    ProductStatus::Trialing => "trialing",
                },
                "past_due": false,
                "canceled_at": null,
                "expires_at": null,
                "trial_ends_at": null,
                "started_at": p.created_at,
                "current_period_start": null,
                "current_period_end": null,
                "quantity": 1,
            })
        })
        .collect();
    let balances: Map<String, Value> =
        full.balances.iter().map(|(feature, b)| (feature.clone(), balance_json(feature, *b))).collect();
    let mut customer = json!({
        "id": row.id,
        "name": row.name,
        "email": row.email.as_deref().filter(|e| !e.is_empty()),
        "created_at": row.created_at,
        "fingerprint": row.fingerprint,
        "stripe_id": row.processor,
        "env": row.env.as_str(),
        "metadata": row.metadata,
        "send_email_receipts": false,
        "billing_controls": {},
        "subscriptions": subscriptions,
        "purchases": [],
        "licenses": [],
        "balances": balances,
        "flags": {},
    });
    let object = customer.as_object_mut().expect("a customer is an object");
    if shown.with_autumn_id {
        object.insert("autumn_id".into(), json!(row.internal_id));
    }
    for expand in &shown.expand {
        let (key, value) = match expand {
            Expand::Invoices => ("invoices", json!([])),
            Expand::Entities => ("entities", json!([])),
            Expand::TrialsUsed => (
                "trials_used",
                Value::Array(
                    full.products
                        .iter()
                        .filter(|p| p.status == ProductStatus::Trialing)
                        .map(|p| json!({"plan_id": p.product_id, "customer_id": row.id, "fingerprint": row.fingerprint}))
                        .collect(),
                ),
            ),
        };
        object.insert(key.into(), value);
    }
    customer
}

/// A successful answer's body.
pub fn response_json(response: &Response, shown: &Shown) -> Value {
    match response {
        Response::Customer { customer } => customer_json(customer, shown),
        Response::Check(check) => {
            let balance = check.balance;
            json!({
                "allowed": balance.is_some() && check.allowed,
                "customer_id": check.customer_id,
                "required_balance": check.required_balance,
                "balance": balance.map(|b| balance_json(&check.feature_id, b)),
                "flag": null,
            })
        }
        Response::Track(track) => {
            // The balance after this track: what the flow read, plus it.
            let balance = track.customer.balances.get(&track.feature_id).map(|b| {
                let after = Balance { usage: b.usage.saturating_add(track.value), ..*b };
                balance_json(&track.feature_id, after)
            });
            json!({"customer_id": track.customer_id, "value": track.value, "balance": balance})
        }
    }
}

/// Whether the catalog has feature `feature_id` (some product includes it).
pub fn has_feature(catalog: &Catalog, feature_id: &str) -> bool {
    catalog.products.iter().any(|p| p.features.contains_key(feature_id))
}

/// `request`, acting in the tenant `scope` (the one its key names).
pub fn in_scope(mut request: Request, scope: &Scope) -> Request {
    match &mut request {
        Request::Create { org, env, .. }
        | Request::Check { org, env, .. }
        | Request::Track { org, env, .. }
        | Request::Get { org, env, .. } => {
            *org = Some(scope.org_id.clone());
            *env = Some(scope.env);
        }
    }
    request
}

/// The harness's request for a create of `id` with `data`, showing `expand`.
pub fn create_request(id: Option<String>, data: CustomerData, expand: Vec<Expand>) -> Request {
    let mut request = Request::create(id.as_deref(), data);
    if let Request::Create { expand: wanted, .. } = &mut request {
        *wanted = expand;
    }
    request
}
