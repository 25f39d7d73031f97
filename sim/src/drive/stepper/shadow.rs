//! Another backend following a stepper run in lockstep (the gated replay
//! on Postgres): told every operation the model performs, with the
//! model's answer and the services the operation started from.

use cusim::backend::mem::ids::IdGen;
use cusim::backend::mem::{Fault, RequestId, World};
use cusim::backend::{CacheKey, Op, Outcome};

/// The model's services at the moment an operation starts: a lockstep
/// backend starts the same operation from the same clocks and ids.
#[derive(Debug, Clone)]
pub struct Services {
    pub now_ms: u64,
    pub seq: u64,
    pub ids: IdGen,
}

impl Services {
    pub fn of(world: &World) -> Services {
        Services { now_ms: world.observed_now_ms(), seq: world.seq(), ids: world.ids().clone() }
    }
}

/// What the model did with an operation.
#[derive(Debug, Clone, Copy)]
pub enum ModelResult<'a> {
    Done(&'a Outcome),
    /// The operation waits for another transaction.
    Waits,
    /// The wait closed a cycle: the request is the deadlock victim.
    DeadlockVictim,
}

/// Another backend following a run in lockstep.
pub trait Shadow {
    /// Request `request` performed `op` (with `fault` injected) on the model.
    fn op(
        &mut self,
        request: RequestId,
        op: &Op,
        fault: Option<Fault>,
        before: &Services,
        model: ModelResult<'_>,
    );
    /// Request `request` died; its open transaction rolls back.
    fn crash(&mut self, request: RequestId);
    /// The cache entry of `key` vanished (the `cache_evict` fault).
    fn evict(&mut self, key: &CacheKey);
}

/// A shorter borrow of an optional shadow, to lend it to one call.
pub(crate) fn reborrow<'a>(shadow: &'a mut Option<&mut dyn Shadow>) -> Option<&'a mut dyn Shadow> {
    match shadow {
        Some(shadow) => Some(&mut **shadow),
        None => None,
    }
}
