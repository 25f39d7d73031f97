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

use cusim::flow::{execute_keyed_in, Request, Response, Strategy};
use std::sync::Mutex;

use cusim::backend::Backend;
use cusim::model::{ApiError, Catalog, ErrorCode, FailedKey, Scope};
use cusim_pg::cache::{CacheStore, RedisCache};
use cusim_pg::{schema, PgConn, Shared};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::{wall_ms, Paced, Pacing, Wait};

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
    pub pacing: Pacing,
}

/// Why the integration engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("Postgres: {0}")]
    Postgres(String),
    #[error("Redis: {0}")]
    Redis(String),
}

enum Job {
    /// A request, sent with its `Idempotency-Key`, and who waits for its answer.
    Request {
        request: Request,
        key: Option<String>,
        failed_key: FailedKey,
        reply: oneshot::Sender<Result<Response, ApiError>>,
    },
    /// Give an idempotency key back.
    Release { scope: Scope, key: String },
    /// Whether the stores answer: a pooled connection runs `SELECT 1`, and
    /// Redis (if the cache is there) answers `PING`.
    Ready { reply: oneshot::Sender<Result<(), String>> },
}

pub struct PgEngine {
    /// `None` once shutting down.
    jobs: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
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
                        let (pool, shared, pacing) = (pool.clone(), shared.clone(), settings.pacing.clone());
                        tokio::task::spawn_local(serve(pool, shared, strategy, pacing, number, job));
                        number += 1;
                    }
                });
                // The queue is closed: finish the requests in flight.
                runtime.block_on(local);
            })
            .map_err(|e| StartError::Postgres(format!("cannot start a thread: {e}")))?;
        match started.await {
            Ok(Ok(())) => {
                Ok(PgEngine { jobs: Mutex::new(Some(jobs)), thread: Mutex::new(Some(thread)), description })
            }
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

    fn send(&self, job: Job) -> bool {
        let jobs = self.jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        jobs.as_ref().is_some_and(|jobs| jobs.send(job).is_ok())
    }

    pub async fn execute(
        &self,
        request: Request,
        key: Option<String>,
        failed_key: FailedKey,
    ) -> Result<Response, ApiError> {
        let (reply, answer) = oneshot::channel();
        if !self.send(Job::Request { request, key, failed_key, reply }) {
            return Err(ApiError::new(ErrorCode::DbUnavailable, "the server is shutting down"));
        }
        answer.await.unwrap_or_else(|_| {
            Err(ApiError::new(ErrorCode::InternalError, "the request failed inside the server"))
        })
    }

    /// Gives back idempotency key `key` of `scope` (its request's client
    /// was answered 503).
    pub async fn release_key(&self, scope: Scope, key: String) {
        self.send(Job::Release { scope, key });
    }

    /// Whether Postgres and Redis answer now.
    pub async fn ready(&self) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        if !self.send(Job::Ready { reply }) {
            return Err("the server is shutting down".into());
        }
        answer.await.unwrap_or_else(|_| Err("the check failed inside the server".into()))
    }

    /// Takes no more requests and waits for those in flight.
    pub async fn shut_down(&self) {
        self.jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        let thread = self.thread.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
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

/// Whether Postgres and the cache's Redis answer.
async fn ready(pool: &PgPool, shared: &Shared) -> Result<(), String> {
    let mut conn = pool.acquire().await.map_err(|e| format!("Postgres: {e}"))?;
    sqlx::query("SELECT 1").execute(&mut *conn).await.map_err(|e| format!("Postgres: {e}"))?;
    let redis = match &shared.borrow().cache {
        CacheStore::Redis(cache) => Some(cache.clone()),
        CacheStore::Memory(_) => None,
    };
    if let Some(cache) = redis {
        cache.ping().await.map_err(|e| format!("Redis: {e}"))?;
    }
    Ok(())
}

/// Runs one job on a pooled connection and answers it.
async fn serve(pool: PgPool, shared: Shared, strategy: Strategy, pacing: Pacing, number: usize, job: Job) {
    if let Job::Ready { reply } = job {
        let _ = reply.send(ready(&pool, &shared).await);
        return;
    }
    if let Job::Request { reply, .. } = &job {
        if reply.is_closed() {
            return; // Its client was answered (timed out) before it started.
        }
    }
    let conn = match pool.acquire().await {
        Ok(conn) => Ok(conn),
        Err(error) => Err(ApiError::new(ErrorCode::DbUnavailable, format!("database unavailable: {error}"))),
    };
    {
        // The shared clock follows the wall clock, never back.
        let mut services = shared.borrow_mut();
        services.clock_ms = services.clock_ms.max(wall_ms());
    }
    let conn = conn.map(|conn| Paced {
        inner: PgConn::pooled(conn, shared.clone(), number),
        pacing,
        wait: Wait::Async,
    });
    match job {
        Job::Request { request, key, failed_key, reply } => {
            let result = match &conn {
                Ok(conn) => execute_keyed_in(conn, strategy, &request, key.as_deref(), failed_key).await,
                Err(error) => Err(error.clone()),
            };
            let _ = reply.send(result);
        }
        Job::Release { scope, key } => {
            if let Ok(conn) = &conn {
                let _ = conn.idempotency_release(scope, key).await;
            }
        }
        Job::Ready { .. } => {} // answered above
    }
    drop(conn);
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
