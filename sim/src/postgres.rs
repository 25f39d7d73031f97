//! Gated replay on Postgres: a stepper schedule run on a real server, in
//! lockstep with the model.
//!
//! Each request gets a connection of its own. The stepper runs the
//! schedule on the model as usual; a [`Shadow`] sends every operation the
//! model performs to that request's connection, at the same moment, and
//! compares the answers. A statement the model says must wait is sent
//! too, and must wait in Postgres as well: `pg_stat_activity` reports a
//! `Lock` wait, `pg_locks` an ungranted lock, and `pg_blocking_pids` a
//! holder that is one of the replay's requests. It is then *parked*:
//! left waiting in Postgres, or withdrawn and sent again at the model's
//! retry (see `always_withdrawn` for which, and why). A deadlock victim
//! is the request the model picked: only its connection has a short
//! `deadlock_timeout`. After every operation the replay waits until each
//! statement still in flight has answered or waits again, so the server
//! never runs two things at once and a schedule sends the same statements
//! in the same order every time.
//!
//! The cache and Stripe stay the in-process models on both sides; each
//! operation starts from the model's clocks and id generator. What is
//! compared is the database: every operation's answer, the verdict, and
//! the committed customers at the end. The first disagreement stops the
//! comparison (the two sides no longer share a past) and is reported.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use cusim::backend::mem::ids::IdGen;
use cusim::backend::mem::{Fault, RequestId};
use cusim::backend::{DbError, DeductTarget, Op, Outcome, Point};
use cusim::flow::Strategy;
use cusim::model::FullCustomer;
use cusim_pg::{schema, services, PgConn, Shared};
use serde::Serialize;
use sqlx::{Connection, PgConnection};
use tokio::task::{JoinHandle, LocalSet};

use crate::oracle::{self, Invariant, Observation, State};
use crate::scenario::Scenario;
use crate::schedule::Schedule;
use crate::stepper::{
    execute_shadowed, Execution, ModelResult, Prepared, Replay, ReplayError, RunOptions, Services, Shadow,
};

/// How long a statement may take to answer or to start waiting before the
/// replay gives up on it (a real wait the model does not have).
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How often the replay looks at a statement in flight.
const POLL: Duration = Duration::from_millis(1);
/// The deadlock timeout of every connection but a deadlock victim's: long,
/// so that only the victim the model chose looks for the cycle.
const PATIENT: &str = "SET deadlock_timeout = '60s'";
/// The victim's: it finds the cycle almost at once.
const IMPATIENT: &str = "SET deadlock_timeout = '10ms'";

