//! The HTTP contract of API.md, in process: routes, authentication, API
//! versions, errors, idempotency keys and the shapes autumn-js validates.

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use cusim::flow::Strategy;
use cusim::model::ProductKind;
use serde_json::json;
use support::*;

/// The 15 keys every customer response has.
const CUSTOMER_KEYS: [&str; 15] = [
    "id",
    "name",
    "email",
    "created_at",
    "fingerprint",
    "stripe_id",
    "env",
    "metadata",
    "send_email_receipts",
    "billing_controls",
    "subscriptions",
    "purchases",
    "licenses",
    "balances",
    "flags",
];

fn strategies() -> [Strategy; 3] {
    Strategy::ALL
}

#[tokio::test]
async fn get_or_create_answers_the_full_customer_and_is_idempotent() {
    for strategy in strategies() {
        let app = app(strategy, free_catalog());
        let body =
            json!({"customer_id": "ann", "name": "Ann", "email": "ann@example.com", "with_autumn_id": true});
        let first = post(&app, "/v1/customers.get_or_create", body.clone(), &[]).await;
        assert_eq!(first.status, 200, "{strategy}: {:?}", first.body);
        assert_eq!(first.content_type.as_deref(), Some("application/json"));
        for key in CUSTOMER_KEYS {
            assert!(first.body.get(key).is_some(), "{strategy}: {key} missing from {:?}", first.body);
        }
        assert_eq!(first.body["id"], "ann");
        assert_eq!(first.body["env"], "sandbox");
        assert_eq!(first.body["subscriptions"][0]["plan_id"], "free");
        assert_eq!(first.body["subscriptions"][0]["status"], "active");
        assert_eq!(first.body["balances"]["words"]["granted"], 1000);
        assert_eq!(first.body["balances"]["words"]["feature_id"], "words");
        let second = post(&app, "/v1/customers.get_or_create", body, &[]).await;
        assert_eq!(second.status, 200);
        assert_eq!(second.body["autumn_id"], first.body["autumn_id"], "{strategy}: the same customer");
        let plain = post(&app, "/v1/customers.get", json!({"customer_id": "ann"}), &[]).await;
        assert_eq!(plain.status, 200);
        assert!(plain.body.get("autumn_id").is_none(), "autumn_id only when asked for");
    }
}

#[tokio::test]
async fn id_less_customers_need_an_email_and_are_found_by_it() {
    let app = app(Strategy::Safe, free_catalog());
    let none = post(&app, "/v1/customers.get_or_create", json!({"customer_id": null}), &[]).await;
    assert_eq!((none.status, none.code()), (400, "invalid_request"));
    assert_eq!(none.message(), "Either customer ID or email is required");
    assert_eq!(none.body["env"], "sandbox");
    let missing = post(&app, "/v1/customers.get_or_create", json!({"email": "a@b.c"}), &[]).await;
    assert_eq!((missing.status, missing.message()), (400, "customer_id: Required"));
    let body = json!({"customer_id": null, "email": "Idle@Example.com", "with_autumn_id": true});
    let first = post(&app, "/v1/customers.get_or_create", body, &[]).await;
    let body = json!({"customer_id": null, "email": "idle@example.com", "with_autumn_id": true});
    let again = post(&app, "/v1/customers.get_or_create", body, &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body["id"], serde_json::Value::Null);
    assert_eq!(again.body["autumn_id"], first.body["autumn_id"], "found by email, case-insensitively");
}

