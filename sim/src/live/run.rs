//! One schedule on the wire: the scenario's requests sent to the real
//! server while the proxies hold every statement and command, one mover
//! at a time.
//!
//! Each decision lets exactly one thing go: a request's arrival (its HTTP
//! call is sent), the step it is held at, or the reply of a statement that
//! had waited on a lock. Then the driver waits until the system is quiet
//! again: a new held step (it belongs to the request that just moved,
//! whatever connection of the server's pool carried it), that request's
//! HTTP answer, or a quiet period with nothing new. A statement still
//! unanswered is looked up every few milliseconds in `pg_stat_activity`
//! by its backend's PID: if it waits on a lock, its request is parked,
//! and the reply that comes once the lock is released is held at the
//! wire and let go as a decision of its own, so the wake order is the
//! scheduler's too; if it does not, it still runs, and the driver waits
//! for its answer (up to the request timeout) before anyone else moves.
//! A step that belongs to no request (or comes right after a request's
//! answer) is the server's own work: a mover of its own, numbered one past
//! the last request.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use cusim::backend::Point;
use cusim_wire::{Event, Held, HeldReply, Proxy, Release, StepInfo, Store};
use tokio::sync::mpsc;

use crate::check::client::{Client, Target};
use crate::check::history::{self, Sender};
use crate::check::profile::Profile;
use crate::check::workload::Call;
use crate::drive::stepper::{Chooser, View};
use crate::input::scenario::FaultKind;
use crate::input::schedule::{Schedule, Token};

use super::trace::Line;

/// How long after a request's answer a new step is taken for the
/// server's own work (see `Driver::after_answer`).
const AFTER_ANSWER: Duration = Duration::from_millis(3);

/// How often a statement still unanswered is looked up in
/// `pg_stat_activity` for a lock wait.
const LOCK_POLL: Duration = Duration::from_millis(5);

/// The proxies a driver lets steps through, and what they report.
pub struct Wire {
    pub postgres: Proxy,
    pub redis: Option<Proxy>,
    pub events: mpsc::UnboundedReceiver<Event>,
}

impl Wire {
    fn proxy(&self, store: Store) -> Option<&Proxy> {
        match store {
            Store::Postgres => Some(&self.postgres),
            Store::Redis => self.redis.as_ref(),
        }
    }

    /// Holds every step from now on, or lets them all through.
    pub fn set_gated(&self, gated: bool) {
        self.postgres.set_gated(gated);
        if let Some(redis) = &self.redis {
            redis.set_gated(gated);
        }
    }
}

/// How the driver reaches the server and the database.
pub struct Driver {
    pub wire: Wire,
    /// A connection straight to the real Postgres (not through the
    /// proxy), to ask whether a backend waits on a lock.
    pub probe: sqlx::PgConnection,
    pub target: Target,
    pub secret_key: String,
    pub profile: Profile,
    pub request_timeout: Duration,
    /// How long nothing new must happen for the system to be quiet.
    pub quiet: Duration,
    /// When the drive began (the histories' clock).
    pub start: Instant,
}

/// Where a request is.
enum Lane {
    /// Not sent yet.
    Waiting,
    /// It just moved; the driver waits for it to be quiet.
    Moving,
    /// Held at a step.
    At(Held),
    /// Its statement waits on a lock inside Postgres.
    Parked { conn: u64 },
    /// The lock was released: its reply is held.
    Woken(HeldReply),
    /// Quiet, yet neither held nor answered (it works on its own).
    Idle,
    /// Answered.
    Done,
}

/// What one decision let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// A request's HTTP call.
    Arrival,
    /// A held step, to this store.
    Step(Store),
    /// The held reply of a statement that had waited on a lock.
    Wake,
}

/// How fault `kind` happens at a step to `store` on the wire, if it can:
/// `db_error` closes a Postgres connection before the statement reaches
/// the server, `cache_down` a Redis one before the command does, and
/// `lost_response` lets the step run and closes the connection instead
/// of relaying its reply.
pub fn wire_fault(kind: FaultKind, store: Store) -> Option<Release> {
    match (kind, store) {
        (FaultKind::DbError, Store::Postgres) | (FaultKind::CacheDown, Store::Redis) => {
            Some(Release::CloseBefore)
        }
        (FaultKind::LostResponse, _) => Some(Release::LoseReply),
        _ => None,
    }
}

