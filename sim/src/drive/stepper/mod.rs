//! The stepper: a tiny deterministic executor for the flows.
//!
//! Each request of a scenario is a future polled with a no-op waker; each
//! backend call parks it at its named point with the operation it wants. A
//! request starts *arriving*: its first decision runs its code up to its
//! first operation (and so does each attempt its client sends again). A
//! [`Chooser`] picks which request moves next; the stepper applies a
//! parked request's one operation to the in-memory world and polls the
//! request on to its next point. A request whose operation must wait for another
//! transaction is not runnable. When that transaction ends, its waiters
//! become runnable again, as Postgres wakes them: which of them runs its
//! statement again first, or whether the releasing request (or anyone
//! else) goes on first, is a decision like any other. (A row lock's
//! waiters queue on the row, as Postgres's tuple lock makes them: only the
//! first of them is woken.) When waits form a cycle, every member of it is
//! runnable too: choosing one makes it the deadlock victim (40P01), as
//! the one whose `deadlock_timeout` fires first. The list of choices is
//! the [`Schedule`]: it fully determines the run.
//!
//! A [`Shadow`] may follow the run in lockstep: every operation the model
//! performs, it performs on another backend (Postgres) and compares.

mod availability;
mod choose;
mod footprint;
mod prepared;
mod shadow;
mod snapshot;
mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use cusim::backend::mem::{poll_once, Blocked, Deducted, Deductions, Fault, MemConn, RequestId, World};
use cusim::backend::{InsertOutcome, Op, Outcome, Point, StripeError};
use cusim::fingerprint::Fingerprint;
use cusim::flow::{execute_keyed, Response};
use cusim::model::ApiError;

use crate::input::scenario::FaultKind;
use crate::input::schedule::{Schedule, Token};
use crate::judge::trace::{Call, Event, EventKind, Past};
use crate::judge::{creators, Creator, End, Observation, RequestOutcome, State};
use shadow::reborrow;

pub use availability::{Availability, Service};
pub use choose::{Chooser, Lenient, Replay, View};
pub use footprint::{footprint, Access, Action, Applied, Footprint, GuardTimes, Seen};
pub(crate) use prepared::{settle_reads, Settled};
pub use prepared::{Prepared, SetupError};
pub use shadow::{ModelResult, Services, Shadow};
use snapshot::Progress;
pub use snapshot::Snapshot;

/// A schedule that cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule step {step} ({token}): {reason}")]
pub struct ReplayError {
    pub step: usize,
    pub token: String,
    pub reason: String,
}

/// A Stripe call's client gives up after this long (stripe-node's default
/// timeout is 80 s): a call whose sending was followed by a longer clock
/// move never reaches Stripe, and its caller hears a timeout.
pub const STRIPE_CALL_TIMEOUT_MS: u64 = 80_000;

/// The step cap grows with the scenario: this many steps per request.
const STEPS_PER_REQUEST: usize = 250;

#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Decisions after which a run that has not ended is a livelock (at
    /// least 250 per request).
    pub max_steps: usize,
    pub record_trace: bool,
    /// A recorded trace's events without their text (the lines that show
    /// an operation, its answer, a response, a settle read): only what the
    /// race matchers read (the calls, crashes and retries, and each
    /// decision's past), with no text formatted. The explorer reads a
    /// run's symptoms from such a trace.
    pub bare_trace: bool,
    /// The narrower world of first come, first served: a waiter whose wait
    /// is over runs again at once, the earliest first, and the request
    /// whose wait closes a cycle is its victim, none of it a decision.
    /// Postgres allows more; this is kept to measure what the choice adds.
    pub first_come_first_served: bool,
    /// Keep what each decision touched (`Execution::footprints`), for the
    /// exhaustive scheduler's reduction. A run that records its trace
    /// keeps them too (each event's past is made from them).
    pub footprints: bool,
    /// Hash the state the run is in at each decision ([`View::state`]),
    /// for a search that caches states.
    pub states: bool,
    /// The state counts the step too: two runs in one state at different
    /// steps are then two states. Off, they are one (the step matters
    /// only to the step cap, which the search checks out of reach after
    /// the fact: `explore::dfs::reach`).
    pub state_step: bool,
    /// Keep snapshots where the chooser asks for them, and go on from the
    /// one it gives (`snapshot`), unless the chooser keeps none
    /// ([`Chooser::snapshots`]), the run records its trace or a shadow
    /// follows it. Off, every run starts from the start.
    pub snapshots: bool,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            max_steps: 1_000,
            record_trace: false,
            bare_trace: false,
            first_come_first_served: false,
            footprints: false,
            states: false,
            state_step: false,
            snapshots: true,
        }
    }
}

