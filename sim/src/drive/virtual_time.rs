//! The madsim driver: the flows as madsim tasks in virtual time.
//!
//! Where the stepper decides every interleaving, this driver lets time
//! decide: each request starts after a seeded delay, and each backend
//! operation takes a seeded latency (now and then a long stall) before it
//! is applied to the shared in-memory world at the virtual clock's time.
//! That reaches the windows that depend on time: the 5 s Stripe
//! idempotency bucket (R6), the gap before a batched usage sync (R9), the
//! stale-write guard's 1 s lifetime. A request that must wait for a lock
//! looks again every virtual millisecond. madsim's seed fixes every delay,
//! so `MADSIM_TEST_SEED=N` replays a run exactly.
//!
//! Built only with `--cfg madsim` (its own target dir; no sqlx there).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use cusim::backend::mem::{poll_once, Blocked, Deducted, MemConn, RequestId, World};
use cusim::backend::{InsertOutcome, Op, Outcome, Point};
use cusim::flow::{execute_keyed, Request};
use madsim::rand::{thread_rng, Rng};
use madsim::time::{sleep, Instant};

use crate::input::scenario::FaultKind;
use crate::judge::RequestOutcome;

use super::free::{judge_free_run, Judged};
use super::stepper::Prepared;

/// Seeded delays, in virtual milliseconds (inclusive ranges).
#[derive(Debug, Clone, Copy)]
pub struct Latencies {
    /// Before a request starts.
    pub start: (u64, u64),
    pub db: (u64, u64),
    pub cache: (u64, u64),
    pub stripe: (u64, u64),
    /// One operation in `stall_one_in` (0: none) stalls this long instead
    /// (a GC pause, a slow network): long enough to outlive short time
    /// windows.
    pub stall: (u64, u64),
    pub stall_one_in: u32,
}

impl Default for Latencies {
    fn default() -> Latencies {
        Latencies {
            start: (0, 6_000),
            db: (1, 20),
            cache: (1, 3),
            stripe: (50, 2_500),
            stall: (500, 3_000),
            stall_one_in: 16,
        }
    }
}

/// Virtual milliseconds between two looks at a lock that is still held.
const LOCK_POLL_MS: u64 = 1;
/// A wait this long (virtual) is for a transaction nobody will end: the
/// request is left unfinished and the run ends stalled.
const LOCK_WAIT_LIMIT_MS: u64 = 600_000;

/// How one virtual-time run went.
#[derive(Debug)]
pub struct VirtualRun {
    pub outcomes: Vec<RequestOutcome>,
    pub judged: Judged,
    /// Operations applied (after their latency).
    pub operations: usize,
    /// Virtual time the run took.
    pub elapsed_ms: u64,
}

struct Shared {
    world: RefCell<World>,
    inserted: RefCell<Vec<(String, RequestId)>>,
    operations: RefCell<usize>,
    start: Instant,
    latencies: Latencies,
}

impl Shared {
    fn delay(&self, point: Point) -> Duration {
        let l = &self.latencies;
        let mut rng = thread_rng();
        let stall = l.stall_one_in > 0 && rng.gen_range(0..l.stall_one_in) == 0;
        let (low, high) = if stall {
            l.stall
        } else {
            match point {
                Point::CacheRead | Point::CacheWrite | Point::CacheInvalidate => l.cache,
                Point::StripeCreate => l.stripe,
                _ => l.db,
            }
        };
        Duration::from_millis(rng.gen_range(low.min(high)..=high.max(low)))
    }

    /// The world's clock follows virtual time.
    fn sync_clock(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        let mut world = self.world.borrow_mut();
        let behind = now.saturating_sub(world.now_ms());
        world.advance_clock(behind);
    }

    /// Applies `op` for `request`, looking again every millisecond while
    /// another transaction holds what it needs (`None`: it waited past
    /// [`LOCK_WAIT_LIMIT_MS`]).
    async fn apply(
        &self,
        request: RequestId,
        op: &Op,
        fault: Option<cusim::backend::mem::Fault>,
    ) -> Option<Outcome> {
        let mut waited_ms = 0;
        loop {
            self.sync_clock();
            let result = self.world.borrow_mut().apply(request, op, fault);
            match result {
                Ok(outcome) => {
                    *self.operations.borrow_mut() += 1;
                    if let Outcome::Insert { outcome: InsertOutcome::Inserted(row) } = &outcome {
                        self.inserted.borrow_mut().push((row.internal_id.clone(), request));
                    }
                    return Some(outcome);
                }
                Err(Blocked(_)) => {
                    // The waiter that closes a cycle is its victim: one of the
                    // choices Postgres has (any member may be).
                    if self.world.borrow().in_cycle(request) {
                        return Some(self.world.borrow_mut().deadlock_victim(request));
                    }
                    if waited_ms >= LOCK_WAIT_LIMIT_MS {
                        return None;
                    }
                    sleep(Duration::from_millis(LOCK_POLL_MS)).await;
                    waited_ms += LOCK_POLL_MS;
                }
            }
        }
    }
}

