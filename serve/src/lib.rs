//! `cusim serve`: the reference implementation as an HTTP server that
//! speaks the modelled server's API (API.md), so that its own client,
//! autumn-js, drives it unmodified.
//!
//! [`routes`] reads each request ([`wire`]), authenticates it by key hash
//! ([`keys`]), and hands it to an [`engine`]: the in-memory model, or
//! Postgres (and Redis) over a connection pool. Stripe is the in-process
//! model in both.

pub mod engine;
pub mod errors;
pub mod keys;
pub mod metrics;
pub mod routes;
pub mod wire;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cusim::flow::Strategy;
use cusim::model::Catalog;

pub use engine::{Engine, MemoryEngine, Pacing, PgEngine, PgSettings};
pub use keys::Keys;
pub use routes::{router, App};

/// Everything a server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub strategy: Strategy,
    pub listen: SocketAddr,
    pub catalog: Catalog,
    pub keys: Keys,
    /// Integration mode; `None`: the in-memory model.
    pub postgres: Option<PgSettings>,
    pub pacing: Pacing,
    pub timeout: Duration,
    /// The generation of the API served (docs/API.md, "Generations").
    pub generation: cusim::model::Generation,
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Start(#[from] engine::postgres::StartError),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
}

/// A seed for the ids of a server's customers: never the same twice, so
/// that a restarted server does not draw ids its database already has.
pub fn fresh_seed() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_ok() {
        u64::from_le_bytes(bytes)
    } else {
        engine::wall_ms() ^ ((std::process::id() as u64) << 40)
    }
}

/// Starts the engine the configuration names.
pub async fn start_engine(config: &Config, seed: u64) -> Result<Engine, ServeError> {
    Ok(match &config.postgres {
        None => Engine::Memory(MemoryEngine::new(
            config.strategy,
            config.catalog.clone(),
            seed,
            config.pacing.clone(),
        )),
        Some(settings) => {
            let settings = PgSettings { pacing: config.pacing.clone(), ..settings.clone() };
            Engine::Postgres(PgEngine::start(config.strategy, &config.catalog, &settings, seed).await?)
        }
    })
}

/// How long connections may stay open once shutdown has begun, beyond a
/// request's own time limit: a client that keeps its connection open
/// without sending (or a request stuck past its limit) does not keep the
/// server up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// Serves until `shutdown` completes, then lets the requests in flight
/// finish. `ready` is told the address and the app once the server
/// listens and its engine runs. The port is bound before the engine
/// starts, so a port in use is reported before the database is touched.
pub async fn serve(
    config: Config,
    ready: impl FnOnce(SocketAddr, &Arc<App>),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServeError::Listen { addr: config.listen, reason: e.to_string() })?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError::Listen { addr: config.listen, reason: e.to_string() })?;
    let engine = start_engine(&config, fresh_seed()).await?;
    let grace = config.timeout + SHUTDOWN_GRACE;
    let app = Arc::new(
        App::new(engine, config.keys, config.catalog, config.strategy, config.timeout)
            .in_generation(config.generation),
    );
    ready(addr, &app);
    let watched = Arc::clone(&app);
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        tracing::info!(in_flight = watched.in_flight(), "shutting down: finishing the requests in flight");
        let _ = stopping.send(());
    };
    let server = axum::serve(listener, router(Arc::clone(&app))).with_graceful_shutdown(shutdown);
    let deadline = async move {
        match stopped.await {
            Ok(()) => tokio::time::sleep(grace).await,
            Err(_) => std::future::pending().await,
        }
    };
    let served = tokio::select! {
        served = server.into_future() => served.map_err(|e| ServeError::Listen { addr, reason: e.to_string() }),
        () = deadline => {
            tracing::warn!(
                in_flight = app.in_flight(),
                grace_s = grace.as_secs(),
                "connections still open after the grace period: stopping without them"
            );
            Ok(())
        }
    };
    app.engine.shut_down().await;
    served
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

/// One line per event on stderr: the server's own from info up, its
/// libraries' (sqlx's notices, say) from warnings up.
pub fn init_logging() {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = Targets::new()
        .with_default(tracing::Level::WARN)
        .with_target("cusim_serve", tracing::Level::INFO)
        .with_target("cusim_pg", tracing::Level::INFO);
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false);
    let _ = tracing_subscriber::registry().with(filter).with(layer).try_init();
}
