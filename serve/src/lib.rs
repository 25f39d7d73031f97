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
    /// The most connections open at once: past it, new connections wait in
    /// the listen backlog until one closes.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers (from
    /// its opening, or from its last answer) before it is closed.
    pub header_timeout: Duration,
}

/// `cusim serve`'s default [`Config::max_connections`].
pub const MAX_CONNECTIONS: usize = 1024;
/// `cusim serve`'s default [`Config::header_timeout`].
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

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
    let limits = (config.max_connections, config.header_timeout);
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
    let server = connections(listener, router(Arc::clone(&app)), limits, shutdown);
    let deadline = async move {
        match stopped.await {
            Ok(()) => tokio::time::sleep(grace).await,
            Err(_) => std::future::pending().await,
        }
    };
    let served: Result<(), ServeError> = tokio::select! {
        () = server => Ok(()),
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

/// Accepts connections and serves `router` on each (HTTP/1.1), at most
/// `max_connections` at once, each closed if it takes longer than
/// `header_timeout` to send a request's headers. Once `shutdown`
/// completes it accepts no more, asks each connection to close after the
/// request it is answering, and returns when all have.
async fn connections(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    (max_connections, header_timeout): (usize, Duration),
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = async {
                let permit = Arc::clone(&permits).acquire_owned().await.expect("never closed");
                (listener.accept().await, permit)
            } => accepted,
        };
        let (stream, permit) = match accepted {
            (Ok((stream, _)), permit) => (stream, permit),
            (Err(error), _) => {
                // Out of file descriptors, say: try again shortly.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
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
