//! The integration engine: the same flows over sqlx against Postgres (a
//! connection pool) and, with a Redis URL, the cache on Redis; Stripe
//! stays the in-process model.
//!
//! A request's connection shares the run's services (cache handle,
//! Stripe model, ids, clocks) through a single-threaded handle, as in the
//! harness. So the flows run on one thread of their own, a
//! single-threaded runtime: the HTTP layer hands each request over and
//! awaits its answer. Requests still overlap, each on its own database
//! connection, whenever one waits on Postgres or Redis: the races are
//! Postgres's and Redis's to decide, as in the modelled server's
//! single-threaded Node process.

use std::time::Duration;

use cusim::flow::{execute_keyed, Request, Response, Strategy};
use cusim::model::{ApiError, Catalog, ErrorCode};
use cusim_pg::cache::{CacheStore, RedisCache};
use cusim_pg::{schema, PgConn, Shared};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::{wall_ms, Paced, Wait};

/// Where and how the integration engine runs.
#[derive(Debug, Clone)]
pub struct PgSettings {
    pub database_url: String,
    /// The cache on Redis; `None`: the in-memory cache model.
    pub redis_url: Option<String>,
    /// The Postgres schema (and Redis key namespace) the server owns.
    pub schema: String,
    /// Database connections at most.
    pub pool_size: u32,
    pub pace: Duration,
}

/// Why the integration engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("Postgres: {0}")]
    Postgres(String),
    #[error("Redis: {0}")]
    Redis(String),
}

struct Job {
    request: Request,
    key: Option<String>,
    reply: oneshot::Sender<Result<Response, ApiError>>,
}

pub struct PgEngine {
    jobs: mpsc::UnboundedSender<Job>,
    thread: std::thread::JoinHandle<()>,
    description: String,
}

impl PgEngine {
    /// Migrates the schema, connects, and starts the flows' thread.
    pub async fn start(
        strategy: Strategy,
        catalog: &Catalog,
        settings: &PgSettings,
        seed: u64,
    ) -> Result<PgEngine, StartError> {
        let database = schema::migrate(&settings.database_url, &settings.schema, strategy, catalog)
            .await
            .map_err(|e| StartError::Postgres(e.to_string()))?;
        let description = format!(
            "on Postgres {} (schema {}){}",
            schema::redact(&settings.database_url),
            settings.schema,
            match &settings.redis_url {
                Some(url) => format!(" and Redis {}", schema::redact(url)),
                None => " with the in-memory cache".to_owned(),
            }
        );
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let (ready, started) = oneshot::channel::<Result<(), StartError>>();
        let settings = settings.clone();
        let thread = std::thread::Builder::new()
            .name("cusim-flows".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready.send(Err(StartError::Postgres(format!("no runtime: {error}"))));
                        return;
                    }
                };
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    let (pool, shared) = match connect(strategy, &settings, database.options, seed).await {
                        Ok(connected) => connected,
                        Err(error) => {
                            let _ = ready.send(Err(error));
                            return;
                        }
                    };
                    let _ = ready.send(Ok(()));
                    let mut number = 0usize;
                    while let Some(job) = queue.recv().await {
                        let (pool, shared, pace) = (pool.clone(), shared.clone(), settings.pace);
                        tokio::task::spawn_local(serve(pool, shared, strategy, pace, number, job));
                        number += 1;
                    }
                });
                // The queue is closed: finish the requests in flight.
                runtime.block_on(local);
            })
            .map_err(|e| StartError::Postgres(format!("cannot start a thread: {e}")))?;
        match started.await {
            Ok(Ok(())) => Ok(PgEngine { jobs, thread, description }),
            Ok(Err(error)) => {
                let _ = thread.join();
                Err(error)
            }
            Err(_) => {
                let _ = thread.join();
                Err(StartError::Postgres("the flows' thread ended before it started".into()))
            }
        }
    }

    pub fn describe(&self) -> String {
        self.description.clone()
    }

    pub async fn execute(&self, request: Request, key: Option<String>) -> Result<Response, ApiError> {
        let (reply, answer) = oneshot::channel();
        if self.jobs.send(Job { request, key, reply }).is_err() {
            return Err(ApiError::new(ErrorCode::DbUnavailable, "the server is shutting down"));
        }
        answer.await.unwrap_or_else(|_| {
            Err(ApiError::new(ErrorCode::InternalError, "the request failed inside the server"))
        })
    }

    pub async fn shut_down(self) {
        drop(self.jobs);
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

async fn connect(
    strategy: Strategy,
    settings: &PgSettings,
    options: sqlx::postgres::PgConnectOptions,
    seed: u64,
) -> Result<(PgPool, Shared), StartError> {
    let pool = PgPoolOptions::new()
        .max_connections(settings.pool_size)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(|e| StartError::Postgres(format!("cannot connect: {e}")))?;
    let cache = match &settings.redis_url {
        Some(url) => CacheStore::Redis(
            RedisCache::connect(url, &settings.schema).await.map_err(|e| StartError::Redis(e.to_string()))?,
        ),
        None => CacheStore::default(),
    };
    Ok((pool, cusim_pg::services_with(seed, strategy.constraints(), cache)))
}

/// Runs one request on a pooled connection and answers it.
async fn serve(pool: PgPool, shared: Shared, strategy: Strategy, pace: Duration, number: usize, job: Job) {
    let result = match pool.acquire().await {
        Err(error) => Err(ApiError::new(ErrorCode::DbUnavailable, format!("database unavailable: {error}"))),
        Ok(conn) => {
            {
                // The shared clock follows the wall clock, never back.
                let mut services = shared.borrow_mut();
                services.clock_ms = services.clock_ms.max(wall_ms());
            }
            let conn = Paced { inner: PgConn::pooled(conn, shared.clone(), number), pace, wait: Wait::Async };
            execute_keyed(&conn, strategy, &job.request, job.key.as_deref()).await
        }
    };
    {
        let mut services = shared.borrow_mut();
        services.ids.forget(number);
        // What the harness keeps for its oracle, a server reports.
        services.inserted.clear();
        if let Some(failure) = services.cache_failure.take() {
            tracing::warn!(failure = %failure, "the Redis cache failed; the flows saw it down");
        }
        for breach in services.breaches.drain(..) {
            tracing::error!(breach = ?breach, "a statement touched another tenant's customer");
        }
    }
    let _ = job.reply.send(result);
}
