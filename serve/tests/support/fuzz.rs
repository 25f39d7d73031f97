//! Arbitrary calls to the router: generators and the property every
//! answer must hold.
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use cusim_serve::App;
use proptest::prelude::*;
use serde_json::{Map, Value};

use super::{send, KEY, LIVE_KEY};

/// Keys the routes read, and a few they do not.
const FIELDS: [&str; 16] = [
    "customer_id",
    "id",
    "feature_id",
    "name",
    "email",
    "fingerprint",
    "metadata",
    "value",
    "required_balance",
    "expand",
    "with_autumn_id",
    "customer_data",
    "create_in_stripe",
    "disable_default",
    "entity_id",
    "zzz",
];

const PATHS: [&str; 11] = [
    "/v1/customers.get_or_create",
    "/v1/customers.get",
    "/v1/balances.check",
    "/v1/balances.track",
    "/v1/customers",
    "/v1/check",
    "/v1/track",
    "/v1/customers/ann",
    "/v1/customers/a%20b",
    "/v1/customers/%ff%fe",
    "/v1/nope",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("ann".to_owned()),
        Just("words".to_owned()),
        Just(String::new()),
        Just("a@b.c".to_owned()),
        Just("x\u{0}y".to_owned()),
        "[a-zA-Z0-9_ .@%-]{0,12}",
        any::<String>(),
        // Long enough to pass or break the length bounds (and Postgres's
        // index entries, were it not for them).
        "[a-zA-Z0-9]{250,330}",
        "[a-zA-Z0-9]{3000}",
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-5i64..5).prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text().prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(FIELDS.to_vec()), value()), 0..6).prop_map(|pairs| {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>())
    })
}

#[derive(Debug, Clone)]
enum BodyKind {
    Object(Value),
    Json(Value),
    Bytes(Vec<u8>),
}

fn body() -> impl Strategy<Value = BodyKind> {
    prop_oneof![
        4 => object().prop_map(BodyKind::Object),
        1 => value().prop_map(BodyKind::Json),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(BodyKind::Bytes),
    ]
}

fn auth() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        4 => Just(Some(format!("Bearer {KEY}").into_bytes())),
        1 => Just(Some(format!("Bearer {LIVE_KEY}").into_bytes())),
        1 => Just(None),
        1 => Just(Some(b"Bearer am_sk_test_unknown".to_vec())),
        1 => Just(Some(b"Basic abc".to_vec())),
        1 => prop::collection::vec(any::<u8>(), 0..20).prop_map(Some),
    ]
}

fn version() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some("2.0.0".to_owned())),
        1 => Just(Some("1.2.0".to_owned())),
        1 => Just(Some("2.4.0".to_owned())),
        1 => "[0-9.a-z]{0,8}".prop_map(Some),
    ]
}

#[derive(Debug, Clone)]
pub struct Call {
    method: &'static str,
    path: String,
    auth: Option<Vec<u8>>,
    version: Option<String>,
    idempotency_key: Option<String>,
    body: BodyKind,
}

pub fn call() -> impl Strategy<Value = Call> {
    let path = prop_oneof![8 => prop::sample::select(PATHS.to_vec()).prop_map(str::to_owned), 1 => "/[a-z0-9./%_-]{0,20}"];
    let method = prop_oneof![6 => Just("POST"), 1 => Just("GET"), 1 => Just("PUT"), 1 => Just("DELETE")];
    let key = prop_oneof![3 => Just(None), 1 => "[a-z0-9]{1,3}".prop_map(Some)];
    (method, path, auth(), version(), key, body()).prop_map(
        |(method, path, auth, version, idempotency_key, body)| Call {
            method,
            path,
            auth,
            version,
            idempotency_key,
            body,
        },
    )
}

