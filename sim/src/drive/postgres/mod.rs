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
//! The cache is the in-process model, or with a Redis URL a real Redis
//! server (`cusim_pg::cache`), in a namespace of the replay's own; Stripe
//! stays the in-process model. Each operation starts from the model's
//! clocks and id generator. What is compared, each read from the servers
//! themselves: every operation's answer (the database's and the cache's,
//! the settle reads' included), the committed customers and the live cache
//! entries at the end. The verdict is the model's alone: the responses and
//! settle reads it judges are the model's flows' (computed from answers
//! Postgres matched one by one), so judging them again beside Postgres's
//! state would only restate the state's agreement. The first disagreement
//! stops the comparison (the two sides no longer share a past) and is
//! reported. A server that fails mid-run (a lost connection, a Redis that
//! died) ends the replay; the report keeps what was compared up to then.

mod kept;
mod script;
mod shadow;

pub use script::{script_on_postgres, ScriptModel, ScriptReport, ScriptStep};

use cusim::backend::mem::RequestId;
use cusim::backend::Point;
use cusim::flow::Strategy;
use cusim::model::Catalog;
use cusim_pg::cache::{CacheStore, RedisCache};
use cusim_pg::{schema, services_with};
use serde::Serialize;
use std::rc::Rc;

use sqlx::{Connection, PgConnection};
use tokio::task::LocalSet;

use crate::input::scenario::Scenario;
use crate::input::schedule::Schedule;
use crate::judge::{judge, Invariant, Observation};

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
    #[error("Redis: {0}")]
    Redis(String),
}

/// Where a gated replay runs: a Postgres server, and the cache on a Redis
/// server or (without one) in memory.
#[derive(Debug, Clone)]
pub struct Target {
    pub database_url: String,
    pub redis_url: Option<String>,
    /// Keep the run's schema afterwards, and empty one an earlier run kept
    /// rather than make it again (`schema::fresh`): for many runs in a row.
    /// Such runs also keep their connections, idle, for the next run on
    /// the schema on the same thread (`kept`).
    pub reuse_schema: bool,
}

impl Target {
    /// Postgres, with the in-memory cache.
    pub fn postgres(database_url: impl Into<String>) -> Target {
        Target { database_url: database_url.into(), redis_url: None, reuse_schema: false }
    }

    /// The same, keeping the schema for the next run (see `reuse_schema`).
    pub fn reusing_schema(self) -> Target {
        Target { reuse_schema: true, ..self }
    }

    /// The same, with the cache on the Redis server at `redis_url`.
    pub fn with_redis(self, redis_url: Option<String>) -> Target {
        Target { redis_url, ..self }
    }
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
    /// The invariants the model's run violates (see the module: the
    /// verdict is not judged again on Postgres).
    pub model_verdict: Vec<Invariant>,
    /// Whether the committed customers are the same, row for row.
    pub state_agrees: bool,
    /// Whether the live cache entries at the end are the same, key for key.
    pub cache_agrees: bool,
    /// Whether the cache was a real Redis server.
    pub on_redis: bool,
    /// A server failed mid-run (not a disagreement): the replay ended there.
    pub failure: Option<String>,
}

impl PgReplay {
    /// Every operation and the final state agree.
    pub fn agrees(&self) -> bool {
        self.failure.is_none() && self.divergence.is_none() && self.state_agrees && self.cache_agrees
    }

    /// What the two sides disagree on first, unless the replay ended early
    /// (`failure`) or they agree.
    pub fn disagreement(&self) -> Option<String> {
        if self.failure.is_some() {
            return None;
        }
        if let Some(divergence) = &self.divergence {
            return Some(divergence.to_string());
        }
        if !self.state_agrees {
            return Some("the committed customers differ".into());
        }
        (!self.cache_agrees).then(|| "the cache entries at the end differ".into())
    }
}

