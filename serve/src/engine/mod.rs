//! Where the flows run: the in-memory model ([`memory`]) or Postgres and
//! Redis ([`postgres`]). An engine takes a request as the harness states
//! it and answers as the flows do; the HTTP layer knows nothing else.

pub mod memory;
pub mod postgres;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cusim::backend::{Backend, CacheStamp, Op, Outcome};
use cusim::flow::{Request, Response};
use cusim::model::{ApiError, Scope};

pub use memory::MemoryEngine;
pub use postgres::{PgEngine, PgSettings};

/// A running engine.
pub enum Engine {
    Memory(MemoryEngine),
    Postgres(PgEngine),
}

impl Engine {
    /// Runs `request`, sent with the `Idempotency-Key` header `key`.
    pub async fn execute(&self, request: Request, key: Option<String>) -> Result<Response, ApiError> {
        match self {
            Engine::Memory(engine) => engine.execute(request, key).await,
            Engine::Postgres(engine) => engine.execute(request, key).await,
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

/// A connection that holds its request `pace` before each operation that
/// passes a named point (SPEC §5): it widens every race window, so that
/// concurrent requests interleave their operations (`--pace`).
pub struct Paced<B> {
    pub inner: B,
    pub pace: Duration,
    pub wait: Wait,
}

impl<B: Backend> Backend for Paced<B> {
    async fn perform(&self, op: Op) -> Outcome {
        if !self.pace.is_zero() && op.point().is_some() {
            match self.wait {
                Wait::Thread => std::thread::sleep(self.pace),
                Wait::Async => tokio::time::sleep(self.pace).await,
            }
        }
        self.inner.perform(op).await
    }

    fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }

    fn read_stamp(&self) -> CacheStamp {
        self.inner.read_stamp()
    }
}
