//! Gated replay on Postgres: a stepper schedule run on a real server, in
//! lockstep with the model.
//!
//! Each request gets a connection of its own. The stepper runs the
//! schedule on the model as usual; a [`Shadow`] sends every operation the
//! model performs to that request's connection, at the same moment, and
//! compares the answers. A statement the model says must wait is sent
//! too, and must wait in Postgres as well: `pg_stat_activity` reports a
//! `Lock` wait, `pg_locks` an ungranted lock, and `pg_blocking_pids` a
//! holder that is one of the replay's requests. It is then *held*: its
//! backend is paused until the model runs it again, so whatever order
//! the model chooses after a release is the order Postgres follows (see
//! `shadow`). A deadlock victim is the member of the cycle the model
//! picked: only its statement, sent again with a short
//! `deadlock_timeout`, looks for the cycle. The server never runs two
//! things at once, and a schedule sends the same statements in the same
//! order every time. The held backends need the server on this machine
//! and a user that may signal them (the test tooling's server is).
//!
//! The cache and Stripe stay the in-process models on both sides; each
//! operation starts from the model's clocks and id generator. What is
//! compared is the database: every operation's answer, the verdict, and
//! the committed customers at the end. The first disagreement stops the
//! comparison (the two sides no longer share a past) and is reported.

mod script;
mod shadow;

pub use script::{script_on_postgres, ScriptModel, ScriptReport, ScriptStep};

use cusim::backend::mem::RequestId;
use cusim::backend::Point;
use cusim::flow::Strategy;
use cusim::model::Catalog;
use cusim_pg::{schema, services};
use serde::Serialize;
use sqlx::{Connection, PgConnection};
use tokio::task::LocalSet;

use crate::input::scenario::Scenario;
use crate::input::schedule::Schedule;
use crate::judge::{judge, Invariant, Observation, State};

use super::stepper::{execute_shadowed, Execution, Prepared, Replay, ReplayError, RunOptions};
use shadow::{Inner, PgShadow};

/// Why a gated replay could not run (not a disagreement: those are results).
#[derive(Debug, thiserror::Error)]
pub enum PgReplayError {
    #[error(transparent)]
    Setup(#[from] schema::SetupError),
    #[error("the scenario cannot be prepared: {0}")]
    Prepare(#[from] super::stepper::SetupError),
    #[error(transparent)]
    Schedule(#[from] ReplayError),
    #[error("{0}")]
    Server(String),
}

/// The first operation on which Postgres and the model disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Divergence {
    /// The request (seed customers and settle reads are numbered after
    /// the scenario's requests).
    pub request: RequestId,
    /// `None`: `BEGIN`.
    pub point: Option<Point>,
    pub op: String,
    pub model: String,
    pub postgres: String,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let point = self.point.map_or("begin".to_owned(), |p| p.to_string());
        write!(
            f,
            "request {} at {point} ({}): the model answered {}, Postgres {}",
            self.request, self.op, self.model, self.postgres
        )
    }
}

/// What a gated replay found (beside the model's run, the reference).
#[derive(Debug)]
pub struct PgReplay {
    /// Operations compared before the end or the first disagreement.
    pub compared: usize,
    /// Of those, the ones where the model waited and Postgres did too.
    pub waits: usize,
    /// Of those, deadlock victims (40P01 on both sides).
    pub deadlocks: usize,
    pub divergence: Option<Divergence>,
    /// The invariants the model's run violates.
    pub model_verdict: Vec<Invariant>,
    /// The same oracle on what Postgres committed (and the same responses).
    pub postgres_verdict: Vec<Invariant>,
    /// Whether the committed customers are the same, row for row.
    pub state_agrees: bool,
}

impl PgReplay {
    /// Every operation, the verdict and the final state agree.
    pub fn agrees(&self) -> bool {
        self.divergence.is_none() && self.state_agrees && self.model_verdict == self.postgres_verdict
    }
}

/// Replays `schedule` of `scenario` under `strategy` on the Postgres at
/// `url`, in a schema of its own (`schema`, dropped afterwards).
pub fn replay_on_postgres(
    url: &str,
    schema_name: &str,
    scenario: &Scenario,
    strategy: Strategy,
    schedule: &Schedule,
    options: RunOptions,
) -> Result<(Execution, PgReplay), PgReplayError> {
    with_shadow(url, schema_name, strategy, &scenario.catalog(), |shadow| {
        let prepared = Prepared::new_shadowed(scenario, strategy, shadow)?;
        let execution = execute_shadowed(&prepared, &mut Replay::new(schedule), options, shadow)?;
        if let Some(failure) = shadow.inner.failure.take() {
            return Err(PgReplayError::Server(failure));
        }
        let committed = shadow.local.block_on(shadow.runtime, shadow.inner.committed())?;
        let model = &execution.observation;
        let state_agrees = committed == model.state.customers;
        let model_verdict = verdict(&prepared, model);
        let postgres_state = {
            let services = shadow.inner.shared.borrow();
            State {
                customers: committed,
                cache: services
                    .cache
                    .entries(services.clock_ms)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                stripe: services.stripe.customers().to_vec(),
                breaches: services.breaches.clone(),
            }
            .canonical()
        };
        // The same responses and settle reads, judged on what Postgres committed.
        let on_postgres = Observation { state: postgres_state, ..model.clone() };
        let postgres_verdict = verdict(&prepared, &on_postgres);
        let inner = &mut shadow.inner;
        let report = PgReplay {
            compared: inner.compared,
            waits: inner.waits,
            deadlocks: inner.deadlocks,
            divergence: inner.divergence.take(),
            model_verdict,
            postgres_verdict,
            state_agrees,
        };
        Ok((execution, report))
    })
}

/// Runs `body` with a Postgres shadow on a schema of its own
/// (`schema_name`, made for `strategy` and `catalog`, dropped afterwards,
/// after the shadow and its connections are gone).
fn with_shadow<T>(
    url: &str,
    schema_name: &str,
    strategy: Strategy,
    catalog: &Catalog,
    body: impl FnOnce(&mut PgShadow<'_>) -> Result<T, PgReplayError>,
) -> Result<T, PgReplayError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PgReplayError::Server(format!("cannot start the async runtime: {e}")))?;
    let local = LocalSet::new();
    let database = local.block_on(&runtime, schema::create(url, schema_name, strategy, catalog))?;
    let result = (|| {
        let monitor = local
            .block_on(&runtime, PgConnection::connect_with(&database.options))
            .map_err(|e| PgReplayError::Server(format!("cannot open the monitoring connection: {e}")))?;
        let mut shadow = PgShadow {
            runtime: &runtime,
            local: &local,
            inner: Inner::new(database.clone(), services(0, strategy.constraints()), monitor),
        };
        body(&mut shadow)
    })();
    local.block_on(&runtime, schema::drop(&database));
    result
}

/// The invariants `observation` violates, each once, in order.
fn verdict(prepared: &Prepared, observation: &Observation) -> Vec<Invariant> {
    let mut found: Vec<Invariant> =
        judge(&prepared.scenario, observation).into_iter().map(|v| v.invariant).collect();
    found.sort();
    found.dedup();
    found
}