/// Everything a run produced.
#[derive(Debug)]
pub struct Execution {
    /// Every decision taken, including the default ones.
    pub schedule: Schedule,
    /// Decisions that moved away from a request that could have gone on.
    pub preemptions: usize,
    /// Per decision: whether it was what the default would have chosen.
    pub was_default: Vec<bool>,
    pub trace: Vec<Event>,
    /// The world as the run left it, settle reads done.
    pub world: World,
    pub availability: Availability,
    /// What the oracle judges.
    pub observation: Observation,
    /// Every (request, named point, occurrence) the run's requests reached,
    /// over all their attempts: where a scenario fault could be placed.
    pub reached: BTreeSet<(usize, Point, u32)>,
    /// Every (settle read, named point, occurrence) the settle reads
    /// reached: where a settle fault could be placed.
    pub settle_reached: BTreeSet<(usize, Point, u32)>,
    /// Per decision, what it touched (for the exhaustive scheduler's
    /// reduction, and each traced decision's past; empty unless the run's
    /// options asked for them or for a trace), from decision `resumed_at`.
    pub footprints: Vec<Footprint>,
    /// The decision the run went on from, from a snapshot (0 if it started
    /// at the start): the decisions before it were not made in this run.
    pub resumed_at: usize,
}

impl Execution {
    /// The schedule without its tail of default decisions: replaying it
    /// gives the same run.
    pub fn minimal_schedule(&self) -> Schedule {
        let keep = self.was_default.iter().rposition(|d| !d).map_or(0, |i| i + 1);
        Schedule(self.schedule.0[..keep].to_vec())
    }
}

type RequestFuture = Pin<Box<dyn Future<Output = Result<Response, ApiError>>>>;

/// A request's current attempt's code: its connection, and its future
/// until it ends.
struct Code {
    conn: MemConn,
    future: Option<RequestFuture>,
    /// Made again from its tape and not polled yet: the op it is to park
    /// on when it is (`snapshot`; a run cut at its next decision polls
    /// only the code that moves).
    behind: Option<Op>,
}

impl Code {
    /// Polls a code made again from its tape to the op it was parked on.
    fn catch_up(&mut self) {
        let Some(parked) = self.behind.take() else { return };
        let future = self.future.as_mut().expect("a code parked on an op runs");
        let polled = poll_once(future.as_mut());
        let op = self.conn.take_op();
        assert!(
            polled.is_pending() && op.as_ref() == Some(&parked),
            "a code played back from its tape is not where it was parked: {op:?}, not {parked:?}"
        );
    }
}

/// A request, but for its code.
#[derive(Clone)]
struct Slot {
    /// The attempt has not arrived: its code has not run yet. Its arrival
    /// (its code running up to its first operation: validation, a read of
    /// the clock, a read stamp) is a decision like any other.
    arriving: bool,
    parked: Option<Op>,
    /// The parked op has not been offered yet (faults apply to first offers).
    fresh: bool,
    /// When (true time) the parked op was sent.
    parked_at_ms: u64,
    /// The services a fault was injected into, over all its attempts.
    faulted: BTreeSet<Service>,
    /// The fault injected into the parked op, kept while it waits (it
    /// happens when the op does).
    pending_fault: Option<(Fault, FaultKind)>,
    visits: BTreeMap<Point, u32>,
    outcome: Option<RequestOutcome>,
    /// How the attempts before the current one ended (its client retried).
    earlier: Vec<RequestOutcome>,
    /// The world's mark of this request's deductions when the current
    /// attempt began.
    deductions_at_start: Deductions,
    /// Per ended attempt, in order: what its deductions did.
    deducted: Vec<Deducted>,
    /// Everything the current attempt has heard so far, written out (kept
    /// only when the run's options ask for states: `state.rs`): its
    /// answers, and what it read of the clocks. Its code's state is a
    /// function of it.
    heard: Fingerprint,
}

