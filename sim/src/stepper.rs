//! The stepper: a tiny deterministic executor for the flows.
//!
//! Each request of a scenario is a future polled with a no-op waker; each
//! backend call parks it at its named point with the operation it wants. A
//! [`Chooser`] picks which parked request moves next; the stepper applies
//! that one operation to the in-memory world and polls the request on to
//! its next point. A request whose operation must wait for another
//! transaction is not runnable; when that transaction ends, its waiters
//! retry at once, as Postgres wakes them, first come first served (in
//! Postgres they race; the model picks this one order, and the Postgres
//! replay enforces it). A wait
//! that closes a cycle makes the waiter the deadlock victim (40P01). The
//! list of choices is the [`Schedule`]: it fully determines the run.
//!
//! A [`Shadow`] may follow the run in lockstep: every operation the model
//! performs, it performs on another backend (Postgres) and compares.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use cusim::backend::mem::ids::IdGen;
use cusim::backend::mem::{poll_once, Blocked, Fault, MemConn, RequestId, TxnId, World};
use cusim::backend::{InsertOutcome, Op, Outcome, Point};
use cusim::flow::{execute, Request, Response, Strategy};
use cusim::model::{validate_customer_id, ApiError, Scope};
use serde::Serialize;

use crate::scenario::{FaultKind, Scenario};
use crate::schedule::{Schedule, Token};

/// A scenario made ready to run under one strategy: its customers exist.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub scenario: Scenario,
    pub strategy: Strategy,
    base: World,
    /// internal id → seed customer index, for the customers made before the run.
    seeded: BTreeMap<String, usize>,
    /// Decisions in the default schedule's run (computed on first use).
    default_steps: std::sync::OnceLock<usize>,
}

/// The seed customers' creation failed: the scenario is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("customers[{index}]: {reason}")]
pub struct SetupError {
    pub index: usize,
    pub reason: String,
}

/// Ids come from this seed: the same in every run, so traces are comparable.
const ID_SEED: u64 = 0;

impl Prepared {
    pub fn new(scenario: &Scenario, strategy: Strategy) -> Result<Prepared, SetupError> {
        Prepared::prepare(scenario, strategy, None)
    }

    /// [`Prepared::new`], with `shadow` following the seed customers'
    /// creation in lockstep.
    pub fn new_shadowed(
        scenario: &Scenario,
        strategy: Strategy,
        shadow: &mut dyn Shadow,
    ) -> Result<Prepared, SetupError> {
        Prepared::prepare(scenario, strategy, Some(shadow))
    }

    fn prepare(
        scenario: &Scenario,
        strategy: Strategy,
        mut shadow: Option<&mut dyn Shadow>,
    ) -> Result<Prepared, SetupError> {
        let mut world = World::new(scenario.catalog(), strategy.constraints(), ID_SEED);
        let mut seeded = BTreeMap::new();
        for (index, customer) in scenario.customers.iter().enumerate() {
            let request = customer.as_request();
            let session = scenario.requests.len() + index;
            let conn = MemConn::new(&world);
            let future = execute(&conn, Strategy::Safe, &request);
            match drive_alone(&mut world, session, &conn, future, reborrow(&mut shadow)) {
                Ok(_) => {
                    // The rows this seed inserted (a seed may also return or claim an earlier one).
                    for row in world.committed_customers() {
                        seeded.entry(row.internal_id).or_insert(index);
                    }
                }
                Err(error) => return Err(SetupError { index, reason: error.to_string() }),
            }
        }
        Ok(Prepared {
            scenario: scenario.clone(),
            strategy,
            base: world,
            seeded,
            default_steps: Default::default(),
        })
    }

    pub fn request_count(&self) -> usize {
        self.scenario.requests.len()
    }

    /// How many decisions the default schedule (lowest runnable request
    /// first) takes: the length a scheduler like PCT spreads its choices over.
    pub fn default_steps(&self) -> usize {
        *self.default_steps.get_or_init(|| {
            execute_run(self, &mut Replay::new(&Schedule::default()), RunOptions::default())
                .expect("the default schedule is always valid")
                .schedule
                .len()
        })
    }

    /// The world with the seed customers made (a copy with its own clocks).
    pub fn world(&self) -> World {
        self.base.clone()
    }
}