#[tokio::test]
async fn check_and_track_auto_create_only_below_api_version_2_1_0() {
    for strategy in strategies() {
        let app = app(strategy, free_catalog());
        let check = json!({"customer_id": "bob", "feature_id": "words"});
        let now = post(&app, "/v1/balances.check", check.clone(), &[]).await;
        assert_eq!((now.status, now.code()), (404, "customer_not_found"), "{strategy}");
        assert_eq!(now.message(), "Customer bob not found");
        let track = json!({"customer_id": "bob", "feature_id": "words", "value": 4});
        let now = post(&app, "/v1/balances.track", track.clone(), &[("x-api-version", "2.1.0")]).await;
        assert_eq!(now.code(), "customer_not_found");
        let old = post(&app, "/v1/balances.track", track, &[("x-api-version", "2.0.0")]).await;
        assert_eq!(old.status, 200, "{strategy}: {:?}", old.body);
        assert_eq!(old.body["value"], 4);
        assert_eq!(old.body["balance"]["usage"], 4);
        let checked = post(&app, "/v1/balances.check", check, &[]).await;
        assert_eq!(checked.status, 200);
        assert_eq!(checked.body["allowed"], true);
        assert_eq!(checked.body["balance"]["remaining"], 996);
        assert_eq!(checked.body["flag"], serde_json::Value::Null);
        let too_much = json!({"customer_id": "bob", "feature_id": "words", "required_balance": 997});
        assert_eq!(post(&app, "/v1/balances.check", too_much, &[]).await.body["allowed"], false);
    }
}

#[tokio::test]
async fn an_unknown_feature_is_reported_before_the_customer() {
    let app = app(Strategy::Safe, free_catalog());
    let body = json!({"customer_id": "nobody", "feature_id": "seats"});
    let answer = post(&app, "/v1/balances.check", body, &[("x-api-version", "2.0.0")]).await;
    assert_eq!((answer.status, answer.code()), (404, "feature_not_found"));
    assert_eq!(answer.message(), "Feature seats not found");
    assert_eq!(
        digest(&app),
        support::digest(&support::app(Strategy::Safe, free_catalog())),
        "nothing created"
    );
}

#[tokio::test]
async fn authentication_errors_name_what_is_wrong() {
    let app = app(Strategy::Safe, free_catalog());
    let call = |auth: Option<&'static str>| {
        let app = app.clone();
        async move {
            let mut request = Request::post("/v1/customers.get").header("content-type", "application/json");
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let request = request.body(Body::from(json!({"customer_id": "x"}).to_string())).unwrap();
            send(cusim_serve::router(app), request).await
        }
    };
    let none = call(None).await;
    assert_eq!((none.status, none.code()), (401, "no_secret_key"));
    assert_eq!(none.message(), "Secret key not found in Authorization header");
    assert!(none.body.get("env").is_none(), "no env before authentication");
    let prefix = call(Some("Bearer sk_live_123")).await;
    assert_eq!(
        (prefix.status, prefix.code(), prefix.message()),
        (401, "invalid_request", "Invalid authorization token prefix")
    );
    let unknown = call(Some("Bearer am_sk_test_notakey12345")).await;
    assert_eq!((unknown.status, unknown.code()), (401, "invalid_secret_key"));
    assert_eq!(unknown.message(), "Invalid secret key: am_sk_test_nota***");
    let live = post(&app, "/v1/customers.get_or_create", json!({"customer_id": "x"}), &[]).await;
    assert_eq!(live.body["env"], "sandbox");
}

#[tokio::test]
async fn live_and_sandbox_keys_are_separate_tenants() {
    let app = app(Strategy::Safe, free_catalog());
    let created = post(&app, "/v1/customers.get_or_create", json!({"customer_id": "twin"}), &[]).await;
    assert_eq!(created.body["env"], "sandbox");
    let request = Request::post("/v1/customers.get")
        .header("authorization", format!("Bearer {LIVE_KEY}"))
        .body(Body::from(json!({"customer_id": "twin"}).to_string()))
        .unwrap();
    let live = send(cusim_serve::router(app.clone()), request).await;
    assert_eq!((live.status, live.code()), (404, "customer_not_found"));
    assert_eq!(live.body["env"], "live");
}