/// What one schedule did.
#[derive(Debug)]
pub struct Driven {
    /// The decisions taken, one request number each (with a fault, if
    /// one was injected).
    pub schedule: Schedule,
    /// What each decision let go.
    pub moves: Vec<Move>,
    /// The steps let through, in order.
    pub lines: Vec<Line>,
    /// The calls made and their answers (setup and requests).
    pub events: Vec<history::Event>,
    /// Why a given schedule could not be followed, if it could not.
    pub diverged: Option<String>,
    pub lock_waits: usize,
    /// The requests parked on a lock, in the order they were.
    pub parked: Vec<usize>,
    /// Nothing could move and nothing happened for the request timeout.
    pub stuck: bool,
    /// What the proxies reported failing.
    pub notes: Vec<String>,
}

/// One input the driver waits for.
enum Input {
    Wire(Event),
    Answer(usize, Vec<history::Event>),
}

/// A step: its store, its connection and its number there.
type StepKey = (Store, u64, u64);

/// The state of one schedule in progress.
struct Schedule1 {
    lanes: Vec<Lane>,
    lines: Vec<Line>,
    /// Lines still waiting for their reply, by (store, connection, step).
    open: BTreeMap<StepKey, usize>,
    /// The request that last ran a step on each connection.
    owner: BTreeMap<(Store, u64), usize>,
    /// Each request's last step let through, with its backend's PID.
    last_step: Vec<Option<(StepKey, Option<i32>)>>,
    events: Vec<history::Event>,
    parked: Vec<usize>,
    notes: Vec<String>,
    /// Steps of the server's own work (no request's), in the order they
    /// came: the mover numbered one past the last request lets the first
    /// go.
    server: VecDeque<Held>,
    /// Connections the server is opening (accepted, not yet ready).
    opening: BTreeSet<(Store, u64)>,
}