struct Run<'p, 's> {
    prepared: &'p Prepared,
    world: World,
    shadow: Option<&'s mut dyn Shadow>,
    slots: Vec<Slot>,
    codes: Vec<Code>,
    trace: Vec<Event>,
    record: bool,
    /// The trace's events carry no text ([`RunOptions::bare_trace`]).
    bare: bool,
    created_by: BTreeMap<String, Creator>,
    step: usize,
    /// What the decision under way has touched (kept only when the run's
    /// options ask for footprints).
    touched: Footprint,
    track: bool,
    /// Keep each request's `heard` (for [`RunOptions::states`]).
    hear: bool,
    /// Its connections are taped, and it keeps snapshots (`snapshot`).
    taped: bool,
}

/// The world's counts of readings of virtual time and of read stamps
/// before an action, to tell what it did.
#[derive(Debug, Clone, Copy)]
struct Mark {
    time_reads: u64,
    guard_reads: u64,
    stamps: u64,
}

impl Run<'_, '_> {
    fn mark(&self) -> Mark {
        Mark {
            time_reads: self.world.time_reads(),
            guard_reads: self.world.guard_reads(),
            stamps: self.world.stamps_taken(),
        }
    }

    /// Adds what `action`, done since `mark`, touched to the decision under
    /// way (if footprints are kept): the one dependency relation says what
    /// (`footprint::footprint`), from what the world saw it do.
    fn note(&mut self, action: Action<'_>, mark: Mark) {
        if self.track {
            let seen = Seen {
                db: self.world.take_db_touches(),
                read_clock: self.world.time_reads() != mark.time_reads,
                read_guard_time: self.world.guard_reads() != mark.guard_reads,
                took_stamp: self.world.stamps_taken() != mark.stamps,
            };
            self.touched.add(footprint(&action, seen, GuardTimes::of(self.prepared.strategy)));
        }
    }

    /// An event's text, unless the trace is bare.
    fn text(&self, text: impl FnOnce() -> String) -> String {
        if self.bare {
            String::new()
        } else {
            text()
        }
    }

    fn event(&mut self, request: Option<usize>, kind: EventKind) {
        if self.record {
            self.trace.push(Event { step: Some(self.step), request, kind, past: Past::default() });
        }
    }

    /// Request `i`'s attempt arrives: its code runs up to its first
    /// operation.
    fn arrive(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.arriving = false;
        let attempt = slot.earlier.len() as u32 + 1;
        self.event(Some(i), EventKind::Arrive { attempt });
        self.advance(i, Action::Arrive);
    }

    /// Polls request `i` until it parks at a named point or finishes: its
    /// code runs (`code`: arriving, or after an answer). A client that
    /// sends it again leaves the new attempt to arrive.
    fn advance(&mut self, i: usize, mut code: Action<'static>) {
        loop {
            let mark = self.mark();
            self.codes[i].catch_up();
            let future = self.codes[i].future.as_mut().expect("an unfinished request has a future");
            let polled = poll_once(future.as_mut());
            self.hear_reads(i, mark);
            match polled {
                Poll::Ready(result) => {
                    self.codes[i].future = None;
                    self.note(code, mark);
                    if self.record {
                        let result = self.text(|| describe_result(&result));
                        self.event(Some(i), EventKind::Respond { result });
                    }
                    if let Some(ended) = self.retry(i, RequestOutcome::Responded(Box::new(result))) {
                        self.slots[i].outcome = Some(ended);
                    }
                    return;
                }
                Poll::Pending => {
                    let op = self.codes[i].conn.take_op().expect("a pending request is parked on an op");
                    self.note(code, mark);
                    if op.point().is_none() {
                        let outcome = self.apply_alone(i, &op);
                        self.answer(i, outcome);
                        code = Action::Code;
                        continue;
                    }
                    // Only a Stripe call's time in flight matters (its
                    // client's timeout): other parkings read no time.
                    let stripe_call = op.point() == Some(Point::StripeCreate);
                    let slot = &mut self.slots[i];
                    slot.parked = Some(op);
                    slot.fresh = true;
                    if stripe_call {
                        let mark = self.mark();
                        self.slots[i].parked_at_ms = self.world.now_ms();
                        self.note(Action::ParkOnStripe, mark);
                    }
                    return;
                }
            }
        }
    }

