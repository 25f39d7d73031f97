//! The routes of API.md: authentication, the API version, the body, then
//! the flows through the engine, with the `Idempotency-Key` header and a
//! time limit. Every answer is JSON: a success in the client's shape or
//! an error `{message, code, env}`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{MatchedPath, Request as HttpRequest, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use cusim::flow::{Request, Strategy};
use cusim::model::{ApiVersion, Catalog, CustomerData, FailedKey, Generation, Route as ApiRoute, Scope};
use serde_json::Map;

use crate::engine::Engine;
use crate::errors::{json_body, HttpError};
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::wire::{self, Fields, Shown};

/// The largest body a request may have.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What every handler shares.
pub struct App {
    pub engine: Engine,
    pub keys: Keys,
    pub catalog: Catalog,
    pub strategy: Strategy,
    /// How long a request may take before it is answered 503.
    pub timeout: Duration,
    /// Requests being answered now.
    pub in_flight: AtomicUsize,
    /// The generation of the API served (docs/API.md, "Generations").
    pub generation: Generation,
    /// What `GET /metrics` shows.
    pub metrics: Metrics,
}

impl App {
    pub fn new(engine: Engine, keys: Keys, catalog: Catalog, strategy: Strategy, timeout: Duration) -> App {
        App {
            engine,
            keys,
            catalog,
            strategy,
            timeout,
            in_flight: AtomicUsize::new(0),
            generation: Generation::Current,
            metrics: Metrics::default(),
        }
    }

    /// This app serving `generation`'s routes, versions and semantics.
    pub fn in_generation(self, generation: Generation) -> App {
        App { generation, ..self }
    }

    /// How many requests are being answered now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
}

/// Counts a request in flight while it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(count: &'a AtomicUsize) -> InFlight<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A `POST` route whose body is JSON.
fn posted(route: Route) -> MethodRouter<Arc<App>> {
    post(move |s: State<Arc<App>>, u: Uri, h: HeaderMap, b: Body| handle(s, u, h, b, route.clone()))
}

/// The routes of `app`'s generation, over `app`; any other is 404.
pub fn router(app: Arc<App>) -> Router {
    let mut router = Router::new();
    for route in ApiRoute::ALL.into_iter().filter(|r| app.generation.has_route(*r)) {
        router = match route {
            ApiRoute::GetOrCreate => router.route("/v1/customers.get_or_create", posted(Route::GetOrCreate)),
            ApiRoute::Get => router.route("/v1/customers.get", posted(Route::Get)),
            ApiRoute::BalancesCheck => router.route("/v1/balances.check", posted(Route::Check)),
            ApiRoute::BalancesTrack => router.route("/v1/balances.track", posted(Route::Track)),
            ApiRoute::Customers => router.route("/v1/customers", posted(Route::Create)),
            ApiRoute::CustomerById => router.route(
                "/v1/customers/{id}",
                get(|s: State<Arc<App>>, h: HeaderMap, r: HttpRequest| async move {
                    let id = r.uri().path().trim_start_matches("/v1/customers/").to_owned();
                    let uri = r.uri().clone();
                    handle(s, uri, h, Body::empty(), Route::GetById(id)).await
                }),
            ),
            ApiRoute::Check => router.route("/v1/check", posted(Route::Check)),
            ApiRoute::Track => router.route("/v1/track", posted(Route::Track)),
        };
    }
    router
        .route("/health", get(|| async { json_body(&serde_json::json!({"status": "ok"})) }))
        .route(
            "/ready",
            get(|State(app): State<Arc<App>>| async move {
                match app.engine.ready().await {
                    Ok(()) => json_body(&serde_json::json!({"status": "ready"})),
                    Err(reason) => {
                        let mut response =
                            json_body(&serde_json::json!({"status": "unready", "reason": reason}));
                        *response.status_mut() = axum::http::StatusCode::SERVICE_UNAVAILABLE;
                        response
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(app): State<Arc<App>>| async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                    app.metrics.render(app.in_flight()),
                )
            }),
        )
        .fallback(|method: Method, r: HttpRequest| async move {
            HttpError::new(404, "not_found", format!("No route {method} {}", shorten(r.uri().path())))
        })
        .method_not_allowed_fallback(|method: Method, r: HttpRequest| async move {
            HttpError::new(
                405,
                "method_not_allowed",
                format!("{method} is not allowed on {}", shorten(r.uri().path())),
            )
        })
        .with_state(Arc::clone(&app))
        .layer(middleware::from_fn_with_state(app, log_request))
}

/// At most 200 characters of a path, for messages and logs.
fn shorten(path: &str) -> String {
    let mut short: String = path.chars().take(200).collect();
    if short.len() < path.len() {
        short.push('…');
    }
    short
}

/// One structured line per request, also for a request whose client went
/// away before it was answered (its status is then 499, as nginx logs it).
async fn log_request(State(app): State<Arc<App>>, request: HttpRequest, next: Next) -> HttpResponse {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "(no route)".to_owned(), |m| m.as_str().to_owned());
    let mut line =
        LogLine { started: Instant::now(), method: request.method().clone(), route, status: 499, app };
    let response = next.run(request).await;
    line.status = response.status().as_u16();
    response
}

