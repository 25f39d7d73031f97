//! The Postgres [`Shadow`]: each request's connection, the statements in
//! flight, and how a statement the model says must wait is seen waiting
//! in Postgres, held there, and let go when the model runs it again.
//!
//! A statement Postgres shows waiting for a lock is *held*: its backend
//! is paused (`SIGSTOP`). When the transaction it waits for ends, Postgres
//! grants it the lock (or wakes it to look again), but it cannot move on
//! until the model runs it again, when it is resumed (`SIGCONT`). So
//! every order the model may choose after a release (a woken waiter
//! first, another one, the releasing request or anybody else) is the
//! order Postgres follows, and each statement keeps Postgres's own
//! semantics (the locks it took before waiting, the rows it found, the
//! id and time it was sent with). A deadlock victim is the member of the
//! cycle the model picked: Postgres's victim is the waiter whose
//! `deadlock_timeout` fires first and finds the cycle, and only the
//! member let go can look; the others, held, cannot.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use cusim::backend::mem::{Fault, RequestId};
use cusim::backend::{CacheKey, DbError, Op, Outcome};
use cusim::model::FullCustomer;
use cusim_pg::{cache_entries, cache_evict, schema, PgConn, Shared};
use sqlx::PgConnection;
use tokio::task::{JoinHandle, LocalSet};

use super::{Divergence, PgReplayError};
use crate::drive::stepper::{ModelResult, Services, Shadow};
use crate::judge::State;

/// How long a statement may take to answer or to start waiting before the
/// replay gives up on it (a real wait the model does not have).
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How often the replay looks at a statement in flight.
const POLL: Duration = Duration::from_millis(1);
/// The deadlock timeout of every connection (Postgres's default): a
/// statement seen waiting is held long before it could look for a cycle,
/// and a victim let go looks as soon as it runs again, its timer having
/// fired while it was held.
const DEADLOCK_TIMEOUT: &str = "SET deadlock_timeout = '1s'";

pub(super) struct PgShadow<'r> {
    pub(super) runtime: &'r tokio::runtime::Runtime,
    pub(super) local: &'r LocalSet,
    pub(super) inner: Inner,
}

/// One request's connection, and its statement in flight, if any.
struct Session {
    conn: Rc<PgConn>,
    pid: i32,
    /// A statement waiting in Postgres, its backend held: its answer is
    /// collected when the model runs it again.
    in_flight: Option<JoinHandle<Option<Outcome>>>,
}

/// The requests' sessions. Dropped, whatever ended the replay, they let
/// every held backend go: none stays paused.
#[derive(Default)]
struct Sessions(BTreeMap<RequestId, Session>);

impl Drop for Sessions {
    fn drop(&mut self) {
        for session in self.0.values() {
            if session.in_flight.is_some() {
                let _ = let_go(session.pid);
            }
        }
    }
}

pub(super) struct Inner {
    pub(super) database: schema::Database,
    pub(super) shared: Shared,
    pub(super) monitor: PgConnection,
    sessions: Sessions,
    /// Connections kept from earlier runs on the schema, idle, each taken
    /// before a new one is opened (see `kept`).
    idle: Vec<PgConnection>,
    /// Set by the replay when it ended with every operation compared and
    /// no failure: then its connections are all idle, and may be kept.
    pub(super) settled: bool,
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
        if self.inner.divergence.is_some() || self.inner.failure.is_some() {
            return;
        }
        let evicted = self.local.block_on(self.runtime, cache_evict(&self.inner.shared, key));
        if let Err(error) = evicted {
            self.inner.failure = Some(format!("Redis failed to evict {key}: {error}"));
        }
    }
}

impl Inner {
    pub(super) fn new(
        database: schema::Database,
        shared: Shared,
        monitor: PgConnection,
        idle: Vec<PgConnection>,
    ) -> Inner {
        Inner {
            database,
            shared,
            monitor,
            sessions: Sessions::default(),
            idle,
            settled: false,
            compared: 0,
            waits: 0,
            deadlocks: 0,
            divergence: None,
            last_wait: String::new(),
            failure: None,
        }
    }

    async fn session(&mut self, request: RequestId) -> Result<&mut Session, String> {
        if !self.sessions.0.contains_key(&request) {
            let (conn, pid) = self.connection(request).await?;
            // Only a role that may change it can; the server's own timeout
            // (1 s unless configured otherwise) serves as well.
            let _ = sqlx::query(DEADLOCK_TIMEOUT).execute(&mut *conn.raw().await).await;
            let session = Session { conn: Rc::new(conn), pid, in_flight: None };
            self.sessions.0.insert(request, session);
        }
        Ok(self.sessions.0.get_mut(&request).expect("just inserted"))
    }