/// How one request went: how it ended, how the attempts before that
/// ended, and what each attempt's deductions (in order) did.
struct Driven {
    outcome: RequestOutcome,
    earlier: Vec<RequestOutcome>,
    deducted: Vec<Deducted>,
}

/// Runs one request, and again while its client retries.
async fn drive(shared: Rc<Shared>, prepared: Rc<Prepared>, request: RequestId) -> Driven {
    let sent = &prepared.scenario.requests[request];
    let mut visits: BTreeMap<Point, u32> = BTreeMap::new();
    let mut earlier = Vec::new();
    let mut deducted = Vec::new();
    loop {
        let before = shared.world.borrow().deductions(request);
        let outcome = attempt(&shared, &prepared, request, &mut visits).await;
        deducted.push(shared.world.borrow().deductions(request).since(before));
        if !(outcome.client_retries() && sent.has_retry_left(earlier.len())) {
            return Driven { outcome, earlier, deducted };
        }
        earlier.push(outcome);
    }
}

/// One attempt of a request: each op after its latency, with the
/// scenario's faults at their points (`visits` counts across attempts).
async fn attempt(
    shared: &Shared,
    prepared: &Prepared,
    request: RequestId,
    visits: &mut BTreeMap<Point, u32>,
) -> RequestOutcome {
    let conn = MemConn::new(&shared.world.borrow()).skewed(prepared.scenario.skew_ms(request));
    let sent = &prepared.scenario.requests[request];
    let body: &Request = &sent.request;
    let mut future = pin!(execute_keyed(&conn, prepared.strategy, body, sent.idempotency_key.as_deref()));
    loop {
        if let Poll::Ready(result) = poll_once(future.as_mut()) {
            return RequestOutcome::Responded(Box::new(result));
        }
        let op = conn.take_op().expect("a pending request is parked on an op");
        let mut fault = None;
        if let Some(point) = op.point() {
            sleep(shared.delay(point)).await;
            let visit = visits.entry(point).or_insert(0);
            *visit += 1;
            match prepared.scenario.fault_at(request, point, *visit) {
                Some(FaultKind::Crash) => {
                    shared.world.borrow_mut().crash(request);
                    return RequestOutcome::Crashed { at: point };
                }
                Some(FaultKind::CacheEvict) => {
                    if let Some(key) = sent.evicted_key(&op) {
                        shared.world.borrow_mut().evict(&key);
                    }
                }
                Some(kind) => fault = kind.world_fault().filter(|f| f.applies_to_op(&op)),
                None => {}
            }
        }
        let Some(outcome) = shared.apply(request, &op, fault).await else {
            return RequestOutcome::Unfinished { at: op.point() };
        };
        conn.answer(outcome);
    }
}

/// Runs the prepared scenario once in virtual time (inside a madsim
/// runtime: its seed decides every delay) and judges it.
pub async fn run(prepared: &Prepared, latencies: Latencies) -> VirtualRun {
    let shared = Rc::new(Shared {
        world: RefCell::new(prepared.world()),
        inserted: RefCell::default(),
        operations: RefCell::new(0),
        start: Instant::now(),
        latencies,
    });
    let owned = Rc::new(prepared.clone());
    let mut tasks = Vec::new();
    for request in 0..prepared.request_count() {
        let (low, high) = latencies.start;
        let start = thread_rng().gen_range(low.min(high)..=high.max(low));
        let (shared, owned) = (Rc::clone(&shared), Rc::clone(&owned));
        tasks.push(madsim::task::spawn_local(async move {
            sleep(Duration::from_millis(start)).await;
            drive(shared, owned, request).await
        }));
    }
    let mut outcomes = Vec::new();
    let mut retried = Vec::new();
    let mut deducted = Vec::new();
    for task in tasks {
        let driven = task.await.expect("requests do not panic");
        outcomes.push(driven.outcome);
        retried.push(driven.earlier);
        deducted.push(driven.deducted);
    }
    let elapsed_ms = shared.start.elapsed().as_millis() as u64;
    let world = shared.world.borrow().clone();
    let judged = judge_free_run(prepared, world, (&outcomes, retried), deducted, &shared.inserted.borrow());
    let operations = *shared.operations.borrow();
    VirtualRun { outcomes, judged, operations, elapsed_ms }
}