/// A request's log line, written (and the request counted in the
/// metrics) when the request ends however it ends.
struct LogLine {
    started: Instant,
    method: Method,
    route: String,
    status: u16,
    app: Arc<App>,
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        self.app.metrics.record(&self.route, self.method.as_str(), self.status, took);
        let latency_ms = took.as_secs_f64() * 1000.0;
        tracing::info!(
            method = %self.method,
            route = %self.route,
            status = self.status,
            latency_ms = format_args!("{latency_ms:.2}"),
            "request"
        );
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    GetOrCreate,
    Get,
    Check,
    Track,
    /// `POST /v1/customers` (older clients).
    Create,
    /// `GET /v1/customers/{id}` (older clients), with the raw path segment.
    GetById(String),
}

async fn handle(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
    route: Route,
) -> HttpResponse {
    let _counted = InFlight::new(&app.in_flight);
    match answer(&app, &uri, &headers, body, route).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// The request's API version (`x-api-version`: `major.minor.patch`,
/// minor and patch optional), from 1.0.0 up to `generation`'s newest;
/// absent, its newest.
fn api_version(headers: &HeaderMap, generation: Generation) -> Result<ApiVersion, HttpError> {
    let Some(raw) = headers.get("x-api-version") else {
        return Ok(generation.newest_version());
    };
    let text = String::from_utf8_lossy(raw.as_bytes()).into_owned();
    match ApiVersion::parse(&text) {
        Some(version) if generation.accepts(version) => Ok(version),
        _ => {
            Err(HttpError::new(400, "invalid_api_version", format!("\"{text}\" is not a valid API version")))
        }
    }
}

/// Whether the query string asks for `name=true` (the first route
/// family reads `with_autumn_id` there).
fn query_flag(uri: &Uri, name: &str) -> bool {
    uri.query().into_iter().flat_map(|q| q.split('&')).any(|pair| pair == format!("{name}=true"))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, HttpError> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bytes = raw.as_bytes();
    if bytes.is_empty() || bytes.len() > 255 || !bytes.iter().all(u8::is_ascii_graphic) {
        return Err(HttpError::invalid_inputs("Idempotency-Key: must be 1 to 255 visible ASCII characters"));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// Decodes `%XX` escapes of a path segment.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// How long a client may take to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

async fn read_body(body: Body) -> Result<axum::body::Bytes, HttpError> {
    match tokio::time::timeout(BODY_TIMEOUT, to_bytes(body, BODY_LIMIT)).await {
        Err(_) => Err(HttpError::new(
            408,
            "request_timeout",
            format!("the body did not arrive within {} s", BODY_TIMEOUT.as_secs()),
        )),
        Ok(Err(error)) => {
            let too_long = std::error::Error::source(&error)
                .is_some_and(|e| e.is::<http_body_util::LengthLimitError>())
                || error.to_string().contains("length limit");
            Err(if too_long {
                HttpError::new(413, "invalid_inputs", format!("body is larger than {BODY_LIMIT} bytes"))
            } else {
                HttpError::invalid_inputs(format!("body could not be read: {error}"))
            })
        }
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

async fn answer(
    app: &App,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    route: Route,
) -> Result<HttpResponse, HttpError> {
    let scope = app.keys.authenticate(headers.get("authorization").map(|v| v.as_bytes()))?;
    let env = scope.env;
    let version = api_version(headers, app.generation).map_err(|e| e.in_env(env))?;
    let key = idempotency_key(headers).map_err(|e| e.in_env(env))?;
    let bytes = read_body(body).await.map_err(|e| e.in_env(env))?;
    let (request, mut shown) =
        read_request(app, &route, &bytes, &scope, version).map_err(|e| e.in_env(env))?;
    shown.with_autumn_id |= query_flag(uri, "with_autumn_id");
    let failed_key = app.generation.failed_key();
    let outcome =
        tokio::time::timeout(app.timeout, app.engine.execute(request, key.clone(), failed_key)).await;
    let result = match outcome {
        Ok(result) => result,
        Err(_) => {
            // The client is answered 503: its key is given back, as after
            // any 5xx (where the generation gives keys back), so that it
            // may retry. The request itself goes on (a request that has
            // not started by now never will).
            if let (Some(key), FailedKey::GivenBack) = (key, failed_key) {
                app.engine.release_key(scope.clone(), key).await;
            }
            Err(cusim::model::ApiError::new(
                cusim::model::ErrorCode::DbUnavailable,
                format!("the request did not finish within {} ms", app.timeout.as_millis()),
            ))
        }
    };
    match result {
        Ok(response) => Ok(crate::errors::json_body(&wire::response_json(&response, &shown))),
        Err(error) => Err(HttpError::from_api(error).in_env(env)),
    }
}

/// The longest customer id the server takes: a unique index entry of
/// Postgres holds about 2,700 bytes.
pub const MAX_ID_CHARS: usize = 256;

/// Validates customer id `raw` for `field` (SPEC §2, and a length bound).
fn customer_id(field: &'static str, raw: &str) -> Result<(), HttpError> {
    if raw.chars().count() > MAX_ID_CHARS {
        return Err(HttpError::invalid_inputs(format!("{field}: must be at most {MAX_ID_CHARS} characters")));
    }
    cusim::flow::api::parse_customer_id(field, raw).map(drop).map_err(HttpError::from_api)
}

/// The harness's request for `route` with body `bytes`, in `scope`.
fn read_request(
    app: &App,
    route: &Route,
    bytes: &[u8],
    scope: &Scope,
    version: ApiVersion,
) -> Result<(Request, Shown), HttpError> {
    let mut parsed = None;
    let empty = Map::new();
    let mut fields = match route {
        Route::GetById(_) => Fields::empty(&empty),
        _ => Fields::of(bytes, &mut parsed)?,
    };
    let shown = Shown {
        expand: fields.expand("expand"),
        with_autumn_id: fields.boolean("with_autumn_id") == Some(true),
    };
    let request = match route {
        Route::GetOrCreate | Route::Create => {
            let id_field = if *route == Route::Create { "id" } else { "customer_id" };
            // The id is a required key (null for an id-less customer) of
            // `customers.get_or_create`, and of `POST /v1/customers` at 2026-01.
            let required = *route == Route::GetOrCreate || app.generation == Generation::January2026;
            if required && !fields.has(id_field) {
                fields.fail_required(id_field);
            }
            let id = fields.string(id_field);
            let data = CustomerData {
                name: fields.string("name"),
                email: fields.email("email"),
                fingerprint: fields.string("fingerprint"),
                metadata: fields.metadata("metadata"),
                disable_default: fields.boolean("disable_default").unwrap_or(false),
                create_in_stripe: fields.boolean("create_in_stripe").unwrap_or(false),
            };
            fields.finish()?;
            if let Some(id) = &id {
                customer_id(id_field, id)?;
            }
            wire::create_request(id, data, shown.expand.clone())
        }
        Route::Get | Route::GetById(_) => {
            let id = match route {
                Route::GetById(raw) => percent_decode(raw).ok_or_else(|| {
                    HttpError::invalid_inputs("customer_id: not a valid percent-encoded path segment")
                })?,
                _ => fields.required_string("customer_id").unwrap_or_default(),
            };
            fields.finish()?;
            customer_id("customer_id", &id)?;
            Request::get(&id)
        }
        Route::Check | Route::Track => {
            let customer_id = fields.required_string("customer_id");
            let feature_id = fields.required_string("feature_id");
            let amount_field = if *route == Route::Check { "required_balance" } else { "value" };
            let amount = fields.amount(amount_field).unwrap_or(1);
            let customer_data = fields.customer_data("customer_data");
            fields.finish()?;
            let (customer_id, feature_id) = (customer_id.unwrap_or_default(), feature_id.unwrap_or_default());
            self::customer_id("customer_id", &customer_id)?;
            if !wire::has_feature(&app.catalog, &feature_id) {
                return Err(HttpError::new(
                    404,
                    "feature_not_found",
                    format!("Feature {feature_id} not found"),
                ));
            }
            // Auto-create as the generation does at this version (the
            // current one: below 2.1.0).
            let auto_create = app.generation.auto_creates(version);
            if *route == Route::Check {
                Request::Check {
                    customer_id,
                    feature_id,
                    required_balance: amount,
                    customer_data,
                    auto_create,
                    org: None,
                    env: None,
                }
            } else {
                Request::Track {
                    customer_id,
                    feature_id,
                    value: amount,
                    customer_data,
                    auto_create,
                    org: None,
                    env: None,
                }
            }
        }
    };
    Ok((wire::in_scope(request, scope), shown))
}
