//! The Postgres [`Shadow`]: each request's connection, the statements in
//! flight, and how a statement the model says must wait is seen waiting
//! in Postgres, left there or withdrawn, and collected at the model's
//! retry.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use cusim::backend::mem::ids::IdGen;
use cusim::backend::mem::{Fault, RequestId};
use cusim::backend::{CacheKey, DbError, Op, Outcome};
use cusim::model::FullCustomer;
use cusim_pg::{schema, PgConn, Shared};
use sqlx::PgConnection;
use tokio::task::{JoinHandle, LocalSet};

use super::{Divergence, PgReplayError};
use crate::drive::stepper::{ModelResult, Services, Shadow};

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

pub(super) struct PgShadow<'r> {
    pub(super) runtime: &'r tokio::runtime::Runtime,
    pub(super) local: &'r LocalSet,
    pub(super) inner: Inner,
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

pub(super) struct Inner {
    pub(super) database: schema::Database,
    pub(super) shared: Shared,
    pub(super) monitor: PgConnection,
    sessions: BTreeMap<RequestId, Session>,
    pub(super) compared: usize,
    pub(super) waits: usize,
    pub(super) deadlocks: usize,
    pub(super) divergence: Option<Divergence>,
    /// What the last statement seen waiting waited for.
    pub(super) last_wait: String,
    /// The server failed in a way that is no disagreement (a lost
    /// connection): the replay cannot go on.
    pub(super) failure: Option<String>,
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

    fn evict(&mut self, key: &CacheKey) {
        self.inner.shared.borrow_mut().cache.evict(key);
    }
}

impl Inner {
    pub(super) fn new(database: schema::Database, shared: Shared, monitor: PgConnection) -> Inner {
        Inner {
            database,
            shared,
            monitor,
            sessions: BTreeMap::new(),
            compared: 0,
            waits: 0,
            deadlocks: 0,
            divergence: None,
            last_wait: String::new(),
            failure: None,
        }
    }

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
        let gate = !victim
            && session.in_flight.is_none()
            && (cusim_pg::withdrawn_while_waiting(op) || someone_waits);
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
    pub(super) async fn committed(&mut self) -> Result<Vec<FullCustomer>, PgReplayError> {
        let reader = PgConn::connect(&self.database.options, Rc::clone(&self.shared), usize::MAX)
            .await
            .map_err(|e| PgReplayError::Server(format!("cannot read back the final state: {e}")))?;
        let customers = schema::committed(&reader)
            .await
            .map_err(|e| PgReplayError::Server(format!("cannot read back the final state: {e}")))?;
        Ok(customers)
    }
}