#[tokio::test]
async fn api_versions_are_checked() {
    let app = app(Strategy::Safe, free_catalog());
    for good in ["2.4.0", "2.1.0", "1.2.0", "2.0", "1"] {
        let answer = post(
            &app,
            "/v1/customers.get_or_create",
            json!({"customer_id": "v"}),
            &[("x-api-version", good)],
        )
        .await;
        assert_eq!(answer.status, 200, "{good}");
    }
    for bad in ["banana", "2.5.0", "3.0.0", "0.9.0", "2..1", "2.4.0.1", ""] {
        let answer =
            post(&app, "/v1/customers.get_or_create", json!({"customer_id": "v"}), &[("x-api-version", bad)])
                .await;
        assert_eq!((answer.status, answer.code()), (400, "invalid_api_version"), "{bad}");
        assert_eq!(answer.message(), format!("\"{bad}\" is not a valid API version"));
    }
}

#[tokio::test]
async fn validation_errors_name_each_field() {
    let app = app(Strategy::Safe, free_catalog());
    let bad_id = post(&app, "/v1/customers.get_or_create", json!({"customer_id": "a b"}), &[]).await;
    assert_eq!((bad_id.status, bad_id.code()), (400, "invalid_inputs"));
    assert_eq!(
        bad_id.message(),
        "customer_id: cannot contain spaces. Use only letters, numbers, underscores, and hyphens."
    );
    let several =
        post(&app, "/v1/customers.get_or_create", json!({"customer_id": 5, "name": true}), &[]).await;
    assert_eq!(
        several.message(),
        "[Validation Errors] customer_id: Expected string, received number; name: Expected string, received boolean"
    );
    let track = post(&app, "/v1/balances.track", json!({"customer_id": "c"}), &[]).await;
    assert_eq!(track.message(), "feature_id: Required");
    let huge = json!({"customer_id": "c", "feature_id": "words", "value": 1e12});
    assert_eq!(post(&app, "/v1/balances.track", huge, &[]).await.code(), "invalid_inputs");
    let rest = post(&app, "/v1/customers", json!({"id": "a@b"}), &[]).await;
    assert_eq!(
        rest.message(),
        "id: cannot contain @ symbol. Use only letters, numbers, underscores, and hyphens."
    );
    for (raw, reason) in [
        ("", "body is empty"),
        ("[1]", "body must be a JSON object, not array"),
        ("{", "body is not valid JSON"),
    ] {
        let request = Request::post("/v1/customers.get_or_create")
            .header("authorization", format!("Bearer {KEY}"))
            .body(Body::from(raw))
            .unwrap();
        let answer = send(cusim_serve::router(app.clone()), request).await;
        assert_eq!((answer.status, answer.code()), (400, "invalid_inputs"), "{raw}");
        assert!(answer.message().starts_with(reason), "{raw}: {}", answer.message());
    }
}

#[tokio::test]
async fn a_repeated_idempotency_key_is_refused_and_a_failed_first_use_releases_it() {
    let app = app(Strategy::Safe, free_catalog());
    let track = json!({"customer_id": "kay", "feature_id": "words", "value": 2});
    let key = [("idempotency-key", "k1"), ("x-api-version", "2.0.0")];
    assert_eq!(post(&app, "/v1/balances.track", track.clone(), &key).await.status, 200);
    let again = post(&app, "/v1/balances.track", track.clone(), &key).await;
    assert_eq!((again.status, again.code()), (409, "duplicate_idempotency_key"));
    assert_eq!(again.message(), "Another request with idempotency key k1 has already been received");
    let usage = post(&app, "/v1/customers.get", json!({"customer_id": "kay"}), &[]).await;
    assert_eq!(usage.body["balances"]["words"]["usage"], 2, "counted once");
    // A first use that fails with a 4xx gives the key back.
    let missing = [("idempotency-key", "k2")];
    let first =
        post(&app, "/v1/balances.track", json!({"customer_id": "nope", "feature_id": "words"}), &missing)
            .await;
    assert_eq!(first.status, 404);
    let retry =
        post(&app, "/v1/balances.track", track, &[("idempotency-key", "k2"), ("x-api-version", "2.0.0")])
            .await;
    assert_eq!(retry.status, 200, "{:?}", retry.body);
}