/// What a free run (requests that ran without the stepper: madsim tasks,
/// loom threads) left, judged as the stepper's runs are.
#[derive(Debug)]
pub struct Judged {
    pub end: End,
    pub settles: Vec<Settle>,
    pub violations: Vec<crate::oracle::Violation>,
    pub created_by: BTreeMap<String, Creator>,
}

/// Settle reads on `world` (if the run is quiescent) and the oracle's
/// verdict, for requests that ended as `outcomes` and inserted `inserted`.
pub fn judge_free_run(
    prepared: &Prepared,
    mut world: World,
    outcomes: &[RequestOutcome],
    inserted: &[(String, RequestId)],
) -> Judged {
    let mut created_by: BTreeMap<String, Creator> =
        prepared.seeded.iter().map(|(id, index)| (id.clone(), Creator::Seed(*index))).collect();
    for (id, request) in inserted {
        if *request < outcomes.len() {
            created_by.insert(id.clone(), Creator::Request(*request));
        }
    }
    let waiting: Vec<(usize, Option<usize>)> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o, RequestOutcome::Unfinished { .. }))
        .map(|(i, _)| (i, None))
        .collect();
    let open: Vec<usize> = (0..outcomes.len()).filter(|i| world.open_txn(*i).is_some()).collect();
    let end = if !waiting.is_empty() {
        End::Stalled { waiting }
    } else if open.is_empty() && world.is_quiescent() {
        End::Quiescent
    } else {
        End::OpenTransaction { requests: open }
    };
    let mut settles = Vec::new();
    if end == End::Quiescent {
        let first_session = prepared.scenario.requests.len() + prepared.scenario.customers.len();
        let keys = settle_keys(&prepared.scenario, &world.committed_customers());
        for (n, (scope, customer)) in keys.into_iter().enumerate() {
            let request = settle_request(&scope, &customer);
            let conn = MemConn::new(&world);
            let future = execute(&conn, prepared.strategy, &request);
            let result = drive_alone(&mut world, first_session + n, &conn, future, None);
            settles.push(Settle { scope, customer, result });
        }
    }
    let violations = crate::oracle::check_observation(&crate::oracle::Observation {
        scenario: &prepared.scenario,
        outcomes,
        settles: &settles,
        created_by: &created_by,
        end: &end,
        state: crate::oracle::State::of_world(&world),
    });
    Judged { end, settles, violations, created_by }
}

/// Who inserted a customer row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Creator {
    Seed(usize),
    Request(usize),
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOutcome {
    Responded(Box<Result<Response, ApiError>>),
    Crashed {
        at: Point,
    },
    /// Still parked when the run stopped (a step cap or a stall).
    Unfinished {
        at: Option<Point>,
    },
}

impl RequestOutcome {
    pub fn response(&self) -> Option<&Response> {
        match self {
            RequestOutcome::Responded(result) => result.as_ref().as_ref().ok(),
            _ => None,
        }
    }
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "end")]
pub enum End {
    /// Every request finished or crashed, and no transaction is open.
    Quiescent,
    /// The step cap was reached with requests still runnable (a livelock).
    StepCap { steps: usize },
    /// Nothing can move, yet requests wait: for a transaction nobody will end.
    Stalled { waiting: Vec<(usize, Option<usize>)> },
    /// Every request ended, but one left its transaction open.
    OpenTransaction { requests: Vec<usize> },
}

/// A settle read: the strategy's read path, after quiescence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settle {
    pub scope: Scope,
    pub customer: SettleKey,
    pub result: Result<Response, ApiError>,
}

/// What a settle read asks for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SettleKey {
    /// A customer with an id: a read through the cache, no auto-create.
    Id(String),
    /// An id-less customer: the only way a client reaches one is an
    /// id-less create with its email, which returns the existing customer.
    Email(String),
}

impl std::fmt::Display for SettleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettleKey::Id(id) => f.write_str(id),
            SettleKey::Email(email) => write!(f, "email {email}"),
        }
    }
}