    /// Starts another attempt of request `i`, whose last one ended with
    /// `ended`, if its client sends it again; if not, `ended` is how the
    /// request ended, and comes back.
    fn retry(&mut self, i: usize, ended: RequestOutcome) -> Option<RequestOutcome> {
        self.end_attempt(i);
        let request = &self.prepared.scenario.requests[i];
        if !(ended.client_retries() && request.has_retry_left(self.slots[i].earlier.len())) {
            return Some(ended);
        }
        self.slots[i].earlier.push(ended);
        let number = self.slots[i].earlier.len() as u32 + 1;
        self.event(Some(i), EventKind::Retry { attempt: number });
        self.codes[i] = attempt(&self.world, self.prepared, i, self.taped);
        let slot = &mut self.slots[i];
        slot.arriving = true;
        slot.heard.clear();
        None
    }

    /// Request `i`'s current attempt has ended: notes whether it deducted
    /// usage, and where the count stands for the next.
    fn end_attempt(&mut self, i: usize) {
        let deductions = self.world.deductions(i);
        let slot = &mut self.slots[i];
        slot.deducted.push(deductions.since(slot.deductions_at_start));
        slot.deductions_at_start = deductions;
    }

    /// The model's services now (only a shadow needs them).
    fn services(&self) -> Option<Services> {
        self.shadow.as_ref().map(|_| Services::of(&self.world))
    }

    /// Applies an operation that cannot wait (nobody else holds anything it
    /// needs: `BEGIN`), telling the shadow.
    fn apply_alone(&mut self, i: RequestId, op: &Op) -> Outcome {
        let before = self.services();
        let mark = self.mark();
        let outcome = match self.world.apply(i, op, None) {
            Ok(outcome) => outcome,
            Err(blocked) => panic!("request {i} blocked on txn {} where nothing can block", blocked.0),
        };
        self.note(Action::Op { op, applied: Applied::Done(&outcome), fault: None }, mark);
        if let (Some(shadow), Some(before)) = (self.shadow.as_deref_mut(), before) {
            shadow.op(i, op, None, &before, ModelResult::Done(&outcome));
        }
        outcome
    }

