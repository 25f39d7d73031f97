//! An in-process server over the in-memory engine, and one call to it.
#![allow(dead_code)]

pub mod fuzz;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use cusim::flow::Strategy;
use cusim::model::{Catalog, Product, ProductKind};
use cusim_serve::{App, Engine, Keys, MemoryEngine};
use serde_json::Value;
use tower::ServiceExt;

pub const KEY: &str = "am_sk_test_suite";
pub const LIVE_KEY: &str = "am_sk_live_suite";

pub fn product(id: &str, group: &str, kind: ProductKind, words: i64) -> Product {
    Product {
        id: id.into(),
        group: group.into(),
        is_default: true,
        kind,
        features: [("words".to_owned(), words)].into_iter().collect(),
    }
}

pub fn free_catalog() -> Catalog {
    Catalog::new(vec![product("free", "main", ProductKind::Free, 1000)], false)
}

/// A server of `strategy` over `catalog`, with [`KEY`] and [`LIVE_KEY`] for org_1.
pub fn app(strategy: Strategy, catalog: Catalog) -> Arc<App> {
    app_with(strategy, catalog, Duration::ZERO, Duration::from_secs(10))
}

/// The same, each operation paced by `pace`, each request limited to `timeout`.
pub fn app_with(strategy: Strategy, catalog: Catalog, pace: Duration, timeout: Duration) -> Arc<App> {
    let mut keys = Keys::default();
    keys.add(&format!("{KEY}=org_1")).unwrap();
    keys.add(&format!("{LIVE_KEY}=org_1")).unwrap();
    let engine =
        Engine::Memory(MemoryEngine::new(strategy, catalog.clone(), 7, cusim_serve::Pacing::fixed(pace)));
    Arc::new(App::new(engine, keys, catalog, strategy, timeout))
}

/// The store of `app`'s in-memory engine, as JSON.
pub fn digest(app: &App) -> String {
    match &app.engine {
        Engine::Memory(engine) => engine.store_digest(),
        Engine::Postgres(_) => unreachable!("the tests serve from memory"),
    }
}

/// An answer: status, `Content-Type`, the body parsed (`Value::Null` if it is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Value,
    pub retry_after: Option<String>,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or("")
    }
}

pub async fn send(router: Router, request: Request<Body>) -> Answer {
    let response = router.oneshot(request).await.expect("the router always answers");
    let status = response.status();
    let (content_type, retry_after) = {
        let header =
            |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        (header("content-type"), header("retry-after"))
    };
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert_ne!(status, StatusCode::SWITCHING_PROTOCOLS);
    Answer { status: status.as_u16(), content_type, body, retry_after }
}

/// `POST path` with `body` and the suite's key (and `extra` headers).
pub async fn post(app: &Arc<App>, path: &str, body: Value, extra: &[(&str, &str)]) -> Answer {
    post_as(app, KEY, path, body, extra).await
}

/// `POST path` with `body`, the secret key `key` and `extra` headers.
pub async fn post_as(app: &Arc<App>, key: &str, path: &str, body: Value, extra: &[(&str, &str)]) -> Answer {
    let mut request = Request::post(path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json");
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    send(cusim_serve::router(Arc::clone(app)), request.body(Body::from(body.to_string())).unwrap()).await
}

/// `GET path` without a key, answered as text.
pub async fn get_text(app: &Arc<App>, path: &str) -> (u16, Option<String>, String) {
    let request = Request::get(path).body(Body::empty()).unwrap();
    let response = cusim_serve::router(Arc::clone(app)).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let kind = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, kind, String::from_utf8(bytes.to_vec()).unwrap())
}

/// The value of the sample `series` (name and labels, as written) in a
/// Prometheus text, if there is one.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