/// One line of a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// The decision this happened in (settle reads have none).
    pub step: Option<usize>,
    pub request: Option<usize>,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum EventKind {
    /// An operation ran at its point.
    Op {
        point: Point,
        op: String,
        result: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        fault: Option<FaultKind>,
    },
    /// The operation must wait for a transaction (of `holder`).
    Wait { point: Point, op: String, txn: TxnId, holder: Option<usize> },
    /// The wait closed a cycle: this request is the deadlock victim.
    Deadlock { point: Point, op: String },
    /// The request died here; its open transaction rolled back.
    Crash { point: Point, op: String },
    /// The virtual clock moved.
    Tick { ms: u64, now_ms: u64 },
    /// The request answered its client.
    Respond { result: String },
    /// A settle read after quiescence.
    Settle { customer: String, result: String },
}

/// What a chooser sees at a decision.
#[derive(Debug)]
pub struct View<'a> {
    pub step: usize,
    /// Requests that may move, ascending.
    pub runnable: &'a [usize],
    /// The request that moved at the previous decision.
    pub last: Option<usize>,
    /// Where each request is parked, if it is.
    pub parked_at: &'a [Option<Point>],
    pub ticks_so_far: usize,
}

/// Decides who moves. `None` means the default: the lowest runnable request.
pub trait Chooser {
    fn choose(&mut self, view: &View<'_>) -> Option<Token>;
}

/// A schedule given up front (replay): its tokens, then the default.
#[derive(Debug, Clone)]
pub struct Replay {
    tokens: std::vec::IntoIter<Token>,
}

impl Replay {
    pub fn new(schedule: &Schedule) -> Replay {
        Replay { tokens: schedule.0.clone().into_iter() }
    }
}

impl Chooser for Replay {
    fn choose(&mut self, _view: &View<'_>) -> Option<Token> {
        self.tokens.next()
    }
}

/// A schedule that cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule step {step} ({token}): {reason}")]
pub struct ReplayError {
    pub step: usize,
    pub token: String,
    pub reason: String,
}

/// The step cap grows with the scenario: this many steps per request.
const STEPS_PER_REQUEST: usize = 250;

#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Decisions after which a run that has not ended is a livelock (at
    /// least 250 per request).
    pub max_steps: usize,
    pub record_trace: bool,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions { max_steps: 1_000, record_trace: false }
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
    pub outcomes: Vec<RequestOutcome>,
    pub settles: Vec<Settle>,
    pub world: World,
    pub created_by: BTreeMap<String, Creator>,
    pub end: End,
}

impl Execution {
    /// The schedule without its tail of default decisions: replaying it
    /// gives the same run.
    pub fn minimal_schedule(&self) -> Schedule {
        let keep = self.was_default.iter().rposition(|d| !d).map_or(0, |i| i + 1);
        Schedule(self.schedule.0[..keep].to_vec())
    }
}

/// The model's services at the moment an operation starts: a lockstep
/// backend starts the same operation from the same clocks and ids.
#[derive(Debug, Clone)]
pub struct Services {
    pub now_ms: u64,
    pub seq: u64,
    pub ids: IdGen,
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
}

fn services_of(world: &World) -> Services {
    Services { now_ms: world.now_ms(), seq: world.logical_clock().get(), ids: world.ids().clone() }
}

fn reborrow<'a>(shadow: &'a mut Option<&mut dyn Shadow>) -> Option<&'a mut dyn Shadow> {
    match shadow {
        Some(shadow) => Some(&mut **shadow),
        None => None,
    }
}

/// Runs one request to its end with nobody else moving (so nothing can
/// wait), telling `shadow` each operation.
fn drive_alone<F: Future>(
    world: &mut World,
    session: RequestId,
    conn: &MemConn,
    future: F,
    mut shadow: Option<&mut dyn Shadow>,
) -> F::Output {
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = poll_once(future.as_mut()) {
            return output;
        }
        let op = conn.take_op().expect("a pending request is parked on an op");
        let before = shadow.is_some().then(|| services_of(world));
        let outcome = match world.apply(session, &op, None) {
            Ok(outcome) => outcome,
            Err(blocked) => panic!("request {session} blocked on txn {} with nobody else running", blocked.0),
        };
        if let (Some(shadow), Some(before)) = (shadow.as_deref_mut(), &before) {
            shadow.op(session, &op, None, before, ModelResult::Done(&outcome));
        }
        conn.answer(outcome);
    }
}