#[tokio::test]
async fn older_routes_create_read_check_and_track() {
    let app = app(Strategy::Transactional, free_catalog());
    let created = post(&app, "/v1/customers", json!({"id": "old", "email": "old@example.com"}), &[]).await;
    assert_eq!(created.status, 200);
    let data = json!({"customer_id": "auto", "feature_id": "words", "customer_data": {"name": "Auto"}});
    let tracked = post(&app, "/v1/track", data, &[("x-api-version", "1.2.0")]).await;
    assert_eq!(tracked.status, 200, "{:?}", tracked.body);
    let request = Request::get("/v1/customers/auto")
        .header("authorization", format!("Bearer {KEY}"))
        .body(Body::empty())
        .unwrap();
    let read = send(cusim_serve::router(app.clone()), request).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["name"], "Auto");
    assert_eq!(read.body["balances"]["words"]["usage"], 1);
    let request = Request::get("/v1/customers/a%20b")
        .header("authorization", format!("Bearer {KEY}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(cusim_serve::router(app.clone()), request).await.code(), "invalid_inputs");
    let checked = post(&app, "/v1/check", json!({"customer_id": "old", "feature_id": "words"}), &[]).await;
    assert_eq!(checked.body["allowed"], true);
}

#[tokio::test]
async fn expand_shows_invoices_trials_and_entities() {
    let catalog = cusim::model::Catalog::new(vec![product("trial", "main", ProductKind::Trial, 10)], false);
    let app = app(Strategy::Safe, catalog);
    let body = json!({"customer_id": "ex", "expand": ["invoices", "trials_used", "entities", "rewards"]});
    let answer = post(&app, "/v1/customers.get_or_create", body, &[]).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["invoices"], json!([]));
    assert_eq!(answer.body["entities"], json!([]));
    assert_eq!(
        answer.body["trials_used"],
        json!([{"plan_id": "trial", "customer_id": "ex", "fingerprint": null}])
    );
    assert_eq!(answer.body["subscriptions"][0]["status"], "trialing");
    assert!(answer.body["stripe_id"].is_string(), "a trial needs a Stripe customer");
}

#[tokio::test]
async fn unknown_routes_methods_and_large_bodies_are_json_errors() {
    let app = app(Strategy::Safe, free_catalog());
    let request = Request::get("/v2/whatever").body(Body::empty()).unwrap();
    let answer = send(cusim_serve::router(app.clone()), request).await;
    assert_eq!((answer.status, answer.code()), (404, "not_found"));
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    let request = Request::delete("/v1/balances.check").body(Body::empty()).unwrap();
    let answer = send(cusim_serve::router(app.clone()), request).await;
    assert_eq!((answer.status, answer.code()), (405, "method_not_allowed"));
    let name = "x".repeat(cusim_serve::routes::BODY_LIMIT);
    let answer =
        post(&app, "/v1/customers.get_or_create", json!({"customer_id": "big", "name": name}), &[]).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.code(), "invalid_inputs");
}