    /// A connection for `request`, and its backend's process id: an idle
    /// one kept from an earlier run (one the server has closed since is
    /// dropped), else a new one.
    async fn connection(&mut self, request: usize) -> Result<(PgConn, i32), String> {
        while let Some(idle) = self.idle.pop() {
            let conn = PgConn::over(idle, Rc::clone(&self.shared), request);
            if let Ok(pid) = conn.backend_pid().await {
                return Ok((conn, pid));
            }
        }
        let conn = PgConn::connect(&self.database.options, Rc::clone(&self.shared), request)
            .await
            .map_err(|e| format!("cannot connect request {request}: {e}"))?;
        let pid = conn.backend_pid().await.map_err(|e| format!("request {request}: {e}"))?;
        Ok((conn, pid))
    }

    /// The replay's connections to keep for the next run on the schema:
    /// none unless it `settled`, and of those only the ones with no
    /// statement in flight and no transaction open (they hold nothing).
    /// The backends of the rest are ended, and waited for until gone,
    /// before any is kept: a held statement let go, or one waiting on a
    /// transaction that rolls back only when its backend notices its
    /// connection closed, could otherwise commit its row into the next
    /// run. If they cannot be ended, nothing is kept.
    pub(super) async fn into_idle(self) -> Vec<PgConnection> {
        let Inner { mut monitor, mut sessions, mut idle, settled, .. } = self;
        if !settled {
            return Vec::new();
        }
        let mut ended = Vec::new();
        for (_, Session { conn, pid, in_flight }) in std::mem::take(&mut sessions.0) {
            let held = in_flight.is_some();
            let kept = match in_flight {
                Some(handle) => {
                    handle.abort();
                    None
                }
                None => Rc::try_unwrap(conn).ok().and_then(PgConn::into_connection),
            };
            match kept {
                Some(conn) => idle.push(conn),
                None => ended.push((pid, held)),
            }
        }
        if end_backends(&mut monitor, &ended).await.is_err() {
            return Vec::new();
        }
        idle.push(monitor);
        idle
    }