type RequestFuture = Pin<Box<dyn Future<Output = Result<Response, ApiError>>>>;

struct Slot {
    conn: MemConn,
    future: Option<RequestFuture>,
    parked: Option<Op>,
    /// The parked op has not been offered yet (faults apply to first offers).
    fresh: bool,
    /// When the current wait began (waiters wake in this order).
    wait_seq: u64,
    visits: BTreeMap<Point, u32>,
    outcome: Option<RequestOutcome>,
}

struct Run<'p, 's> {
    prepared: &'p Prepared,
    world: World,
    shadow: Option<&'s mut dyn Shadow>,
    waits: u64,
    slots: Vec<Slot>,
    trace: Vec<Event>,
    record: bool,
    created_by: BTreeMap<String, Creator>,
    step: usize,
}

impl Run<'_, '_> {
    fn event(&mut self, request: Option<usize>, kind: EventKind) {
        if self.record {
            self.trace.push(Event { step: Some(self.step), request, kind });
        }
    }

    /// Polls request `i` until it parks at a named point or finishes.
    fn advance(&mut self, i: usize) {
        loop {
            let slot = &mut self.slots[i];
            let future = slot.future.as_mut().expect("an unfinished request has a future");
            match poll_once(future.as_mut()) {
                Poll::Ready(result) => {
                    slot.future = None;
                    if self.record {
                        let text = match &result {
                            Ok(response) => format!("ok {}", describe_response(response)),
                            Err(error) => format!("error {} {}", error.code, error.message),
                        };
                        self.event(Some(i), EventKind::Respond { result: text });
                    }
                    self.slots[i].outcome = Some(RequestOutcome::Responded(Box::new(result)));
                    return;
                }
                Poll::Pending => {
                    let op = slot.conn.take_op().expect("a pending request is parked on an op");
                    if op.point().is_none() {
                        let outcome = self.apply_alone(i, &op, None);
                        self.slots[i].conn.answer(outcome);
                        continue;
                    }
                    slot.parked = Some(op);
                    slot.fresh = true;
                    return;
                }
            }
        }
    }

    /// The model's services now (only a shadow needs them).
    fn services(&self) -> Option<Services> {
        self.shadow.as_ref().map(|_| services_of(&self.world))
    }

    /// Applies an operation that cannot wait (nobody else holds anything it
    /// needs), telling the shadow.
    fn apply_alone(&mut self, i: RequestId, op: &Op, fault: Option<Fault>) -> Outcome {
        let before = self.services();
        let outcome = match self.world.apply(i, op, fault) {
            Ok(outcome) => outcome,
            Err(blocked) => panic!("request {i} blocked on txn {} where nothing can block", blocked.0),
        };
        if let (Some(shadow), Some(before)) = (self.shadow.as_deref_mut(), before) {
            shadow.op(i, op, fault, &before, ModelResult::Done(&outcome));
        }
        outcome
    }