/// Why a gated replay could not run (not a disagreement: those are results).
#[derive(Debug, thiserror::Error)]
pub enum PgReplayError {
    #[error(transparent)]
    Setup(#[from] schema::SetupError),
    #[error("the scenario cannot be prepared: {0}")]
    Prepare(#[from] crate::stepper::SetupError),
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PgReplayError::Server(format!("cannot start the async runtime: {e}")))?;
    let local = LocalSet::new();
    let database =
        local.block_on(&runtime, schema::create(url, schema_name, strategy, &scenario.catalog()))?;
    let result = (|| {
        let monitor = local
            .block_on(&runtime, PgConnection::connect_with(&database.options))
            .map_err(|e| PgReplayError::Server(format!("cannot open the monitoring connection: {e}")))?;
        let mut shadow = PgShadow {
            runtime: &runtime,
            local: &local,
            inner: Inner {
                database: database.clone(),
                shared: services(0, strategy.constraints()),
                monitor,
                sessions: BTreeMap::new(),
                compared: 0,
                waits: 0,
                deadlocks: 0,
                divergence: None,
                last_wait: String::new(),
                failure: None,
            },
        };
        let prepared = Prepared::new_shadowed(scenario, strategy, &mut shadow)?;
        let execution = execute_shadowed(&prepared, &mut Replay::new(schedule), options, &mut shadow)?;
        if let Some(failure) = shadow.inner.failure.take() {
            return Err(PgReplayError::Server(failure));
        }
        let committed = local.block_on(&runtime, shadow.inner.committed())?;
        let model_state = State::of_world(&execution.world);
        let state_agrees = committed == model_state.customers;
        let model_verdict = verdict(&prepared, &execution, model_state.clone());
        let postgres_state = {
            let services = shadow.inner.shared.borrow();
            State {
                customers: committed,
                cache: services.cache.entries().map(|(k, v)| (k.clone(), v.clone())).collect(),
                stripe: services.stripe.customers().to_vec(),
                breaches: model_state.breaches.clone(),
            }
        };
        let postgres_verdict = verdict(&prepared, &execution, postgres_state);
        let Inner { compared, waits, deadlocks, divergence, .. } = shadow.inner;
        let report = PgReplay {
            compared,
            waits,
            deadlocks,
            divergence,
            model_verdict,
            postgres_verdict,
            state_agrees,
        };
        Ok((execution, report))
    })();
    local.block_on(&runtime, schema::drop(&database));
    result
}

fn verdict(prepared: &Prepared, execution: &Execution, state: State) -> Vec<Invariant> {
    let mut found: Vec<Invariant> = oracle::check_observation(&Observation {
        scenario: &prepared.scenario,
        outcomes: &execution.outcomes,
        settles: &execution.settles,
        created_by: &execution.created_by,
        end: &execution.end,
        state,
    })
    .into_iter()
    .map(|v| v.invariant)
    .collect();
    found.sort();
    found.dedup();
    found
}

struct PgShadow<'r> {
    runtime: &'r tokio::runtime::Runtime,
    local: &'r LocalSet,
    inner: Inner,
}

/// One request's connection, and its statement in flight, if any.
struct Session {
    conn: Rc<PgConn>,
    pid: i32,
    /// Whether this role may set `deadlock_timeout` (a superuser).
    tunable: bool,
    /// A row-lock wait left to Postgres: its answer comes when the holder
    /// ends, and is collected at the model's retry.
    in_flight: Option<JoinHandle<Option<Outcome>>>,
    /// A withdrawn insert's id generator, as it was when first sent: the
    /// retry draws the same id, as the model's does.
    withdrawn_ids: Option<IdGen>,
}

/// When a transaction ends, Postgres wakes everything waiting for it at
/// once, and the waiters race; the model retries them first come, first
/// served. To make Postgres follow the model's order, a waiting statement
/// is *withdrawn* (cancelled and undone under a savepoint) once Postgres
/// shows it waiting, and sent again at the model's retry. An insert
/// re-checks its unique index from scratch after a wait anyway, so
/// inserts are always withdrawn. Any other statement is left waiting in
/// Postgres (where it re-checks only the row it waited for, and keeps the
/// locks it took before waiting, as the model has it) when nobody else
/// waits: being the first waiter, it is also the first the model retries.
/// A statement that starts waiting behind another one is withdrawn.
fn always_withdrawn(op: &Op) -> bool {
    matches!(
        op,
        Op::Insert { .. }
            | Op::AttachDefault { .. }
            | Op::Deduct { target: DeductTarget::Db, .. }
            | Op::SyncUsage { .. }
    )
}

struct Inner {
    database: schema::Database,
    shared: Shared,
    monitor: PgConnection,
    sessions: BTreeMap<RequestId, Session>,
    compared: usize,
    waits: usize,
    deadlocks: usize,
    divergence: Option<Divergence>,
    /// What the last statement seen waiting waited for.
    last_wait: String,
    /// The server failed in a way that is no disagreement (a lost
    /// connection): the replay cannot go on.
    failure: Option<String>,
}

/// A statement in flight: it answered, it waits for a lock, or it gave
/// no sign within [`ANSWER_WITHIN`]. (Short-lived, one at a time: its
/// size does not matter.)
#[allow(clippy::large_enum_variant)]
enum InFlight {
    /// `None`: the statement was withdrawn.
    Answered(Option<Outcome>),
    Waiting(JoinHandle<Option<Outcome>>),
    Silent(JoinHandle<Option<Outcome>>),
}