fn request(call: &Call) -> Option<Request<Body>> {
    let mut builder = Request::builder().method(call.method).uri(&call.path);
    if let Some(auth) = &call.auth {
        let value = axum::http::HeaderValue::from_bytes(auth).ok()?;
        builder = builder.header("authorization", value);
    }
    if let Some(version) = &call.version {
        let value = axum::http::HeaderValue::from_str(version).ok()?;
        builder = builder.header("x-api-version", value);
    }
    if let Some(key) = &call.idempotency_key {
        builder = builder.header("idempotency-key", key.as_str());
    }
    let bytes = match &call.body {
        BodyKind::Object(v) | BodyKind::Json(v) => v.to_string().into_bytes(),
        BodyKind::Bytes(b) => b.clone(),
    };
    builder.body(Body::from(bytes)).ok()
}

/// Whether `body` is a success of the documented shape for `path` (the
/// keys and types autumn-js 1.3.13 requires).
fn is_success_shape(path: &str, body: &Value) -> bool {
    let balance_ok = |b: &Value| {
        b.is_null()
            || (b["feature_id"].is_string()
                && ["granted", "remaining", "usage"].iter().all(|k| b[*k].is_i64())
                && b["unlimited"].is_boolean()
                && b["overage_allowed"].is_boolean()
                && b.get("max_purchase").is_some()
                && b.get("next_reset_at").is_some())
    };
    let nullable_string = |v: Option<&Value>| v.is_some_and(|v| v.is_null() || v.is_string());
    if path.ends_with("check") {
        body["allowed"].is_boolean()
            && body["customer_id"].is_string()
            && body.get("balance").is_some_and(balance_ok)
            && body.get("flag").is_some()
    } else if path.ends_with("track") {
        body["customer_id"].is_string()
            && body["value"].is_i64()
            && body.get("balance").is_some_and(balance_ok)
    } else {
        ["id", "name", "email", "fingerprint", "stripe_id"].iter().all(|k| nullable_string(body.get(*k)))
            && body["created_at"].is_u64()
            && body["env"].is_string()
            && body["metadata"].is_object()
            && body["send_email_receipts"].is_boolean()
            && body["billing_controls"].is_object()
            && body["subscriptions"].as_array().is_some_and(|subs| {
                subs.iter()
                    .all(|s| s["plan_id"].is_string() && s["status"].is_string() && s["started_at"].is_u64())
            })
            && body["purchases"].is_array()
            && body["licenses"].is_array()
            && body["balances"].as_object().is_some_and(|b| b.values().all(|v| !v.is_null() && balance_ok(v)))
            && body["flags"].is_object()
    }
}

/// Sends `call` to `app` and checks its answer; `digest` (if given) reads
/// the store, which a rejected request must leave as it was. Whether it
/// was sent: a call no HTTP client could send is skipped, and the tests
/// count what they sent.
pub fn check_answer(
    app: &Arc<App>,
    runtime: &tokio::runtime::Runtime,
    call: &Call,
    digest: Option<&dyn Fn(&App) -> String>,
) -> Result<bool, TestCaseError> {
    let Some(http) = request(call) else {
        return Ok(false); // Not a request an HTTP client could send.
    };
    let before = digest.map(|d| d(app));
    let answer = runtime.block_on(send(cusim_serve::router(Arc::clone(app)), http));
    prop_assert_eq!(answer.content_type.as_deref(), Some("application/json"), "{:?}", call);
    prop_assert!(answer.status < 500, "a 5xx for {:?}: {:?}", call, answer);
    prop_assert!(answer.body.is_object(), "not a JSON object: {:?}", answer);
    if answer.status == 200 {
        prop_assert!(is_success_shape(&call.path, &answer.body), "{:?} → {:?}", call, answer.body);
    } else {
        prop_assert!(answer.body["code"].is_string() && answer.body["message"].is_string(), "{:?}", answer);
        prop_assert!(!answer.message().contains("panicked"), "{:?}", answer);
        let after = digest.map(|d| d(app));
        prop_assert_eq!(before, after, "a rejected request changed the store: {:?} → {:?}", call, answer);
    }
    Ok(true)
}
