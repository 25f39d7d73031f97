//! Operations given as a script, not by a flow, run on the model and on
//! Postgres in lockstep: the differential check of the model's locking
//! (who waits for whom, what a statement that waited does, deadlocks and
//! their victims) on statements and orders no flow happens to send.

use cusim::backend::mem::{IsolationBreach, RequestId, World};
use cusim::backend::Op;
use cusim::flow::Strategy;
use cusim::model::Catalog;
use serde::Serialize;

use super::{with_shadow, Divergence, PgReplayError, Target};
use crate::drive::stepper::{ModelResult, Services, Shadow};
use crate::judge::State;

/// One step of a script. (Steps are few and short-lived: the size of a
/// `Send` does not matter.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "step")]
pub enum ScriptStep {
    /// `request`, not waiting, sends `op`.
    Send { request: RequestId, op: Op },
    /// `request`, waiting, moves: its statement runs again (what it waited
    /// for has ended), or, on a cycle of waits, it is the deadlock victim.
    Resume { request: RequestId },
}

/// What a script did on both sides.
#[derive(Debug)]
pub struct ScriptReport {
    /// Steps compared before the end or the first disagreement.
    pub compared: usize,
    pub waits: usize,
    pub deadlocks: usize,
    pub divergence: Option<Divergence>,
    /// Whether the committed customers are the same, row for row.
    pub state_agrees: bool,
    /// The first committed customer that differs: the model's, then
    /// Postgres's.
    pub state_difference: Option<String>,
    /// The statements that touched another tenant's customer, on Postgres
    /// (each once).
    pub breaches: Vec<IsolationBreach>,
    /// Whether the model saw the same ones.
    pub breaches_agree: bool,
}

impl ScriptReport {
    pub fn agrees(&self) -> bool {
        self.divergence.is_none() && self.state_agrees && self.breaches_agree
    }
}

/// The model's side of a script: which requests wait, and on what.
pub struct ScriptModel {
    pub world: World,
    parked: Vec<Option<Op>>,
}

impl ScriptModel {
    pub fn new(strategy: Strategy, catalog: &Catalog) -> ScriptModel {
        ScriptModel { world: World::new(catalog.clone(), strategy.constraints(), 0), parked: Vec::new() }
    }

    /// Whether `step` may be taken now: a send by a request that does not
    /// wait, or a resume of one whose wait is over or that is on a cycle.
    pub fn may_take(&self, step: &ScriptStep) -> bool {
        match step {
            ScriptStep::Send { request, .. } => !self.world.is_waiting(*request),
            ScriptStep::Resume { request } => {
                self.world.is_waiting(*request)
                    && (self.world.woken(*request) || self.world.in_cycle(*request))
            }
        }
    }

    /// Takes `step` on the model, telling `shadow`.
    pub fn take(&mut self, step: &ScriptStep, shadow: Option<&mut dyn Shadow>) -> Result<(), String> {
        if !self.may_take(step) {
            return Err(format!("{step:?} cannot be taken now"));
        }
        let (request, op) = match step {
            ScriptStep::Send { request, op } => (*request, op.clone()),
            ScriptStep::Resume { request } => {
                let op = self.parked.get_mut(*request).and_then(Option::take).expect("a waiter is parked");
                (*request, op)
            }
        };
        if self.parked.len() <= request {
            self.parked.resize(request + 1, None);
        }
        let before = Services::of(&self.world);
        if matches!(step, ScriptStep::Resume { .. }) && self.world.in_cycle(request) {
            if let Some(shadow) = shadow {
                shadow.op(request, &op, None, &before, ModelResult::DeadlockVictim);
            }
            self.world.deadlock_victim(request);
            return Ok(());
        }
        match self.world.apply(request, &op, None) {
            Ok(outcome) => {
                if let Some(shadow) = shadow {
                    shadow.op(request, &op, None, &before, ModelResult::Done(&outcome));
                }
            }
            Err(_) => {
                if let Some(shadow) = shadow {
                    shadow.op(request, &op, None, &before, ModelResult::Waits);
                }
                self.parked[request] = Some(op);
            }
        }
        Ok(())
    }
}

/// Runs `steps` on the model and on the Postgres at `url`, in a schema
/// of its own (`schema_name`, dropped afterwards).
pub fn script_on_postgres(
    url: &str,
    schema_name: &str,
    strategy: Strategy,
    catalog: &Catalog,
    steps: &[ScriptStep],
) -> Result<ScriptReport, PgReplayError> {
    with_shadow(&Target::postgres(url), schema_name, strategy, catalog, |shadow| {
        let mut model = ScriptModel::new(strategy, catalog);
        for (index, step) in steps.iter().enumerate() {
            model
                .take(step, Some(&mut *shadow))
                .map_err(|e| PgReplayError::Server(format!("step {index}: {e}")))?;
            if let Some(failure) = shadow.inner.failure.take() {
                return Err(PgReplayError::Server(failure));
            }
            if shadow.inner.divergence.is_some() {
                break;
            }
        }
        let committed = shadow.local.block_on(shadow.runtime, shadow.inner.committed())?;
        let expected = State::of_world(&model.world).customers;
        let state_agrees = committed == expected;
        let state_difference = (!state_agrees).then(|| {
            let at = (0..expected.len().max(committed.len()))
                .find(|&i| expected.get(i) != committed.get(i))
                .unwrap_or(0);
            format!("customer {at}: model {:?}, Postgres {:?}", expected.get(at), committed.get(at))
        });
        let once = |breaches: &[IsolationBreach]| {
            let mut once: Vec<IsolationBreach> = Vec::new();
            for breach in breaches {
                if !once.contains(breach) {
                    once.push(breach.clone());
                }
            }
            once
        };
        let breaches = once(&shadow.inner.shared.borrow().breaches);
        let breaches_agree = breaches == once(model.world.isolation_breaches());
        let inner = &mut shadow.inner;
        Ok(ScriptReport {
            breaches,
            breaches_agree,
            compared: inner.compared,
            waits: inner.waits,
            deadlocks: inner.deadlocks,
            divergence: inner.divergence.take(),
            state_agrees,
            state_difference,
        })
    })
}