impl Shadow for PgShadow<'_> {
    fn op(
        &mut self,
        request: RequestId,
        op: &Op,
        fault: Option<Fault>,
        before: &Services,
        model: ModelResult<'_>,
    ) {
        if self.inner.divergence.is_some() || self.inner.failure.is_some() {
            return;
        }
        let follow = self.inner.follow(request, op, fault, before, model);
        if let Err(failure) = self.local.block_on(self.runtime, follow) {
            self.inner.failure = Some(failure);
        }
    }

    fn crash(&mut self, request: RequestId) {
        if self.inner.divergence.is_some() || self.inner.failure.is_some() {
            return;
        }
        if let Err(failure) = self.local.block_on(self.runtime, self.inner.crash(request)) {
            self.inner.failure = Some(failure);
        }
    }
}

impl Inner {
    async fn session(&mut self, request: RequestId) -> Result<&mut Session, String> {
        if !self.sessions.contains_key(&request) {
            let conn = PgConn::connect(&self.database.options, Rc::clone(&self.shared), request)
                .await
                .map_err(|e| format!("cannot connect request {request}: {e}"))?;
            let pid = conn.backend_pid().await.map_err(|e| format!("request {request}: {e}"))?;
            // Only a role that may change it can; without, the server's own
            // timeout applies, and a deadlock cannot be replayed.
            let tunable = sqlx::query(PATIENT).execute(&mut *conn.raw().await).await.is_ok();
            let session = Session { conn: Rc::new(conn), pid, tunable, in_flight: None, withdrawn_ids: None };
            self.sessions.insert(request, session);
        }
        Ok(self.sessions.get_mut(&request).expect("just inserted"))
    }

