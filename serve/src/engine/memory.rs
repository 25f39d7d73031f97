//! The embedded engine: the in-memory model, one world shared by every
//! request. Each request runs on a thread of its own with a connection
//! whose operations apply at once under the world's lock, waiting on it
//! while another transaction holds what they need ([`SharedWorld`]), as
//! the free-running drivers of the harness do.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use cusim::backend::mem::{SharedWorld, World};
use cusim::backend::Backend;
use cusim::flow::{execute_keyed_in, Request, Response, Strategy};
use cusim::model::{ApiError, Catalog, ErrorCode, FailedKey, Scope};
use tokio::sync::oneshot;

use super::{wall_ms, Paced, Pacing, Wait};

pub struct MemoryEngine {
    world: Arc<SharedWorld>,
    strategy: Strategy,
    pacing: Pacing,
    next_request: AtomicUsize,
}

impl MemoryEngine {
    pub fn new(strategy: Strategy, catalog: Catalog, seed: u64, pacing: Pacing) -> MemoryEngine {
        let world = World::new(catalog, strategy.constraints(), seed);
        MemoryEngine {
            world: SharedWorld::serving(world),
            strategy,
            pacing,
            next_request: AtomicUsize::new(0),
        }
    }

    /// What the store holds: committed customers, live cache entries and
    /// the Stripe model's customers, as JSON (to tell whether a request
    /// changed anything).
    pub fn store_digest(&self) -> String {
        self.world.with(|w| {
            let cached: Vec<_> = w.cache_entries().collect();
            serde_json::json!({
                "customers": w.committed_fulls(),
                "cache": cached,
                "stripe": w.stripe_customers(),
            })
            .to_string()
        })
    }

    pub async fn execute(
        &self,
        request: Request,
        key: Option<String>,
        failed_key: FailedKey,
    ) -> Result<Response, ApiError> {
        let world = Arc::clone(&self.world);
        let number = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (strategy, pacing) = (self.strategy, self.pacing.clone());
        let (reply, answer) = oneshot::channel();
        let run = move || {
            if reply.is_closed() {
                return; // Its client was answered (timed out) before it started.
            }
            world.with(|w| {
                // The world's clock follows the wall clock, never back.
                let now = wall_ms();
                if now > w.now_ms() {
                    w.advance_clock(now - w.now_ms());
                }
            });
            let conn = Paced { inner: SharedWorld::connect(&world, number), pacing, wait: Wait::Thread };
            let result = run_now(execute_keyed_in(&conn, strategy, &request, key.as_deref(), failed_key));
            world.with(|w| w.forget_request(number));
            let _ = reply.send(result.unwrap_or_else(|| {
                Err(ApiError::new(ErrorCode::InternalError, "a request of the in-memory engine waited"))
            }));
        };
        drop(tokio::task::spawn_blocking(run));
        answer.await.unwrap_or_else(|_| {
            Err(ApiError::new(ErrorCode::InternalError, "the request failed inside the server"))
        })
    }

    /// Gives back idempotency key `key` of `scope` (its request's client
    /// was answered 503).
    pub async fn release_key(&self, scope: Scope, key: String) {
        let world = Arc::clone(&self.world);
        let number = self.next_request.fetch_add(1, Ordering::Relaxed);
        let release = move || {
            let conn = SharedWorld::connect(&world, number);
            let _ = run_now(conn.idempotency_release(scope, key));
            world.with(|w| w.forget_request(number));
        };
        let _ = tokio::task::spawn_blocking(release).await;
    }
}

/// Polls `future` once: a connection of a [`SharedWorld`] answers every
/// operation as it is made (blocking the thread while it must wait), so
/// its flows finish in one poll. `None` if it did not.
fn run_now<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}