    /// Sends `op` for `request`, starting from the model's services.
    fn send(
        &mut self,
        request: RequestId,
        op: &Op,
        fault: Option<Fault>,
        before: &Services,
    ) -> JoinHandle<Option<Outcome>> {
        {
            let mut services = self.shared.borrow_mut();
            services.clock_ms = before.now_ms;
            services.seq = before.seq;
            services.ids = before.ids.clone();
        }
        let conn = Rc::clone(&self.sessions.0[&request].conn);
        let op = op.clone();
        tokio::task::spawn_local(async move { Some(conn.apply(&op, fault).await) })
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
        let held = session.in_flight.take();
        let disagree = |postgres: String, model: String| Divergence {
            request,
            point: op.point(),
            op: op.summary(),
            model,
            postgres,
        };
        let handle = match held {
            None if victim => {
                self.compared += 1;
                let postgres = "not replayable: the victim's statement is not waiting on the server".into();
                self.divergence = Some(disagree(postgres, "deadlock victim (40P01)".into()));
                return Ok(());
            }
            None => self.send(request, op, fault, before),
            Some(handle) => {
                let_go(pid)?;
                handle
            }
        };
        let state = self.resolve(pid, handle, victim).await?;
        // A Redis command failed that no fault explains: no disagreement,
        // the replay cannot go on.
        if let Some(failure) = self.shared.borrow_mut().cache_failure.take() {
            return Err(failure);
        }
        self.compared += 1;
        match (model, state) {
            (ModelResult::Waits, InFlight::Waiting(handle)) => {
                hold(pid)?;
                self.waits += 1;
                self.sessions.0.get_mut(&request).expect("connected").in_flight = Some(handle);
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
            (ModelResult::Waits, InFlight::Answered(Some(actual))) => {
                self.divergence = Some(disagree(actual.summary(), "waits for a lock".into()));
            }
            (ModelResult::DeadlockVictim, InFlight::Answered(Some(actual))) => {
                if actual == (Outcome::DbError { error: DbError::Deadlock }) {
                    self.deadlocks += 1;
                } else {
                    self.divergence = Some(disagree(actual.summary(), "deadlock victim (40P01)".into()));
                }
            }
            (ModelResult::DeadlockVictim, InFlight::Waiting(handle)) => {
                handle.abort();
                self.divergence = Some(disagree(self.last_wait.clone(), "deadlock victim (40P01)".into()));
            }
            (model, InFlight::Answered(None)) => {
                self.divergence = Some(disagree("was cancelled".into(), describe(model)));
            }
            (model, InFlight::Silent(handle)) => {
                handle.abort();
                let silent = format!("gave no answer within {} s", ANSWER_WITHIN.as_secs());
                self.divergence = Some(disagree(silent, describe(model)));
            }
        }
        Ok(())
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
            // The answer, as soon as it comes, within a poll's time; most
            // statements answer long before it, and Postgres is asked
            // whether one waits only when it has not.
            if let Ok(joined) = tokio::time::timeout(POLL, &mut handle).await {
                let outcome = joined.map_err(|e| format!("a statement task failed: {e}"))?;
                return Ok(InFlight::Answered(outcome));
            }
            if !to_the_end && self.waits_for_lock(pid).await? {
                return Ok(InFlight::Waiting(handle));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(InFlight::Silent(handle));
            }
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
            .filter_map(|b| self.sessions.0.iter().find(|(_, s)| s.pid == *b))
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

    async fn crash(&mut self, request: RequestId) -> Result<(), String> {
        let Some(Session { conn, pid, in_flight }) = self.sessions.0.remove(&request) else { return Ok(()) };
        let held = in_flight.is_some();
        if let Some(handle) = in_flight {
            handle.abort();
        }
        drop(conn);
        end_backends(&mut self.monitor, &[(pid, held)])
            .await
            .map_err(|e| format!("the crashed request's backend: {e}"))
    }

    /// What the servers hold at the end: the committed customers, the live
    /// cache entries, and the services' Stripe customers and breaches.
    pub(super) async fn final_state(&mut self) -> Result<State, String> {
        let customers = self.committed().await.map_err(|e| e.to_string())?;
        let cache = cache_entries(&self.shared)
            .await
            .map_err(|e| format!("Redis: cannot read back the cache: {e}"))?;
        let services = self.shared.borrow();
        Ok(State {
            customers,
            cache,
            stripe: services.stripe.customers().to_vec(),
            breaches: services.breaches.clone(),
        }
        .canonical())
    }

    /// The committed customers, as a connection of no request reads them.
    pub(super) async fn committed(&mut self) -> Result<Vec<FullCustomer>, PgReplayError> {
        let cannot = |e: &dyn std::fmt::Display| {
            PgReplayError::Server(format!("cannot read back the final state: {e}"))
        };
        let (reader, _) = self.connection(usize::MAX).await.map_err(|e| cannot(&e))?;
        let customers = schema::committed(&reader).await.map_err(|e| cannot(&e))?;
        self.idle.extend(reader.into_connection());
        Ok(customers)
    }
}

/// Ends the backends `ended` (each a process id, and whether it is held)
/// and waits until they are gone, within [`ANSWER_WITHIN`]: a crashed
/// request's, the ones a settled replay does not keep. A held backend is
/// let go after it is told to end, so the first thing it does is end: its
/// statement cannot run on and commit.
async fn end_backends(monitor: &mut PgConnection, ended: &[(i32, bool)]) -> Result<(), String> {
    if ended.is_empty() {
        return Ok(());
    }
    let pids: Vec<i32> = ended.iter().map(|(pid, _)| *pid).collect();
    let told = sqlx::query("SELECT pg_terminate_backend(pid) FROM unnest($1::int4[]) AS pid")
        .bind(&pids)
        .execute(&mut *monitor)
        .await
        .map_err(|e| format!("cannot end backends {pids:?}: {e}"));
    for (pid, _) in ended.iter().filter(|(_, held)| *held) {
        let_go(*pid)?;
    }
    told?;
    let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
    loop {
        let alive: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = ANY($1))")
                .bind(&pids)
                .fetch_one(&mut *monitor)
                .await
                .map_err(|e| format!("cannot read pg_stat_activity: {e}"))?;
        if !alive {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("backends {pids:?} did not end"));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn describe(model: ModelResult<'_>) -> String {
    match model {
        ModelResult::Done(expected) => expected.summary(),
        ModelResult::Waits => "waits for a lock".into(),
        ModelResult::DeadlockVictim => "deadlock victim (40P01)".into(),
    }
}

/// Pauses backend `pid` (`SIGSTOP`), a process of the server on this
/// machine: a statement waiting for a lock is held there.
fn hold(pid: i32) -> Result<(), String> {
    signal(pid, "-STOP")
}

/// Resumes a held backend (`SIGCONT`).
fn let_go(pid: i32) -> Result<(), String> {
    signal(pid, "-CONT")
}

fn signal(pid: i32, signal: &str) -> Result<(), String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "postgres" {
        return Err(format!(
            "backend {pid} is not a process on this machine: the gated replay holds a waiting statement by \
             pausing its backend, so it needs the server on the machine it runs on"
        ));
    }
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .map_err(|e| format!("cannot run kill {signal} {pid}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "kill {signal} {pid} failed ({status}): the replay may not signal the server's backends"
        ));
    }
    Ok(())
}