/// Replays `schedule` of `scenario` under `strategy` on `target`, in a
/// schema of its own (`schema`, dropped afterwards) and, on Redis, in a
/// namespace of the same name (emptied before and after).
pub fn replay_on_postgres(
    target: &Target,
    schema_name: &str,
    scenario: &Scenario,
    strategy: Strategy,
    schedule: &Schedule,
    options: RunOptions,
) -> Result<(Execution, PgReplay), PgReplayError> {
    with_shadow(target, schema_name, strategy, &scenario.catalog(), |shadow| {
        let prepared = Prepared::new_shadowed(scenario, strategy, shadow)?;
        let execution = execute_shadowed(&prepared, &mut Replay::new(schedule), options, shadow)?;
        let model = &execution.observation;
        let model_verdict = verdict(&prepared, model);
        let on_redis = target.redis_url.is_some();
        let end = match shadow.inner.failure.take() {
            Some(failure) => Err(failure),
            None => shadow.local.block_on(shadow.runtime, shadow.inner.final_state()),
        };
        let inner = &mut shadow.inner;
        let mut report = PgReplay {
            compared: inner.compared,
            waits: inner.waits,
            deadlocks: inner.deadlocks,
            divergence: inner.divergence.take(),
            model_verdict,
            state_agrees: false,
            cache_agrees: false,
            on_redis,
            failure: None,
        };
        match end {
            Err(failure) => report.failure = Some(failure),
            Ok(postgres_state) => {
                report.state_agrees = postgres_state.customers == model.state.customers;
                report.cache_agrees = postgres_state.cache == model.state.cache;
            }
        }
        // Every operation compared and answered: no statement in flight.
        shadow.inner.settled = report.failure.is_none() && report.divergence.is_none();
        Ok((execution, report))
    })
}

/// Runs `body` with a shadow on `target`: a schema of its own
/// (`schema_name`, made for `strategy` and `catalog`, dropped afterwards,
/// after the shadow and its connections are gone, unless the target
/// reuses schemas) and, on Redis, a namespace of the same name.
fn with_shadow<T>(
    target: &Target,
    schema_name: &str,
    strategy: Strategy,
    catalog: &Catalog,
    body: impl FnOnce(&mut PgShadow<'_>) -> Result<T, PgReplayError>,
) -> Result<T, PgReplayError> {
    let url = target.database_url.as_str();
    let runtime = if target.reuse_schema { kept::runtime()? } else { Rc::new(kept::new_runtime()?) };
    let local = LocalSet::new();
    // Redis first: a bad Redis URL fails before any schema is made.
    let redis = match &target.redis_url {
        None => None,
        Some(url) => {
            let redis = local
                .block_on(&runtime, RedisCache::connect(url, schema_name))
                .map_err(|e| PgReplayError::Redis(e.to_string()))?;
            local.block_on(&runtime, redis.clear()).map_err(|e| PgReplayError::Redis(e.to_string()))?;
            Some(redis)
        }
    };
    let (database, mut idle) = if target.reuse_schema {
        local.block_on(&runtime, fresh_on_kept(url, schema_name, strategy, catalog))?
    } else {
        (local.block_on(&runtime, schema::create(url, schema_name, strategy, catalog))?, Vec::new())
    };
    let result = (|| {
        let monitor = match idle.pop() {
            Some(kept) => kept,
            None => local
                .block_on(&runtime, PgConnection::connect_with(&database.options))
                .map_err(|e| PgReplayError::Server(format!("cannot open the monitoring connection: {e}")))?,
        };
        let cache = redis.clone().map_or_else(CacheStore::default, CacheStore::Redis);
        let services = services_with(0, strategy.constraints(), cache);
        let mut shadow = PgShadow {
            runtime: &runtime,
            local: &local,
            inner: Inner::new(database.clone(), services, monitor, idle),
        };
        let result = body(&mut shadow);
        if target.reuse_schema {
            kept::put(url, schema_name, local.block_on(&runtime, shadow.inner.into_idle()));
        }
        result
    })();
    if !target.reuse_schema {
        local.block_on(&runtime, schema::drop(&database));
    }
    if let Some(redis) = redis {
        // Best effort, as the schema's drop: a Redis that died keeps nothing.
        let _ = local.block_on(&runtime, redis.clear());
    }
    result
}

/// Schema `schema_name` for `strategy` with `catalog` and no customers, as
/// `schema::fresh` makes it, on a connection kept from an earlier run when
/// there is one; and the connections kept (none when the schema had to be
/// made again: their statements were prepared for the tables dropped).
async fn fresh_on_kept(
    url: &str,
    schema_name: &str,
    strategy: Strategy,
    catalog: &Catalog,
) -> Result<(schema::Database, Vec<PgConnection>), PgReplayError> {
    let mut idle = kept::take(url, schema_name);
    while let Some(mut admin) = idle.pop() {
        if schema::empty_if_made_for(&mut admin, strategy, catalog).await {
            idle.push(admin);
            return Ok((schema::Database::named(url, schema_name)?, idle));
        }
    }
    Ok((schema::fresh(url, schema_name, strategy, catalog).await?, Vec::new()))
}

/// The invariants `observation` violates, each once, in order.
fn verdict(prepared: &Prepared, observation: &Observation) -> Vec<Invariant> {
    let mut found: Vec<Invariant> =
        judge(&prepared.scenario, observation).into_iter().map(|v| v.invariant).collect();
    found.sort();
    found.dedup();
    found
}