impl Driver {
    fn since(&self) -> impl Fn(Instant) -> u64 + Send + Sync + Copy + 'static {
        let start = self.start;
        move |at: Instant| at.duration_since(start).as_micros() as u64
    }

    fn client(&self) -> Client {
        Client::new(self.target.clone(), self.secret_key.clone(), self.request_timeout, self.profile)
    }

    /// Sends `calls` one after another with the gate open (seed
    /// customers, the read-back), as `sender`.
    pub async fn send_open(
        &mut self,
        calls: &[Call],
        sender: Sender,
        group: Option<usize>,
    ) -> Vec<history::Event> {
        self.wire.set_gated(false);
        let mut client = self.client();
        let mut events = Vec::new();
        let since = self.since();
        for (step, call) in calls.iter().enumerate() {
            crate::check::perform(&mut client, call, group, sender, step, &since, &mut events).await;
        }
        events
    }

    /// Throws away what the proxies reported so far (between schedules).
    pub fn drain(&mut self) {
        while let Ok(event) = self.wire.events.try_recv() {
            release_at_once(event);
        }
    }

    /// Runs `requests` (already made fresh) as `chooser` decides.
    pub async fn drive(&mut self, requests: &[Call], chooser: &mut dyn Chooser) -> Driven {
        let n = requests.len();
        let mut s = Schedule1 {
            lanes: (0..n).map(|_| Lane::Waiting).collect(),
            lines: Vec::new(),
            open: BTreeMap::new(),
            owner: BTreeMap::new(),
            last_step: vec![None; n],
            events: Vec::new(),
            parked: Vec::new(),
            notes: Vec::new(),
            server: VecDeque::new(),
            opening: BTreeSet::new(),
        };
        let (answer_tx, mut answers) = mpsc::unbounded_channel::<(usize, Vec<history::Event>)>();
        let mut tokens = Vec::new();
        let mut diverged = None;
        let mut stuck = false;
        let mut last = None;
        let mut moves = Vec::new();
        self.wire.set_gated(true);
        loop {
            // Once every request is answered, the server's own work is not
            // scheduled (it goes through below).
            if s.lanes.iter().all(|l| matches!(l, Lane::Done)) {
                break;
            }
            let mut runnable: Vec<usize> = (0..n)
                .filter(|&r| matches!(s.lanes[r], Lane::Waiting | Lane::At(_) | Lane::Woken(_)))
                .collect();
            if !s.server.is_empty() {
                runnable.push(n);
            }
            if runnable.is_empty() {
                // A request works on its own, or waits on a lock: wait for news.
                match tokio::time::timeout(self.request_timeout, self.next(&mut answers)).await {
                    Ok(input) => self.take_in(&mut s, input, None),
                    Err(_) => {
                        stuck = true;
                        break;
                    }
                }
                continue;
            }
            // A request held at a step has arrived; the choosers ask no
            // more of where it is than that, so the store it waits at
            // stands in for a model point.
            let parked_at: Vec<Option<Point>> = s
                .lanes
                .iter()
                .map(|lane| match lane {
                    Lane::At(held) if held.step.store == Store::Redis => Some(Point::CacheRead),
                    Lane::At(_) | Lane::Woken(_) => Some(Point::DbRead),
                    _ => None,
                })
                .chain([Some(Point::DbRead)])
                .collect();
            let view = View {
                state: None,
                step: tokens.len(),
                max_steps: usize::MAX,
                runnable: &runnable,
                last,
                parked_at: &parked_at,
                ticks_so_far: 0,
                done: None,
            };
            let (r, fault) = match chooser.choose(&view) {
                None => (runnable[0], None),
                Some(Token::Run { request, fault }) if runnable.contains(&request) => {
                    let held = match s.lanes.get(request) {
                        Some(Lane::At(held)) => Some(held),
                        Some(_) => None,
                        None => s.server.front(),
                    };
                    match (fault, held) {
                        (None, _) => (request, None),
                        (Some(kind), Some(held)) if wire_fault(kind, held.step.store).is_some() => {
                            (request, Some(kind))
                        }
                        (Some(kind), _) => {
                            diverged.get_or_insert_with(|| {
                                format!(
                                    "decision {}: `{request}!{kind}` cannot happen there (request {request} is not \
                                     held at a step of the store it needs); it moved without it",
                                    tokens.len()
                                )
                            });
                            (request, None)
                        }
                    }
                }
                Some(token) => {
                    diverged.get_or_insert_with(|| {
                        format!(
                            "decision {}: `{token}` cannot be followed (who can move: {})",
                            tokens.len(),
                            runnable.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
                        )
                    });
                    (runnable[0], None)
                }
            };
            tokens.push(Token::Run { request: r, fault });
            last = Some(r);
            if r == n {
                let held = s.server.pop_front().expect("the server's work is runnable");
                moves.push(Move::Step(held.step.store));
                let_through(&mut s, held, fault, None);
                self.settle_server(&mut s, &mut answers).await;
                continue;
            }
            let lane = std::mem::replace(&mut s.lanes[r], Lane::Moving);
            moves.push(match &lane {
                Lane::Waiting => Move::Arrival,
                Lane::At(held) => Move::Step(held.step.store),
                _ => Move::Wake,
            });
            match lane {
                Lane::Waiting => {
                    let mut client = self.client();
                    let call = requests[r].clone();
                    let since = self.since();
                    let tx = answer_tx.clone();
                    tokio::spawn(async move {
                        let mut events = Vec::new();
                        crate::check::perform(
                            &mut client,
                            &call,
                            Some(0),
                            Sender::Client(r),
                            0,
                            &since,
                            &mut events,
                        )
                        .await;
                        let _ = tx.send((r, events));
                    });
                }
                Lane::At(held) => let_through(&mut s, held, fault, Some(r)),
                Lane::Woken(reply) => {
                    if let Some(proxy) = self.wire.proxy(reply.store) {
                        proxy.hold_replies(reply.conn, false);
                    }
                    reply.release();
                }
                _ => unreachable!("only a runnable request moves"),
            }
            self.settle(&mut s, r, &mut answers).await;
        }
        // Whatever is still held goes through (a stuck run), so the server
        // can finish; what it does then is not judged as scheduled.
        for lane in std::mem::take(&mut s.lanes) {
            match lane {
                Lane::At(held) => held.release(Release::Forward),
                Lane::Woken(reply) => reply.release(),
                _ => {}
            }
        }
        for held in std::mem::take(&mut s.server) {
            held.release(Release::Forward);
        }
        self.wire.set_gated(false);
        if stuck {
            // Let every request end (the gate is open now) before reading back.
            drop(answer_tx);
            while let Ok(Some((r, events))) = tokio::time::timeout(self.request_timeout, answers.recv()).await
            {
                let _ = r;
                s.events.extend(events);
            }
        }
        s.events.sort_by_key(|e| (e.invoked_us, e.sender, e.step, e.attempt));
        Driven {
            schedule: Schedule(tokens),
            moves,
            lines: s.lines,
            events: s.events,
            diverged,
            lock_waits: s.parked.len(),
            parked: s.parked,
            stuck,
            notes: s.notes,
        }
    }

    /// Waits until request `r`, which just moved, is quiet: held at a
    /// step, answered, or nothing new for a quiet period (while none of its
    /// steps is unanswered and no connection is opening).
    async fn settle(
        &mut self,
        s: &mut Schedule1,
        r: usize,
        answers: &mut mpsc::UnboundedReceiver<(usize, Vec<history::Event>)>,
    ) {
        let mut waited = Duration::ZERO;
        loop {
            // A step of r's still unanswered may wait on a lock: asked about
            // every LOCK_POLL, so that a wait costs no quiet period.
            let unanswered = s.last_step[r].filter(|(key, _)| s.open.contains_key(key));
            let wait = if unanswered.is_some() { LOCK_POLL.min(self.quiet) } else { self.quiet };
            match tokio::time::timeout(wait, self.next(answers)).await {
                Ok(input) => {
                    self.take_in(s, input, Some(r));
                    match s.lanes[r] {
                        Lane::At(_) => return,
                        Lane::Done => return self.after_answer(s, answers).await,
                        _ => {}
                    }
                }
                Err(_) => {
                    if let Some(((Store::Postgres, conn, seq), Some(pid))) = unanswered {
                        if self.waits_on_lock(pid).await {
                            // No one else moves before the reply is held: the
                            // lock cannot be released meanwhile.
                            self.wire.postgres.hold_replies(conn, true);
                            if let Some(&line) = s.open.get(&(Store::Postgres, conn, seq)) {
                                s.lines[line].waited = true;
                            }
                            s.lanes[r] = Lane::Parked { conn };
                            s.parked.push(r);
                            return;
                        }
                    }
                    // Not quiet yet: a statement not waiting on a lock still
                    // runs, and answers by itself; a connection opening
                    // brings a step (on a busy machine its startup can take
                    // longer than a quiet period, and a request taken for
                    // quiet too soon would have that step credited to
                    // whoever moves next).
                    if (unanswered.is_some() || !s.opening.is_empty()) && waited < self.request_timeout {
                        waited += wait;
                        continue;
                    }
                    // Quiet: answered, and nothing new.
                    s.lanes[r] = Lane::Idle;
                    return;
                }
            }
        }
    }

    /// Right after a request's answer: a step that comes within
    /// `AFTER_ANSWER` of it is work the server goes on with on its own (a
    /// job queued by the request, sent as it answers), not the next
    /// mover's.
    async fn after_answer(
        &mut self,
        s: &mut Schedule1,
        answers: &mut mpsc::UnboundedReceiver<(usize, Vec<history::Event>)>,
    ) {
        while let Ok(input) = tokio::time::timeout(AFTER_ANSWER, self.next(answers)).await {
            match input {
                Input::Wire(Event::Held(held)) if !held.step.statements.is_empty() => {
                    s.server.push_back(held)
                }
                other => self.take_in(s, other, None),
            }
        }
    }

    /// Waits until the server's own step just let go is quiet: nothing new
    /// for a quiet period.
    async fn settle_server(
        &mut self,
        s: &mut Schedule1,
        answers: &mut mpsc::UnboundedReceiver<(usize, Vec<history::Event>)>,
    ) {
        while let Ok(input) = tokio::time::timeout(self.quiet, self.next(answers)).await {
            self.take_in(s, input, None);
        }
    }

    async fn next(&mut self, answers: &mut mpsc::UnboundedReceiver<(usize, Vec<history::Event>)>) -> Input {
        tokio::select! {
            Some(event) = self.wire.events.recv() => Input::Wire(event),
            Some((r, events)) = answers.recv() => Input::Answer(r, events),
        }
    }

    /// Whether backend `pid` waits on a lock.
    async fn waits_on_lock(&mut self, pid: i32) -> bool {
        let wait: Result<Option<Option<String>>, sqlx::Error> =
            sqlx::query_scalar("select wait_event_type from pg_stat_activity where pid = $1")
                .bind(pid)
                .fetch_optional(&mut self.probe)
                .await;
        matches!(wait, Ok(Some(Some(kind))) if kind == "Lock")
    }

    /// Records what came in; `mover` is the request that just moved.
    fn take_in(&mut self, s: &mut Schedule1, input: Input, mover: Option<usize>) {
        match input {
            Input::Answer(r, events) => {
                // A step credited to it that it did not wait for is work the
                // server goes on with after the answer: its own.
                if let Lane::At(held) = std::mem::replace(&mut s.lanes[r], Lane::Done) {
                    s.server.push_back(held);
                }
                s.events.extend(events);
            }
            Input::Wire(Event::Held(held)) if held.step.statements.is_empty() => {
                // A step that executes nothing (a statement prepared or
                // described, a bare `Sync`) reads no data and writes none:
                // it goes through without a decision. Whether a server sends
                // one depends on its connection's cache of prepared
                // statements, which a schedule does not choose.
                held.release(Release::Forward);
            }
            Input::Wire(Event::Held(held)) => {
                let conn = (held.step.store, held.step.conn);
                let moving = |r: usize| matches!(s.lanes[r], Lane::Moving | Lane::Idle);
                // The request that just moved; else the one that last used
                // the connection, if it is on its own; else the only one
                // on its own.
                let on_own: Vec<usize> = (0..s.lanes.len()).filter(|&r| moving(r)).collect();
                let belongs = mover
                    .filter(|&r| moving(r))
                    .or_else(|| s.owner.get(&conn).copied().filter(|&r| moving(r)))
                    .or_else(|| (on_own.len() == 1).then(|| on_own[0]));
                match belongs {
                    Some(r) => s.lanes[r] = Lane::At(held),
                    // The server's own work: a mover of its own.
                    None => s.server.push_back(held),
                }
            }
            Input::Wire(Event::Passed(step)) => {
                let key = (step.store, step.conn, step.seq);
                s.open.insert(key, s.lines.len());
                let owner = s.owner.get(&(step.store, step.conn)).copied().or(mover);
                s.lines.push(line_of(&step, owner));
            }
            Input::Wire(Event::Replied { store, conn, seq, reply, error }) => {
                if let Some(line) = s.open.remove(&(store, conn, seq)) {
                    s.lines[line].reply = Some(reply);
                    s.lines[line].error = error;
                }
            }
            Input::Wire(Event::ReplyHeld(reply)) => {
                let parked = (0..s.lanes.len())
                    .find(|&r| matches!(s.lanes[r], Lane::Parked { conn } if conn == reply.conn));
                match parked {
                    Some(r) => s.lanes[r] = Lane::Woken(reply),
                    None => {
                        if let Some(proxy) = self.wire.proxy(reply.store) {
                            proxy.hold_replies(reply.conn, false);
                        }
                        reply.release();
                    }
                }
            }
            Input::Wire(Event::Failed { store, conn, error }) => {
                s.notes.push(format!("{store}#{conn}: {error}"))
            }
            Input::Wire(Event::Accepted { store, conn }) => {
                s.opening.insert((store, conn));
            }
            Input::Wire(Event::Opened { store, conn, .. } | Event::Closed { store, conn }) => {
                s.opening.remove(&(store, conn));
            }
        }
    }
}