    /// Requests that may move: arriving ones, parked ones that do not
    /// wait, waiters whose wait is over, and members of a cycle of waits
    /// (as its victim).
    fn runnable(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| {
                self.slots[i].arriving
                    || (self.slots[i].parked.is_some()
                        && (!self.world.is_waiting(i) || self.world.woken(i) || self.world.in_cycle(i)))
            })
            .collect()
    }

    /// First come, first served (`RunOptions::first_come_first_served`):
    /// waiters whose wait is over run again at once, the earliest first;
    /// a cycle's victim is the waiter that closed it.
    fn serve_in_arrival_order(&mut self, closer: usize) {
        if self.world.is_waiting(closer) && self.world.in_cycle(closer) {
            let op = self.slots[closer].parked.take().expect("a waiter is parked");
            self.deadlock_victim(closer, op);
        }
        while let Some(i) = (0..self.slots.len())
            .filter(|&i| self.slots[i].parked.is_some() && self.world.woken(i))
            .min_by_key(|&i| self.world.wait_seq(i))
        {
            self.resume(i);
            if self.world.is_waiting(i) && self.world.in_cycle(i) {
                let op = self.slots[i].parked.take().expect("a waiter is parked");
                self.deadlock_victim(i, op);
            }
        }
    }

    /// Request `i`, on a cycle of waits, is its victim: its transaction
    /// rolls back with 40P01.
    fn deadlock_victim(&mut self, i: usize, op: Op) {
        let point = op.point().expect("parked ops have points");
        let before = self.services();
        if let (Some(shadow), Some(before)) = (self.shadow.as_deref_mut(), &before) {
            shadow.op(i, &op, None, before, ModelResult::DeadlockVictim);
        }
        let mark = self.mark();
        let outcome = self.world.deadlock_victim(i);
        self.note(Action::Op { op: &op, applied: Applied::DeadlockVictim, fault: None }, mark);
        self.slots[i].pending_fault = None;
        if self.record {
            let op = self.text(|| op.summary());
            self.event(Some(i), EventKind::Deadlock { point, op });
        }
        self.answer(i, outcome);
        self.advance(i, Action::Code);
    }

    /// A waiter whose wait is over runs its statement again, with the
    /// fault it was sent with.
    fn resume(&mut self, i: usize) {
        let op = self.slots[i].parked.take().expect("a waiter is parked");
        let (world_fault, fault) = self.slots[i].pending_fault.take().unzip();
        self.offer(i, op, world_fault, fault);
    }

    fn perform(&mut self, i: usize, explicit: Option<FaultKind>) -> Result<(), String> {
        if self.slots[i].arriving {
            if let Some(kind) = explicit {
                return Err(format!(
                    "request {i} has not arrived: fault {kind} needs an operation to happen at"
                ));
            }
            self.arrive(i);
            return Ok(());
        }
        if self.world.is_waiting(i) && explicit.is_none() {
            if self.world.in_cycle(i) {
                let op = self.slots[i].parked.take().expect("a waiter is parked");
                self.deadlock_victim(i, op);
            } else {
                self.resume(i);
            }
            return Ok(());
        }
        let slot = &mut self.slots[i];
        let op = slot.parked.take().expect("runnable requests are parked");
        let point = op.point().expect("parked ops have points");
        slot.pending_fault = None;
        let mut fault = explicit;
        if slot.fresh {
            slot.fresh = false;
            let visits = slot.visits.entry(point).or_insert(0);
            *visits += 1;
            let occurrence = *visits;
            fault = fault.or_else(|| self.prepared.scenario.fault_at(i, point, occurrence));
        }
        if let Some(kind) = fault {
            if !kind.applies_to(point) {
                self.slots[i].parked = Some(op);
                return Err(format!("fault {kind} cannot happen at {point}"));
            }
        }
        if fault == Some(FaultKind::Crash) {
            let mark = self.mark();
            self.world.crash(i);
            self.note(Action::Crash, mark);
            if let Some(shadow) = self.shadow.as_deref_mut() {
                shadow.crash(i);
            }
            self.codes[i].future = None;
            if self.record {
                let op = self.text(|| op.summary());
                self.event(Some(i), EventKind::Crash { point, op });
            }
            if let Some(ended) = self.retry(i, RequestOutcome::Crashed { at: point }) {
                self.slots[i].outcome = Some(ended);
            }
            return Ok(());
        }
        let in_flight_ms = match point {
            Point::StripeCreate => {
                let mark = self.mark();
                let in_flight_ms = self.world.now_ms().saturating_sub(self.slots[i].parked_at_ms);
                self.note(Action::StripeInFlight, mark);
                in_flight_ms
            }
            _ => 0,
        };
        if in_flight_ms > STRIPE_CALL_TIMEOUT_MS {
            // The call was in flight past its client's timeout: the
            // connection is gone and the call never reaches Stripe.
            let outcome = Outcome::StripeError { error: StripeError::Timeout };
            if self.record {
                let result = self.text(|| {
                    format!("{} (in flight {in_flight_ms} ms: it never reached Stripe)", outcome.summary())
                });
                let call = Box::new(Call { op: op.clone(), outcome: outcome.clone() });
                let op = self.text(|| op.summary());
                self.event(Some(i), EventKind::Op { point, op, result, fault, call });
            }
            self.answer(i, outcome);
            self.advance(i, Action::Code);
            return Ok(());
        }
        if fault == Some(FaultKind::CacheEvict) {
            if let Some(key) = self.prepared.scenario.requests[i].evicted_key(&op) {
                let mark = self.mark();
                self.world.evict(&key);
                self.note(Action::Evict { key: &key }, mark);
                if let Some(shadow) = self.shadow.as_deref_mut() {
                    shadow.evict(&key);
                }
            }
            self.offer(i, op, None, fault);
            return Ok(());
        }
        let world_fault = fault.and_then(FaultKind::world_fault).filter(|f| f.applies_to_op(&op));
        let fault = fault.filter(|kind| kind.world_fault().is_none_or(|f| f.applies_to_op(&op)));
        self.offer(i, op, world_fault, fault);
        Ok(())
    }

    /// Applies request `i`'s parked `op`: it completes (and the request
    /// moves on to its next point), waits, or is the deadlock victim.
    fn offer(&mut self, i: usize, op: Op, world_fault: Option<Fault>, fault: Option<FaultKind>) {
        let point = op.point().expect("parked ops have points");
        let before = self.services();
        let mark = self.mark();
        let applied = self.world.apply(i, &op, world_fault);
        let done = match &applied {
            Ok(outcome) => Applied::Done(outcome),
            Err(_) => Applied::Waits,
        };
        self.note(Action::Op { op: &op, applied: done, fault: world_fault }, mark);
        match applied {
            Ok(outcome) => {
                if world_fault.is_some() {
                    self.slots[i].faulted.insert(Service::of(&op));
                }
                if let (Some(shadow), Some(before)) = (self.shadow.as_deref_mut(), &before) {
                    shadow.op(i, &op, world_fault, before, ModelResult::Done(&outcome));
                }
                if let Outcome::Insert { outcome: InsertOutcome::Inserted(row) } = &outcome {
                    self.created_by.insert(row.internal_id.clone(), Creator::Request(i));
                }
                if self.record {
                    let call = Box::new(Call { op: op.clone(), outcome: outcome.clone() });
                    let (op, result) = (self.text(|| op.summary()), self.text(|| outcome.summary()));
                    self.event(Some(i), EventKind::Op { point, op, result, fault, call });
                }
                self.answer(i, outcome);
                self.advance(i, Action::Code);
            }
            Err(Blocked(txn)) => {
                let holder = self.world.request_of_txn(txn);
                if self.record {
                    let op = self.text(|| op.summary());
                    self.event(Some(i), EventKind::Wait { point, op, txn, holder });
                }
                if let (Some(shadow), Some(before)) = (self.shadow.as_deref_mut(), &before) {
                    shadow.op(i, &op, world_fault, before, ModelResult::Waits);
                }
                self.slots[i].parked = Some(op);
                self.slots[i].pending_fault = world_fault.zip(fault);
            }
        }
    }

    fn parked_points(&self) -> Vec<Option<Point>> {
        self.slots.iter().map(|s| s.parked.as_ref().and_then(Op::point)).collect()
    }
}

