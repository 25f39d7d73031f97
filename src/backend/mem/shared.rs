//! A world shared by threads: the free-running driver of the in-memory
//! model. Each request runs on a thread of its own with a
//! [`MemConn::direct`] connection; each operation takes the world's lock,
//! applies, and, if it must wait for another transaction, sleeps on a
//! condition variable until another operation completes (any of which may
//! have ended a transaction), then tries again. A
//! wait that would close a cycle makes the waiter the deadlock victim
//! (40P01), as in the stepper.
//!
//! Built on [`crate::sync`], so with the `loom` feature loom explores
//! every interleaving of the threads.

use std::rc::Rc;

use crate::backend::{InsertOutcome, Op, Outcome};
use crate::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::conn::MemConn;
use super::database::store::Blocked;
use super::database::RequestId;
use super::world::World;

struct State {
    world: World,
    /// Who inserted each customer: `(internal_id, request)`.
    inserted: Vec<(String, RequestId)>,
    /// Every operation that completed, in the order it did.
    log: Vec<(RequestId, Op, Outcome)>,
    /// Whether `inserted` and `log` are kept (not by a long-running server).
    record: bool,
}

/// A world behind a lock, with a condition variable for lock waits.
pub struct SharedWorld {
    state: Mutex<State>,
    ended: Condvar,
}

impl SharedWorld {
    pub fn new(world: World) -> Arc<SharedWorld> {
        SharedWorld::with_record(world, true)
    }

    /// A world for a long-running server: nothing is kept about the
    /// operations it applied (no log, no record of who inserted what).
    pub fn serving(world: World) -> Arc<SharedWorld> {
        SharedWorld::with_record(world, false)
    }

    fn with_record(world: World, record: bool) -> Arc<SharedWorld> {
        Arc::new(SharedWorld {
            state: Mutex::new(State { world, inserted: Vec::new(), log: Vec::new(), record }),
            ended: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("no request panics while holding the world")
    }

    /// A connection for `request` whose ops apply to this world at once.
    pub fn connect(this: &Arc<SharedWorld>, request: RequestId) -> MemConn {
        let shared = Arc::clone(this);
        let world = &this.lock().world;
        MemConn::direct(world, Rc::new(move |op: &Op| shared.apply(request, op)))
    }

    /// Applies `op` for `request`, waiting while another transaction holds
    /// what it needs.
    pub fn apply(&self, request: RequestId, op: &Op) -> Outcome {
        let mut state = self.lock();
        loop {
            match state.world.apply(request, op, None) {
                Ok(outcome) => {
                    if state.record {
                        if let Outcome::Insert { outcome: InsertOutcome::Inserted(row) } = &outcome {
                            state.inserted.push((row.internal_id.clone(), request));
                        }
                        state.log.push((request, op.clone(), outcome.clone()));
                    }
                    // A transaction may have ended: waiters look again.
                    self.ended.notify_all();
                    return outcome;
                }
                Err(Blocked(_)) => {
                    // The waiter that closes a cycle is its victim: one of the
                    // choices Postgres has (any member may be).
                    if state.world.in_cycle(request) {
                        let outcome = state.world.deadlock_victim(request);
                        if state.record {
                            state.log.push((request, op.clone(), outcome.clone()));
                        }
                        self.ended.notify_all();
                        return outcome;
                    }
                    state = self.ended.wait(state).expect("no request panics while holding the world");
                }
            }
        }
    }

    /// Runs `f` on the world (between operations).
    pub fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        f(&mut self.lock().world)
    }

    /// Every operation that completed so far, in order: who, what, answer.
    pub fn log(&self) -> Vec<(RequestId, Op, Outcome)> {
        self.lock().log.clone()
    }

    /// The world after the run, and who inserted each customer.
    pub fn finish(&self) -> (World, Vec<(String, RequestId)>) {
        let state = self.lock();
        (state.world.clone(), state.inserted.clone())
    }
}
