//! Runs the stepper did not drive: requests that moved on their own over
//! one world (loom's threads over a `SharedWorld`, madsim's tasks in
//! virtual time). Observed and judged as the stepper's runs are.

use cusim::backend::mem::{MemConn, RequestId, World};
use cusim::flow::execute;

use crate::judge::settle::{self, SettleRead};
use crate::judge::{creators, judge, End, Observation, RequestOutcome, Settle, State, Violation};

use super::stepper::{drive_alone, Prepared};

/// A free run, observed and judged.
#[derive(Debug)]
pub struct Judged {
    pub observation: Observation,
    pub violations: Vec<Violation>,
}

/// Observes a free run of `prepared` that left `world`, its requests
/// having ended as `outcomes` and inserted `inserted` (internal id,
/// request): how it ended, then (if it reached quiescence) the settle
/// reads on `world`; and judges it.
pub fn judge_free_run(
    prepared: &Prepared,
    mut world: World,
    outcomes: &[RequestOutcome],
    inserted: &[(String, RequestId)],
) -> Judged {
    let scenario = &prepared.scenario;
    let created_by = creators(prepared.seeded(), inserted, outcomes.len(), 0);
    let end = End::of_world(&world, outcomes, |_| None);
    let mut settles = Vec::new();
    if end == End::Quiescent {
        let first_session = scenario.requests.len() + scenario.customers.len();
        let reads = settle::plan(scenario, &world.committed_customers());
        for (n, SettleRead { scope, customer, request }) in reads.into_iter().enumerate() {
            let conn = MemConn::new(&world);
            let future = execute(&conn, prepared.strategy, &request);
            let result = drive_alone(&mut world, first_session + n, &conn, future, None);
            settles.push(Settle { scope, customer, result });
        }
    }
    let state = State::of_world(&world);
    let observation = Observation { outcomes: outcomes.to_vec(), settles, created_by, end, state };
    let violations = judge(scenario, &observation);
    Judged { observation, violations }
}