/// One attempt of request `i`: its connection (on its instance, taped
/// if `taped`) and the future that sends it, with its idempotency key.
fn attempt(world: &World, prepared: &Prepared, i: usize, taped: bool) -> Code {
    let conn = MemConn::new(world).skewed(prepared.scenario.skew_ms(i));
    code_on(if taped { conn.taped() } else { conn }, prepared, i)
}

fn code_on(conn: MemConn, prepared: &Prepared, i: usize) -> Code {
    let sent = prepared.scenario.requests[i].clone();
    let strategy = prepared.strategy;
    let future_conn = conn.clone();
    let future: RequestFuture = Box::pin(async move {
        execute_keyed(&future_conn, strategy, &sent.request, sent.idempotency_key.as_deref()).await
    });
    Code { conn, future: Some(future), behind: None }
}

/// A request's or settle read's answer, for a trace line.
fn describe_result(result: &Result<Response, ApiError>) -> String {
    match result {
        Ok(response) => format!("ok {}", describe_response(response)),
        Err(error) => format!("error {} {}", error.code, error.message),
    }
}

fn describe_response(response: &Response) -> String {
    let customer = &response.customer().customer;
    let products: Vec<&str> = response.customer().products.iter().map(|p| p.product_id.as_str()).collect();
    let mut text = format!(
        "{} id={} products=[{}]",
        customer.internal_id,
        customer.id.as_deref().unwrap_or("null"),
        products.join(",")
    );
    match response {
        Response::Check(check) => text.push_str(&format!(" allowed={}", check.allowed)),
        Response::Track(track) => text.push_str(&format!(" tracked={}", track.value)),
        Response::Customer { .. } => {}
    }
    text
}

/// What a run is at a decision, but for what its options make of it.
struct Parts {
    world: World,
    slots: Vec<Slot>,
    codes: Vec<Code>,
    created_by: BTreeMap<String, Creator>,
    step: usize,
}

/// A run at its start: the seeded world, each request arriving.
fn start(prepared: &Prepared, taped: bool) -> Parts {
    let world = prepared.world();
    let created_by = creators(prepared.seeded(), &[], 0, 0);
    let codes = (0..prepared.request_count()).map(|i| attempt(&world, prepared, i, taped)).collect();
    let slots = (0..prepared.request_count())
        .map(|_| Slot {
            arriving: true,
            parked: None,
            fresh: false,
            pending_fault: None,
            faulted: BTreeSet::new(),
            parked_at_ms: 0,
            visits: BTreeMap::new(),
            outcome: None,
            earlier: Vec::new(),
            deductions_at_start: Deductions::default(),
            deducted: Vec::new(),
            heard: Fingerprint::new(state::kept(prepared.strategy)),
        })
        .collect();
    Parts { world, slots, codes, created_by, step: 0 }
}