/// Lets step `held` through as a decision of `request` (none: the
/// server's own work), with `fault` if one is injected there.
fn let_through(s: &mut Schedule1, held: Held, fault: Option<FaultKind>, request: Option<usize>) {
    let key = (held.step.store, held.step.conn, held.step.seq);
    let how = fault.and_then(|kind| wire_fault(kind, key.0)).unwrap_or(Release::Forward);
    let mut line = line_of(&held.step, request);
    line.fault = fault.map(|kind| kind.as_str().to_owned());
    if how == Release::CloseBefore {
        line.reply = Some("(connection closed before it reached the server)".into());
    } else {
        s.open.insert(key, s.lines.len());
    }
    s.lines.push(line);
    if let Some(r) = request {
        s.owner.insert((key.0, key.1), r);
        s.last_step[r] = Some((key, held.step.pid));
    }
    held.release(how);
}

/// Lets whatever an event holds go (an event nobody will decide on).
fn release_at_once(event: Event) {
    match event {
        Event::Held(held) => held.release(Release::Forward),
        Event::ReplyHeld(reply) => reply.release(),
        _ => {}
    }
}

fn line_of(step: &StepInfo, request: Option<usize>) -> Line {
    Line {
        request,
        store: step.store.to_string(),
        conn: step.conn,
        seq: step.seq,
        statements: step.statements.clone(),
        reply: None,
        error: None,
        waited: false,
        fault: None,
    }
}
