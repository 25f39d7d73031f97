//! Where the flows run: the in-memory model ([`memory`]) or Postgres and
//! Redis ([`postgres`]). An engine takes a request as the harness states
//! it and answers as the flows do; the HTTP layer knows nothing else.

pub mod memory;
pub mod postgres;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cusim::backend::{Backend, CacheStamp, Op, Outcome};
use cusim::flow::{Request, Response};
use cusim::model::{ApiError, FailedKey, Scope};
use cusim::rng::Rng;

pub use memory::MemoryEngine;
pub use postgres::{PgEngine, PgSettings};

/// A running engine.
pub enum Engine {
    Memory(MemoryEngine),
    Postgres(PgEngine),
}

impl Engine {
    /// Runs `request`, sent with the `Idempotency-Key` header `key`; a
    /// failed request's key is given back or kept as `failed_key` says.
    pub async fn execute(
        &self,
        request: Request,
        key: Option<String>,
        failed_key: FailedKey,
    ) -> Result<Response, ApiError> {
        match self {
            Engine::Memory(engine) => engine.execute(request, key, failed_key).await,
            Engine::Postgres(engine) => engine.execute(request, key, failed_key).await,
        }
    }

    /// What the engine runs on, for the start-up line.
    pub fn describe(&self) -> String {
        match self {
            Engine::Memory(_) => "in memory".to_owned(),
            Engine::Postgres(engine) => engine.describe(),
        }
    }

    /// Gives back idempotency key `key` of `scope`: its request's client
    /// was answered 503 before the request ended.
    pub async fn release_key(&self, scope: Scope, key: String) {
        match self {
            Engine::Memory(engine) => engine.release_key(scope, key).await,
            Engine::Postgres(engine) => engine.release_key(scope, key).await,
        }
    }

    /// Whether the stores answer now (in memory: always).
    pub async fn ready(&self) -> Result<(), String> {
        match self {
            Engine::Memory(_) => Ok(()),
            Engine::Postgres(engine) => engine.ready().await,
        }
    }

    /// Stops taking requests and waits for those in flight (the in-memory
    /// engine's requests are threads of their own; nothing to wait for).
    pub async fn shut_down(&self) {
        match self {
            Engine::Memory(_) => {}
            Engine::Postgres(engine) => engine.shut_down().await,
        }
    }
}

/// The wall clock in milliseconds since the Unix epoch: the server's
/// clock (`created_at`, TTLs). The simulation never reads it.
pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// How a paced connection waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Blocks the thread (the in-memory engine runs a request per thread).
    Thread,
    /// Sleeps on the async runtime.
    Async,
}

/// How long a request is held before each operation that passes a named
/// point (SPEC §5): a fixed `pace` (`--pace`), plus, with a jitter, a
/// seeded random time (`--jitter`). Both widen race windows, as a chaos
/// proxy between a server and its stores would; the jitter also varies
/// which request gets through a window first.
#[derive(Debug, Clone, Default)]
pub struct Pacing {
    pub pace: Duration,
    pub jitter: Option<Arc<Jitter>>,
}

/// Seeded random waits of 0 to `max_ms` milliseconds. One stream for the
/// whole server: which request draws which wait still depends on timing.
#[derive(Debug)]
pub struct Jitter {
    max_ms: u64,
    rng: Mutex<Rng>,
}

impl Pacing {
    /// A fixed wait before each operation.
    pub fn fixed(pace: Duration) -> Pacing {
        Pacing { pace, jitter: None }
    }

    /// This pacing plus a random wait of up to `max_ms` drawn from `seed`.
    pub fn with_jitter(self, seed: u64, max_ms: u64) -> Pacing {
        Pacing { jitter: Some(Arc::new(Jitter { max_ms, rng: Mutex::new(Rng::from_state(seed)) })), ..self }
    }

    /// The wait before the next operation.
    fn delay(&self) -> Duration {
        let random_ms = self.jitter.as_ref().map_or(0, |jitter| {
            let mut rng = jitter.rng.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            rng.next_u64() % (jitter.max_ms + 1)
        });
        self.pace + Duration::from_millis(random_ms)
    }
}

/// A connection that holds its request (its [`Pacing`]) before each
/// operation that passes a named point (SPEC §5): it widens every race
/// window, so that concurrent requests interleave their operations
/// (`--pace`, `--jitter`).
pub struct Paced<B> {
    pub inner: B,
    pub pacing: Pacing,
    pub wait: Wait,
}

impl<B: Backend> Backend for Paced<B> {
    async fn perform(&self, op: Op) -> Outcome {
        if op.point().is_some() {
            let delay = self.pacing.delay();
            if !delay.is_zero() {
                match self.wait {
                    Wait::Thread => std::thread::sleep(delay),
                    Wait::Async => tokio::time::sleep(delay).await,
                }
            }
        }
        self.inner.perform(op).await
    }

    fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }

    fn guard_time_ms(&self) -> u64 {
        self.inner.guard_time_ms()
    }

    fn read_stamp(&self) -> CacheStamp {
        self.inner.read_stamp()
    }
}
