//! The server on Postgres + Redis (`DATABASE_URL`, `REDIS_URL`): the same
//! answers as in memory for a sequence of calls, and arbitrary calls never
//! a 5xx (bad input reaching Postgres, a NUL character say, would be).

mod support;

#[path = "pg_http/stores_return.rs"]
mod stores_return;

use std::sync::Arc;
use std::time::Duration;

use cusim::flow::Strategy as Design;
use cusim_serve::{App, Engine, PgEngine, PgSettings};
use proptest::prelude::*;
use serde_json::{json, Value};
use support::fuzz::{call, check_answer};
use support::*;

fn url(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} must name a server (cargo xtask test postgres sets it)"))
}

/// A server of `strategy` on a schema of its own.
fn pg_app(runtime: &tokio::runtime::Runtime, strategy: Design, schema: &str) -> Arc<App> {
    pg_app_on(runtime, strategy, schema, Some(url("REDIS_URL")))
}

/// [`pg_app`] with its cache on `redis_url` (`None`: in memory).
fn pg_app_on(
    runtime: &tokio::runtime::Runtime,
    strategy: Design,
    schema: &str,
    redis_url: Option<String>,
) -> Arc<App> {
    let settings = PgSettings {
        database_url: url("DATABASE_URL"),
        redis_url,
        schema: schema.to_owned(),
        pool_size: 8,
        pacing: cusim_serve::Pacing::default(),
    };
    let catalog = free_catalog();
    let engine = runtime
        .block_on(async {
            // A fresh schema: drop what an earlier run left.
            cusim_pg::schema::create(&settings.database_url, schema, strategy, &catalog).await.unwrap();
            PgEngine::start(strategy, &catalog, &settings, 11).await
        })
        .expect("the engine starts");
    let mut keys = cusim_serve::Keys::default();
    keys.add(&format!("{KEY}=org_1")).unwrap();
    keys.add(&format!("{LIVE_KEY}=org_1")).unwrap();
    Arc::new(App::new(Engine::Postgres(engine), keys, catalog, strategy, Duration::from_secs(10)))
}