    fn runnable(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].parked.is_some() && self.world.waiting_for(i).is_none())
            .collect()
    }

    /// Waiters whose transaction ended retry now, in the order they began
    /// waiting; a retry may end a transaction in turn (a failed statement).
    fn wake(&mut self) {
        loop {
            let next = (0..self.slots.len())
                .filter(|&i| {
                    self.world.waiting_for(i).is_some_and(|txn| self.world.request_of_txn(txn).is_none())
                })
                .min_by_key(|&i| self.slots[i].wait_seq);
            let Some(i) = next else { return };
            let op = self.slots[i].parked.take().expect("a waiter is parked");
            self.offer(i, op, None, None);
        }
    }

    /// Whether request `i`'s wait closes a cycle of waits.
    fn closes_cycle(&self, i: usize) -> bool {
        self.world.closes_cycle(i)
    }

    fn perform(&mut self, i: usize, explicit: Option<FaultKind>) -> Result<(), String> {
        let slot = &mut self.slots[i];
        let op = slot.parked.take().expect("runnable requests are parked");
        let point = op.point().expect("parked ops have points");
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
            self.world.crash(i);
            if let Some(shadow) = self.shadow.as_deref_mut() {
                shadow.crash(i);
            }
            let slot = &mut self.slots[i];
            slot.future = None;
            slot.outcome = Some(RequestOutcome::Crashed { at: point });
            if self.record {
                self.event(Some(i), EventKind::Crash { point, op: op.summary() });
            }
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
        match self.world.apply(i, &op, world_fault) {
            Ok(outcome) => {
                if let (Some(shadow), Some(before)) = (self.shadow.as_deref_mut(), &before) {
                    shadow.op(i, &op, world_fault, before, ModelResult::Done(&outcome));
                }
                if let Outcome::Insert { outcome: InsertOutcome::Inserted(row) } = &outcome {
                    self.created_by.insert(row.internal_id.clone(), Creator::Request(i));
                }
                if self.record {
                    let kind = EventKind::Op { point, op: op.summary(), result: outcome.summary(), fault };
                    self.event(Some(i), kind);
                }
                self.slots[i].conn.answer(outcome);
                self.advance(i);
            }
            Err(Blocked(txn)) => {
                let holder = self.world.request_of_txn(txn);
                if self.record {
                    self.event(Some(i), EventKind::Wait { point, op: op.summary(), txn, holder });
                }
                self.waits += 1;
                self.slots[i].wait_seq = self.waits;
                if self.closes_cycle(i) {
                    if let (Some(shadow), Some(before)) = (self.shadow.as_deref_mut(), &before) {
                        shadow.op(i, &op, world_fault, before, ModelResult::DeadlockVictim);
                    }
                    let outcome = self.world.deadlock_victim(i);
                    if self.record {
                        self.event(Some(i), EventKind::Deadlock { point, op: op.summary() });
                    }
                    self.slots[i].conn.answer(outcome);
                    self.advance(i);
                } else {
                    if let (Some(shadow), Some(before)) = (self.shadow.as_deref_mut(), &before) {
                        shadow.op(i, &op, world_fault, before, ModelResult::Waits);
                    }
                    self.slots[i].parked = Some(op);
                }
            }
        }
    }

    fn parked_points(&self) -> Vec<Option<Point>> {
        self.slots.iter().map(|s| s.parked.as_ref().and_then(Op::point)).collect()
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
    let world = prepared.base.clone();
    let strategy = prepared.strategy;
    let created_by: BTreeMap<String, Creator> =
        prepared.seeded.iter().map(|(id, index)| (id.clone(), Creator::Seed(*index))).collect();
    let slots = prepared
        .scenario
        .requests
        .iter()
        .map(|request| {
            let conn = MemConn::new(&world);
            let request = request.clone();
            let future_conn = conn.clone();
            let future: RequestFuture =
                Box::pin(async move { execute(&future_conn, strategy, &request).await });
            Slot {
                conn,
                future: Some(future),
                parked: None,
                fresh: false,
                wait_seq: 0,
                visits: BTreeMap::new(),
                outcome: None,
            }
        })
        .collect();
    let mut run = Run {
        prepared,
        world,
        shadow,
        waits: 0,
        slots,
        trace: Vec::new(),
        record: options.record_trace,
        created_by,
        step: 0,
    };
    for i in 0..run.slots.len() {
        run.advance(i);
    }

    // Long scenarios need more steps: the cap only has to catch livelocks.
    let max_steps = options.max_steps.max(STEPS_PER_REQUEST * run.slots.len());
    let mut schedule = Vec::new();
    let mut was_default = Vec::new();
    let mut preemptions = 0;
    let mut last: Option<usize> = None;
    let mut ticks = 0;
    let end = loop {
        let runnable = run.runnable();
        if runnable.is_empty() {
            break None;
        }
        if run.step >= max_steps {
            break Some(End::StepCap { steps: run.step });
        }
        let parked_at = run.parked_points();
        let view =
            View { step: run.step, runnable: &runnable, last, parked_at: &parked_at, ticks_so_far: ticks };
        let default = Token::run(runnable[0]);
        let token = chooser.choose(&view).unwrap_or(default);
        was_default.push(token == default);
        let fail = |reason: String| ReplayError { step: schedule.len(), token: token.to_string(), reason };
        match token {
            Token::Tick { ms } => {
                run.world.advance_clock(ms);
                ticks += 1;
                let now_ms = run.world.now_ms();
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
                if last.is_some_and(|l| l != request && runnable.contains(&l)) {
                    preemptions += 1;
                }
                run.perform(request, fault).map_err(fail)?;
                run.wake();
                last = Some(request);
            }
        }
        schedule.push(token);
        run.step += 1;
    };

    let end = end.unwrap_or_else(|| {
        let waiting: Vec<(usize, Option<usize>)> = run
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.outcome.is_none())
            .map(|(i, _)| (i, run.world.waiting_for(i).and_then(|t| run.world.request_of_txn(t))))
            .collect();
        if !waiting.is_empty() {
            End::Stalled { waiting }
        } else {
            let open: Vec<usize> =
                (0..run.slots.len()).filter(|i| run.world.open_txn(*i).is_some()).collect();
            if open.is_empty() && run.world.is_quiescent() {
                End::Quiescent
            } else {
                End::OpenTransaction { requests: open }
            }
        }
    });

    let mut settles = Vec::new();
    if end == End::Quiescent {
        settle(&mut run, &mut settles);
    }
    let outcomes = run
        .slots
        .iter()
        .map(|s| {
            s.outcome
                .clone()
                .unwrap_or(RequestOutcome::Unfinished { at: s.parked.as_ref().and_then(Op::point) })
        })
        .collect();
    Ok(Execution {
        schedule: Schedule(schedule),
        preemptions,
        was_default,
        trace: run.trace,
        outcomes,
        settles,
        world: run.world,
        created_by: run.created_by,
        end,
    })
}