/// Takes `run`'s snapshot if the chooser keeps one here.
fn keep_snapshot(run: &Run<'_, '_>, chooser: &mut dyn Chooser, progress: impl FnOnce() -> Progress) {
    if run.taped && chooser.wants_snapshot() {
        chooser.keep(run.snapshot(&progress()));
    }
}

/// Runs the prepared scenario, letting `chooser` decide every step.
pub fn execute_run(
    prepared: &Prepared,
    chooser: &mut dyn Chooser,
    options: RunOptions,
) -> Result<Execution, ReplayError> {
    run_with(prepared, chooser, options, None)
}

/// [`execute_run`], with `shadow` following every operation in lockstep
/// (the seed customers are the shadow's to create beforehand).
pub fn execute_shadowed(
    prepared: &Prepared,
    chooser: &mut dyn Chooser,
    options: RunOptions,
    shadow: &mut dyn Shadow,
) -> Result<Execution, ReplayError> {
    run_with(prepared, chooser, options, Some(shadow))
}

fn run_with(
    prepared: &Prepared,
    chooser: &mut dyn Chooser,
    options: RunOptions,
    shadow: Option<&mut dyn Shadow>,
) -> Result<Execution, ReplayError> {
    let taped = options.snapshots && chooser.snapshots() && shadow.is_none() && !options.record_trace;
    let resumed = if taped { chooser.resume().map(|s| s.resume(prepared)) } else { None };
    let (Parts { world, slots, codes, created_by, step }, progress) =
        resumed.unwrap_or_else(|| (start(prepared, taped), Progress::default()));
    let mut run = Run {
        prepared,
        world,
        shadow,
        slots,
        codes,
        trace: Vec::new(),
        record: options.record_trace,
        bare: options.bare_trace,
        created_by,
        step,
        touched: Footprint::default(),
        // A trace records each decision's past, which the footprints give.
        track: options.footprints || options.record_trace,
        hear: options.states,
        taped,
    };
    let resumed_at = run.step;
    if run.track {
        run.world.record_touches();
    }

    // Long scenarios need more steps: the cap only has to catch livelocks.
    let max_steps = options.max_steps.max(STEPS_PER_REQUEST * run.slots.len());
    let Progress { mut schedule, mut was_default, mut preemptions, mut last, mut ticks } = progress;
    let mut footprints: Vec<Footprint> = Vec::new();
    // The last decision's footprint before the end of the run was added.
    let mut ended_by: Option<Footprint> = None;
    let mut cut = false;
    let end = loop {
        let runnable = run.runnable();
        if runnable.is_empty() {
            // The decision that ended the run disabled every clock move
            // (none is offered after it): for the reduction, it depends
            // on the clock.
            // (A trace's pasts are of the decisions alone: see below.)
            if let Some(last) = footprints.last_mut() {
                if run.record {
                    ended_by = Some(last.clone());
                }
                last.add(footprint(&Action::EndOfRun, Seen::default(), GuardTimes::of(prepared.strategy)));
            }
            break None;
        }
        if run.step >= max_steps {
            break Some(End::StepCap { steps: run.step });
        }
        let parked_at = run.parked_points();
        let state = (options.states && chooser.wants_state()).then(|| run.state(ticks, options.state_step));
        let view = View {
            state,
            step: run.step,
            max_steps,
            runnable: &runnable,
            last,
            parked_at: &parked_at,
            ticks_so_far: ticks,
            done: footprints.last(),
        };
        let default = Token::run(runnable[0]);
        let chosen = chooser.choose(&view);
        keep_snapshot(&run, chooser, || Progress {
            schedule: schedule.clone(),
            was_default: was_default.clone(),
            preemptions,
            last,
            ticks,
        });
        if chosen.is_none() && chooser.cut() {
            cut = true;
            break None;
        }
        let token = chosen.unwrap_or(default);
        was_default.push(token == default);
        let fail = |reason: String| ReplayError { step: schedule.len(), token: token.to_string(), reason };
        run.touched = Footprint::default();
        match token {
            Token::Tick { ms } => {
                let mark = run.mark();
                run.world.advance_clock(ms);
                run.note(Action::Tick { ms }, mark);
                ticks += 1;
                let now_ms = run.world.observed_now_ms();
                run.event(None, EventKind::Tick { ms, now_ms });
            }
            Token::Run { request, fault } => {
                if !runnable.contains(&request) {
                    let why = match run.slots.get(request) {
                        None => {
                            format!("there is no request {request} (the scenario has {})", run.slots.len())
                        }
                        Some(slot) if slot.outcome.is_some() => format!("request {request} has finished"),
                        Some(_) => format!("request {request} is waiting for a lock"),
                    };
                    return Err(fail(why));
                }
                // An arrival preempts nobody, and who ran last stays who
                // ran an operation last (a bound on preemptions bounds how
                // often operations of different requests interleave).
                let arrival = run.slots[request].arriving;
                if !arrival && last.is_some_and(|l| l != request && runnable.contains(&l)) {
                    preemptions += 1;
                }
                run.perform(request, fault).map_err(fail)?;
                if options.first_come_first_served {
                    run.serve_in_arrival_order(request);
                }
                if !arrival {
                    last = Some(request);
                }
            }
        }
        if run.track {
            footprints.push(std::mem::take(&mut run.touched));
        }
        schedule.push(token);
        run.step += 1;
    };

    if run.record {
        // Each decision's movers: whoever was chosen, and every request that
        // acted in it (a waiter woken first come, first served acts in the
        // releasing request's decision): a request's own steps stay in order.
        let mut movers: Vec<Vec<Option<usize>>> = schedule
            .iter()
            .map(|token| match token {
                Token::Run { request, .. } => vec![Some(*request)],
                Token::Tick { .. } => vec![None],
            })
            .collect();
        for event in &run.trace {
            if let (Some(step), Some(request)) = (event.step, event.request) {
                if !movers[step].contains(&Some(request)) {
                    movers[step].push(Some(request));
                }
            }
        }
        // The last decision as it was, before it was taken to read the
        // clock for ending the run: which decision is last differs between
        // equivalent schedules, and the pasts must not.
        let last = footprints.len().wrapping_sub(1);
        let of =
            |k: usize| if k == last { ended_by.as_ref().unwrap_or(&footprints[k]) } else { &footprints[k] };
        let moves = schedule.iter().filter(|t| matches!(t, Token::Tick { .. })).count();
        let pasts = Past::of_run(&movers, |a, b| of(a).conflicts_among(of(b), moves));
        for event in &mut run.trace {
            if let Some(step) = event.step {
                event.past = pasts[step].clone();
            }
        }
    }
    // An unfinished request's current attempt ends with the run.
    for i in 0..run.slots.len() {
        if run.slots[i].outcome.is_none() {
            run.end_attempt(i);
        }
    }
    let outcomes: Vec<RequestOutcome> = run
        .slots
        .iter()
        .map(|s| {
            s.outcome
                .clone()
                .unwrap_or(RequestOutcome::Unfinished { at: s.parked.as_ref().and_then(Op::point) })
        })
        .collect();
    let end = end.unwrap_or_else(|| {
        let world = &run.world;
        End::of_world(world, &outcomes, |i| world.waiting_for(i).and_then(|t| world.request_of_txn(t)))
    });

    let Settled { settles, reached: settle_reached } = match end {
        End::Quiescent if !cut => settle_reads(&mut run.world, run.prepared, reborrow(&mut run.shadow)),
        _ => Settled { settles: Vec::new(), reached: BTreeSet::new() },
    };
    if run.record && !run.bare {
        for settle in &settles {
            let customer = format!("{}/{}", settle.scope, settle.customer);
            let kind = EventKind::Settle { customer, result: describe_result(&settle.result) };
            run.trace.push(Event { step: None, request: None, kind, past: Past::default() });
        }
    }
    let availability = Availability::of(prepared, &outcomes, |i| &run.slots[i].faulted);
    let reached = run
        .slots
        .iter()
        .enumerate()
        .flat_map(|(i, slot)| {
            slot.visits.iter().flat_map(move |(&point, &n)| (1..=n).map(move |k| (i, point, k)))
        })
        .collect();
    let retried = run.slots.iter_mut().map(|s| std::mem::take(&mut s.earlier)).collect();
    let deducted = run.slots.iter_mut().map(|s| std::mem::take(&mut s.deducted)).collect();
    let observation = Observation {
        outcomes,
        retried,
        deducted: Some(deducted),
        settles,
        created_by: run.created_by,
        end,
        state: State::of_world(&run.world),
    };
    Ok(Execution {
        schedule: Schedule(schedule),
        preemptions,
        was_default,
        trace: run.trace,
        world: run.world,
        availability,
        observation,
        reached,
        settle_reached,
        footprints,
        resumed_at,
    })
}