    async fn follow(
        &mut self,
        request: RequestId,
        op: &Op,
        fault: Option<Fault>,
        before: &Services,
        model: ModelResult<'_>,
    ) -> Result<(), String> {
        let victim = matches!(model, ModelResult::DeadlockVictim);
        let session = self.session(request).await?;
        let pid = session.pid;
        let someone_waits = self
            .sessions
            .iter()
            .any(|(r, s)| *r != request && (s.in_flight.is_some() || s.withdrawn_ids.is_some()));
        let someone_withdrawn = self.sessions.iter().any(|(r, s)| *r != request && s.withdrawn_ids.is_some());
        let session = self.sessions.get_mut(&request).expect("connected");
        if victim {
            // Postgres picks the model's victim only if the cycle is really
            // there (no member withdrawn) and only this statement looks for
            // it soon (it is sent now, with a short timeout).
            let why = if someone_withdrawn {
                Some("the cycle includes a statement the replay withdrew, so it never forms on the server")
            } else if session.in_flight.is_some() {
                Some("the victim's statement was already waiting, with the long deadlock timeout")
            } else if !session.tunable {
                Some("this role may not SET deadlock_timeout (a superuser may), so Postgres may pick another victim")
            } else {
                None
            };
            if let Some(why) = why {
                self.compared += 1;
                self.divergence = Some(Divergence {
                    request,
                    point: op.point(),
                    op: op.summary(),
                    model: "deadlock victim (40P01)".into(),
                    postgres: format!("not replayable: {why}"),
                });
                return Ok(());
            }
        }
        // Only a fresh send can be withdrawn: a statement already waiting
        // in Postgres was sent to stay.
        let gate = !victim && session.in_flight.is_none() && (always_withdrawn(op) || someone_waits);
        let mut sent_ids = None;
        let handle = match session.in_flight.take() {
            Some(handle) => handle,
            None => {
                let ids = session.withdrawn_ids.take().unwrap_or_else(|| before.ids.clone());
                {
                    let mut services = self.shared.borrow_mut();
                    services.clock_ms = before.now_ms;
                    services.seq = before.seq;
                    services.ids = ids.clone();
                }
                sent_ids = Some(ids);
                let session = self.sessions.get_mut(&request).expect("connected");
                if victim {
                    let _ = sqlx::query(IMPATIENT).execute(&mut *session.conn.raw().await).await;
                }
                let conn = Rc::clone(&session.conn);
                let op = op.clone();
                tokio::task::spawn_local(async move {
                    if gate {
                        conn.apply_withdrawable(&op, fault).await
                    } else {
                        Some(conn.apply(&op, fault).await)
                    }
                })
            }
        };
        let mut state = self.resolve(pid, handle, victim).await?;
        if gate {
            if let InFlight::Waiting(handle) = state {
                state = self.withdraw(pid, handle).await?;
            }
        }
        self.compared += 1;
        let disagree = |postgres: String, model: String| Divergence {
            request,
            point: op.point(),
            op: op.summary(),
            model,
            postgres,
        };
        match (model, state) {
            (ModelResult::Waits, InFlight::Answered(None)) => {
                self.waits += 1;
                self.sessions.get_mut(&request).expect("connected").withdrawn_ids = sent_ids;
            }
            (model, InFlight::Answered(None)) => {
                let model = match model {
                    ModelResult::Done(expected) => expected.summary(),
                    _ => "deadlock victim (40P01)".into(),
                };
                self.divergence = Some(disagree(self.last_wait.clone(), model));
            }
            (ModelResult::Done(expected), InFlight::Answered(Some(actual))) => {
                if *expected != actual {
                    self.divergence = Some(disagree(actual.summary(), expected.summary()));
                }
            }
            (ModelResult::Done(expected), InFlight::Waiting(handle)) => {
                handle.abort();
                self.divergence = Some(disagree(self.last_wait.clone(), expected.summary()));
            }
            (ModelResult::Waits, InFlight::Waiting(handle)) => {
                self.waits += 1;
                self.sessions.get_mut(&request).expect("connected").in_flight = Some(handle);
            }
            (ModelResult::Waits, InFlight::Answered(Some(actual))) => {
                self.divergence = Some(disagree(actual.summary(), "waits for a lock".into()));
            }
            (ModelResult::DeadlockVictim, InFlight::Answered(Some(actual))) => {
                let conn = Rc::clone(&self.sessions[&request].conn);
                let _ = sqlx::query(PATIENT).execute(&mut *conn.raw().await).await;
                if actual == (Outcome::DbError { error: DbError::Deadlock }) {
                    self.deadlocks += 1;
                } else {
                    self.divergence = Some(disagree(actual.summary(), "deadlock victim (40P01)".into()));
                }
            }
            (ModelResult::DeadlockVictim, InFlight::Waiting(handle) | InFlight::Silent(handle)) => {
                handle.abort();
                self.divergence = Some(disagree(self.last_wait.clone(), "deadlock victim (40P01)".into()));
            }
            (model, InFlight::Silent(handle)) => {
                handle.abort();
                let model = match model {
                    ModelResult::Done(expected) => expected.summary(),
                    _ => "waits for a lock".into(),
                };
                let silent = format!("gave no answer within {} s", ANSWER_WITHIN.as_secs());
                self.divergence = Some(disagree(silent, model));
            }
        }
        self.settle_others(request).await
    }

    /// Cancels a withdrawable statement that waits for a lock, and waits
    /// for it to be undone.
    async fn withdraw(&mut self, pid: i32, handle: JoinHandle<Option<Outcome>>) -> Result<InFlight, String> {
        sqlx::query("SELECT pg_cancel_backend($1)")
            .bind(pid)
            .execute(&mut self.monitor)
            .await
            .map_err(|e| format!("cannot withdraw a waiting statement: {e}"))?;
        match self.resolve(pid, handle, true).await? {
            InFlight::Waiting(handle) | InFlight::Silent(handle) => Ok(InFlight::Silent(handle)),
            answered => Ok(answered),
        }
    }