/// What the settle reads visit: every customer the scenario names by id,
/// and every committed customer (by id, or an id-less one by its email).
pub fn settle_keys(scenario: &Scenario, committed: &[cusim::model::CustomerRow]) -> Vec<(Scope, SettleKey)> {
    let mut keys: Vec<(Scope, SettleKey)> = scenario
        .named_customers()
        .into_iter()
        .filter(|(_, id)| validate_customer_id(id).is_ok())
        .map(|(scope, id)| (scope, SettleKey::Id(id)))
        .collect();
    for row in committed {
        match (&row.id, row.idless_email_key()) {
            (Some(id), _) => keys.push((row.scope(), SettleKey::Id(id.clone()))),
            (None, Some(_)) => {
                let email = row.email.clone().expect("an id-less key has an email");
                keys.push((row.scope(), SettleKey::Email(email)));
            }
            (None, None) => {}
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// The request a settle read makes: a read by id, or an id-less create
/// with the customer's email.
pub fn settle_request(scope: &Scope, key: &SettleKey) -> Request {
    let mut request = match key {
        SettleKey::Id(id) => Request::get(id),
        SettleKey::Email(email) => Request::create(
            None,
            cusim::model::CustomerData { email: Some(email.clone()), ..Default::default() },
        ),
    };
    match &mut request {
        Request::Get { org, env, .. } | Request::Create { org, env, .. } => {
            *org = Some(scope.org_id.clone());
            *env = Some(scope.env);
        }
        _ => unreachable!("settle reads are gets and id-less creates"),
    }
    request
}

/// One read of each customer the scenario names or the DB holds, through
/// the strategy's read path, one at a time.
fn settle(run: &mut Run<'_, '_>, settles: &mut Vec<Settle>) {
    let customers = settle_keys(&run.prepared.scenario, &run.world.committed_customers());
    let first_session: RequestId =
        run.prepared.scenario.requests.len() + run.prepared.scenario.customers.len();
    for (n, (scope, customer)) in customers.into_iter().enumerate() {
        let request = settle_request(&scope, &customer);
        let conn = MemConn::new(&run.world);
        let future = execute(&conn, run.prepared.strategy, &request);
        let result = drive_alone(&mut run.world, first_session + n, &conn, future, reborrow(&mut run.shadow));
        if run.record {
            let text = match &result {
                Ok(response) => format!("ok {}", describe_response(response)),
                Err(error) => format!("error {} {}", error.code, error.message),
            };
            run.trace.push(Event {
                step: None,
                request: None,
                kind: EventKind::Settle { customer: format!("{scope}/{customer}"), result: text },
            });
        }
        settles.push(Settle { scope, customer, result });
    }
}
