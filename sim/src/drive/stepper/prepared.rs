//! A scenario made ready to run under one strategy: its seed customers
//! exist (created through `safe`, one after another, as SPEC §7 says), in
//! a world every run starts from a copy of.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::task::Poll;

use cusim::backend::mem::{poll_once, MemConn, RequestId, World};
use cusim::backend::Point;
use cusim::flow::{execute, Request, Strategy};

use crate::input::scenario::{evicted_key, FaultKind, Scenario};
use crate::input::schedule::Schedule;
use crate::judge::settle::{self, SettleRead};
use crate::judge::Settle;

use super::choose::Replay;
use super::shadow::{reborrow, ModelResult, Services, Shadow};
use super::{execute_run, RunOptions};

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
            let no_fault: AloneFault<'_> = &|_, _| None;
            match drive_alone(
                &mut world,
                (session, &request),
                (&conn, future),
                reborrow(&mut shadow),
                no_fault,
                &mut Vec::new(),
            ) {
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

    /// Which seed customer made each customer that exists before the run.
    pub fn seeded(&self) -> &BTreeMap<String, usize> {
        &self.seeded
    }
}

/// The fault, if any, at a visit (`point`, occurrence) of a request run alone.
type AloneFault<'f> = &'f dyn Fn(Point, u32) -> Option<FaultKind>;

/// Runs one request to its end with nobody else moving (so nothing can
/// wait), telling `shadow` each operation, with the faults `fault_at`
/// places (`crash` is not one of them). `reached` gets every (point,
/// occurrence) the request visits.
fn drive_alone<F: Future>(
    world: &mut World,
    (session, request): (RequestId, &Request),
    (conn, future): (&MemConn, F),
    mut shadow: Option<&mut dyn Shadow>,
    fault_at: AloneFault<'_>,
    reached: &mut Vec<(Point, u32)>,
) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut visits: BTreeMap<Point, u32> = BTreeMap::new();
    loop {
        if let Poll::Ready(output) = poll_once(future.as_mut()) {
            return output;
        }
        let op = conn.take_op().expect("a pending request is parked on an op");
        let kind = op.point().and_then(|point| {
            let visit = visits.entry(point).or_insert(0);
            *visit += 1;
            reached.push((point, *visit));
            fault_at(point, *visit)
        });
        debug_assert!(kind != Some(FaultKind::Crash), "a request run alone does not crash");
        if kind == Some(FaultKind::CacheEvict) {
            if let Some(key) = evicted_key(request, &op) {
                world.evict(&key);
                if let Some(shadow) = shadow.as_deref_mut() {
                    shadow.evict(&key);
                }
            }
        }
        let fault = kind.and_then(FaultKind::world_fault).filter(|f| f.applies_to_op(&op));
        let before = shadow.is_some().then(|| Services::of(world));
        let outcome = match world.apply(session, &op, fault) {
            Ok(outcome) => outcome,
            Err(blocked) => panic!("request {session} blocked on txn {} with nobody else running", blocked.0),
        };
        if let (Some(shadow), Some(before)) = (shadow.as_deref_mut(), &before) {
            shadow.op(session, &op, fault, before, ModelResult::Done(&outcome));
        }
        conn.answer(outcome);
    }
}

/// What the settle reads of a run saw, and where they went.
pub(crate) struct Settled {
    pub settles: Vec<Settle>,
    /// Every (settle read, named point, occurrence) they reached.
    pub reached: BTreeSet<(usize, Point, u32)>,
}

/// The settle reads of a run of `prepared` that left `world` quiescent,
/// one after another on `world` (as sessions after the requests and seed
/// customers), with the scenario's settle faults, telling `shadow` each
/// operation.
pub(crate) fn settle_reads(
    world: &mut World,
    prepared: &Prepared,
    mut shadow: Option<&mut dyn Shadow>,
) -> Settled {
    let scenario = &prepared.scenario;
    let first_session: RequestId = scenario.requests.len() + scenario.customers.len();
    let reads = settle::plan(scenario, &world.committed_customers());
    let mut settled = Settled { settles: Vec::with_capacity(reads.len()), reached: BTreeSet::new() };
    for (n, SettleRead { scope, customer, request }) in reads.into_iter().enumerate() {
        let conn = MemConn::new(world);
        let future = execute(&conn, prepared.strategy, &request);
        let fault_at: AloneFault<'_> = &|point, visit| scenario.settle_fault_at(n, point, visit);
        let mut reached = Vec::new();
        let result = drive_alone(
            world,
            (first_session + n, &request),
            (&conn, future),
            reborrow(&mut shadow),
            fault_at,
            &mut reached,
        );
        settled.reached.extend(reached.into_iter().map(|(point, visit)| (n, point, visit)));
        settled.settles.push(Settle { scope, customer, result });
    }
    settled
}