    /// Waits until the statement answers, or (unless `to_the_end`) until
    /// Postgres shows it waiting for a lock.
    async fn resolve(
        &mut self,
        pid: i32,
        mut handle: JoinHandle<Option<Outcome>>,
        to_the_end: bool,
    ) -> Result<InFlight, String> {
        let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
        loop {
            if handle.is_finished() {
                let outcome = (&mut handle).await.map_err(|e| format!("a statement task failed: {e}"))?;
                return Ok(InFlight::Answered(outcome));
            }
            if !to_the_end && self.waits_for_lock(pid).await? {
                return Ok(InFlight::Waiting(handle));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(InFlight::Silent(handle));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Whether backend `pid` is waiting for a lock it has not been
    /// granted; if so, what it waits for and who holds it.
    async fn waits_for_lock(&mut self, pid: i32) -> Result<bool, String> {
        let row: Option<(String, Vec<i32>)> = sqlx::query_as(
            "SELECT a.wait_event, pg_blocking_pids(a.pid) FROM pg_stat_activity a \
             WHERE a.pid = $1 AND a.wait_event_type = 'Lock' \
             AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted)",
        )
        .bind(pid)
        .fetch_optional(&mut self.monitor)
        .await
        .map_err(|e| format!("cannot read pg_stat_activity: {e}"))?;
        let Some((event, blockers)) = row else { return Ok(false) };
        let holders: Vec<String> = blockers
            .iter()
            .filter_map(|b| self.sessions.iter().find(|(_, s)| s.pid == *b))
            .map(|(request, _)| format!("request {request}"))
            .collect();
        if holders.is_empty() {
            // Held by something outside the replay (autovacuum truncating a
            // table, say): it lets go on its own, and the model knows
            // nothing of it. Not a wait the model could have.
            return Ok(false);
        }
        self.last_wait = format!("waits for a lock ({event}) held by {}", holders.join(", "));
        Ok(true)
    }

    /// Lets every other statement in flight run until it answers (its
    /// answer waits for the model's retry) or waits again.
    async fn settle_others(&mut self, except: RequestId) -> Result<(), String> {
        let others: Vec<RequestId> = self
            .sessions
            .iter()
            .filter(|(r, s)| **r != except && s.in_flight.is_some())
            .map(|(r, _)| *r)
            .collect();
        for request in others {
            let session = self.sessions.get_mut(&request).expect("listed");
            let pid = session.pid;
            let handle = session.in_flight.take().expect("listed");
            let state = self.resolve(pid, handle, false).await?;
            let handle = match state {
                InFlight::Waiting(handle) | InFlight::Silent(handle) => handle,
                InFlight::Answered(outcome) => {
                    let outcome = Rc::new(RefCell::new(Some(outcome)));
                    tokio::task::spawn_local(async move { outcome.borrow_mut().take().expect("taken once") })
                }
            };
            self.sessions.get_mut(&request).expect("listed").in_flight = Some(handle);
        }
        Ok(())
    }

    async fn crash(&mut self, request: RequestId) -> Result<(), String> {
        let Some(session) = self.sessions.remove(&request) else { return Ok(()) };
        if let Some(handle) = session.in_flight {
            handle.abort();
        }
        let pid = session.pid;
        drop(session.conn);
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&mut self.monitor)
            .await
            .map_err(|e| format!("cannot end the crashed request's backend: {e}"))?;
        let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
        loop {
            let alive: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)")
                    .bind(pid)
                    .fetch_one(&mut self.monitor)
                    .await
                    .map_err(|e| format!("cannot read pg_stat_activity: {e}"))?;
            if !alive {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("the crashed request's backend {pid} did not end"));
            }
            tokio::time::sleep(POLL).await;
        }
        self.settle_others(request).await
    }

    /// The committed customers, as a fresh connection reads them.
    async fn committed(&mut self) -> Result<Vec<FullCustomer>, PgReplayError> {
        let reader = PgConn::connect(&self.database.options, Rc::clone(&self.shared), usize::MAX)
            .await
            .map_err(|e| PgReplayError::Server(format!("cannot read back the final state: {e}")))?;
        let customers = schema::committed(&reader)
            .await
            .map_err(|e| PgReplayError::Server(format!("cannot read back the final state: {e}")))?;
        Ok(customers)
    }
}