#[tokio::test]
async fn ids_and_emails_are_bounded_before_they_reach_an_index() {
    let app = app(Strategy::Safe, free_catalog());
    let long_id = "a".repeat(cusim_serve::routes::MAX_ID_CHARS + 1);
    let answer = post(&app, "/v1/customers.get_or_create", json!({"customer_id": long_id}), &[]).await;
    assert_eq!((answer.status, answer.message()), (400, "customer_id: must be at most 256 characters"));
    let fits = "a".repeat(cusim_serve::routes::MAX_ID_CHARS);
    assert_eq!(
        post(&app, "/v1/customers.get_or_create", json!({"customer_id": fits}), &[]).await.status,
        200
    );
    let email = format!("{}@example.com", "e".repeat(320));
    let answer =
        post(&app, "/v1/customers.get_or_create", json!({"customer_id": null, "email": email}), &[]).await;
    assert_eq!((answer.status, answer.message()), (400, "email: must be at most 320 characters"));
    let name = "n".repeat(1025);
    let answer =
        post(&app, "/v1/customers.get_or_create", json!({"customer_id": "named", "name": name}), &[]).await;
    assert_eq!(answer.message(), "name: must be at most 1024 characters");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_time_limit_is_503_and_gives_its_key_back() {
    // Every operation waits 100 ms; a request may take 50 ms.
    let app = app_with(Strategy::Safe, free_catalog(), Duration::from_millis(100), Duration::from_millis(50));
    let track = json!({"customer_id": "slow", "feature_id": "words"});
    let headers = [("idempotency-key", "slow-1"), ("x-api-version", "2.0.0")];
    let first = post(&app, "/v1/balances.track", track.clone(), &headers).await;
    assert_eq!((first.status, first.code()), (503, "db_unavailable"), "{:?}", first.body);
    assert_eq!(first.retry_after.as_deref(), Some("1"));
    // The key is free again: a retry is not refused as a repeat.
    let retry = post(&app, "/v1/balances.track", track, &headers).await;
    assert_eq!(retry.status, 503, "a retry is not a 409: {:?}", retry.body);
}

#[tokio::test]
async fn a_key_that_is_not_visible_ascii_is_refused() {
    let app = app(Strategy::Safe, free_catalog());
    let body = json!({"customer_id": "k"});
    for bad in ["two words", "tab\there"] {
        let answer =
            post(&app, "/v1/customers.get_or_create", body.clone(), &[("idempotency-key", bad)]).await;
        assert_eq!(answer.message(), "Idempotency-Key: must be 1 to 255 visible ASCII characters", "{bad}");
    }
}

#[tokio::test]
async fn health_ready_and_metrics_answer_without_a_key_and_the_metrics_count_what_was_sent() {
    let app = app(Strategy::Safe, free_catalog());
    let (status, _, body) = get_text(&app, "/health").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, _, body) = get_text(&app, "/ready").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ready"}"#));
    // Three creates answered 200, two refused 401, one unknown route.
    for n in 0..3 {
        let answer =
            post(&app, "/v1/customers.get_or_create", json!({"customer_id": format!("c{n}")}), &[]).await;
        assert_eq!(answer.status, 200);
    }
    for _ in 0..2 {
        let request = Request::post("/v1/balances.check")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"customer_id":"c0","feature_id":"words"}"#))
            .unwrap();
        assert_eq!(send(cusim_serve::router(Arc::clone(&app)), request).await.status, 401);
    }
    assert_eq!(get_text(&app, "/nowhere/at/all").await.0, 404);
    let (status, kind, text) = get_text(&app, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(kind.as_deref(), Some("text/plain; version=0.0.4; charset=utf-8"));
    let requests = |route: &str, method: &str, status: u16| {
        sample(
            &text,
            &format!(
                "cusim_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(requests("/v1/customers.get_or_create", "POST", 200), Some(3.0), "{text}");
    assert_eq!(requests("/v1/balances.check", "POST", 401), Some(2.0), "{text}");
    assert_eq!(requests("(no route)", "GET", 404), Some(1.0), "{text}");
    assert_eq!(requests("/health", "GET", 200), Some(1.0), "{text}");
    let count =
        sample(&text, "cusim_http_request_duration_seconds_count{route=\"/v1/customers.get_or_create\"}");
    let within = sample(
        &text,
        "cusim_http_request_duration_seconds_bucket{route=\"/v1/customers.get_or_create\",le=\"+Inf\"}",
    );
    assert_eq!((count, within), (Some(3.0), Some(3.0)), "{text}");
    assert_eq!(sample(&text, "cusim_http_requests_in_flight"), Some(0.0), "{text}");
}