/// `n` characters of [a-zA-Z0-9] that do not compress (a seeded stream).
fn long_random(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ALPHABET[(state % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

/// Stops `app`'s engine and drops its schema and its Redis keys.
fn finish(runtime: &tokio::runtime::Runtime, app: Arc<App>, schema: &str) {
    let app = Arc::try_unwrap(app).unwrap_or_else(|_| panic!("no request holds the app"));
    runtime.block_on(async {
        app.engine.shut_down().await;
        if let Ok(redis) = cusim_pg::cache::RedisCache::connect(&url("REDIS_URL"), schema).await {
            let _ = redis.clear().await;
        }
        cusim_pg::schema::drop(&cusim_pg::schema::Database::named(&url("DATABASE_URL"), schema).unwrap())
            .await;
    });
}

/// A schema name no other test of this run uses.
fn schema_name(what: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("serve_{what}_{}_{n}", std::process::id())
}

/// A call: its path, its body and its extra headers.
type Call = (&'static str, Value, Vec<(&'static str, &'static str)>);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// What a body says, without what differs between runs.
fn stable(mut body: Value) -> Value {
    if let Some(object) = body.as_object_mut() {
        for key in ["created_at", "autumn_id", "stripe_id"] {
            object.remove(key);
        }
        if let Some(Value::Array(items)) = object.get_mut("subscriptions") {
            for item in items {
                item.as_object_mut().map(|o| (o.remove("id"), o.remove("started_at")));
            }
        }
    }
    body
}

#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn postgres_and_redis_answer_as_memory_does() {
    let runtime = runtime();
    for strategy in Design::ALL {
        let schema = schema_name("same");
        let on_pg = pg_app(&runtime, strategy, &schema);
        let in_memory = app(strategy, free_catalog());
        let calls: Vec<Call> = vec![
            (
                "/v1/customers.get_or_create",
                json!({"customer_id": "ann", "email": "ann@example.com"}),
                vec![],
            ),
            ("/v1/customers.get_or_create", json!({"customer_id": "ann", "name": "Ann"}), vec![]),
            (
                "/v1/customers.get_or_create",
                json!({"customer_id": null, "email": "Idle@Example.com"}),
                vec![],
            ),
            (
                "/v1/customers.get_or_create",
                json!({"customer_id": "claims", "email": "idle@example.com"}),
                vec![],
            ),
            ("/v1/balances.track", json!({"customer_id": "ann", "feature_id": "words", "value": 7}), vec![]),
            (
                "/v1/balances.track",
                json!({"customer_id": "new", "feature_id": "words"}),
                vec![("x-api-version", "2.0.0")],
            ),
            (
                "/v1/balances.check",
                json!({"customer_id": "ann", "feature_id": "words", "required_balance": 993}),
                vec![],
            ),
            (
                "/v1/balances.check",
                json!({"customer_id": "ann", "feature_id": "words", "required_balance": 994}),
                vec![],
            ),
            ("/v1/balances.check", json!({"customer_id": "ghost", "feature_id": "words"}), vec![]),
            (
                "/v1/balances.track",
                json!({"customer_id": "ann", "feature_id": "words"}),
                vec![("idempotency-key", "k")],
            ),
            (
                "/v1/balances.track",
                json!({"customer_id": "ann", "feature_id": "words"}),
                vec![("idempotency-key", "k")],
            ),
            ("/v1/customers.get", json!({"customer_id": "ann"}), vec![]),
            ("/v1/customers.get", json!({"customer_id": "new"}), vec![]),
            ("/v1/customers.get_or_create", json!({"customer_id": "x", "name": "nul\u{0}"}), vec![]),
            // Past the index entry Postgres can hold, were it not bounded.
            ("/v1/customers.get_or_create", json!({"customer_id": long_random(3000)}), vec![]),
            ("/v1/customers.get_or_create", json!({"customer_id": long_random(256)}), vec![]),
            ("/v1/customers.get_or_create", json!({"customer_id": null, "email": long_random(3000)}), vec![]),
        ];
        for (path, body, headers) in calls {
            let expected = runtime.block_on(post(&in_memory, path, body.clone(), &headers));
            let got = runtime.block_on(post(&on_pg, path, body.clone(), &headers));
            assert_eq!(got.status, expected.status, "{strategy} {path} {body}: {:?}", got.body);
            assert_eq!(stable(got.body), stable(expected.body), "{strategy} {path} {body}");
        }
        finish(&runtime, on_pg, &schema);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    #[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
    fn arbitrary_calls_on_postgres_are_never_a_5xx(
        calls in prop::collection::vec(call(), 1..10),
        strategy in prop::sample::select(Design::ALL.to_vec()),
    ) {
        let runtime = runtime();
        let schema = schema_name("fuzz");
        let app = pg_app(&runtime, strategy, &schema);
        runtime.block_on(post(&app, "/v1/customers.get_or_create", json!({"customer_id": "ann"}), &[]));
        let checked: Result<(), TestCaseError> =
            calls.iter().try_for_each(|call| check_answer(&app, &runtime, call, None).map(|_| ()));
        finish(&runtime, app, &schema);
        checked?;
    }
}

#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn ready_says_whether_postgres_and_redis_answer() {
    let runtime = runtime();
    let schema = schema_name("ready");
    let app = pg_app(&runtime, Design::Safe, &schema);
    let ready = |app: &Arc<App>| {
        let request = axum::http::Request::get("/ready").body(axum::body::Body::empty()).unwrap();
        runtime.block_on(send(cusim_serve::router(Arc::clone(app)), request))
    };
    let answer = ready(&app);
    assert_eq!((answer.status, answer.body.clone()), (200, json!({"status": "ready"})));
    finish(&runtime, app, &schema);
    // An engine whose flows have stopped is not ready, and says why.
    let schema = schema_name("ready");
    let app = pg_app(&runtime, Design::Safe, &schema);
    runtime.block_on(app.engine.shut_down());
    let answer = ready(&app);
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "unready");
    assert!(answer.body["reason"].as_str().unwrap().contains("shutting down"), "{:?}", answer.body);
    finish(&runtime, app, &schema);
}
