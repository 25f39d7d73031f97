//! Runs the stepper did not drive: requests that moved on their own over
//! one world (loom's threads over a `SharedWorld`, madsim's tasks in
//! virtual time). Observed and judged as the stepper's runs are.

use cusim::backend::mem::{Deducted, RequestId, World};

use crate::judge::{creators, judge, End, Observation, RequestOutcome, State, Violation};

use super::stepper::{settle_reads, Prepared};

/// A free run, observed and judged.
#[derive(Debug)]
pub struct Judged {
    pub observation: Observation,
    pub violations: Vec<Violation>,
}

/// Observes a free run of `prepared` that left `world`, its requests
/// having ended as `outcomes` (after earlier attempts `retried`, if their
/// clients retried; empty is none), each attempt's deductions having done
/// what `deducted` says (per request: the earlier attempts, then the last),
/// and inserted `inserted` (internal id, request): how it ended, then (if
/// it reached quiescence) the settle reads on `world`; and judges it.
pub fn judge_free_run(
    prepared: &Prepared,
    mut world: World,
    (outcomes, retried): (&[RequestOutcome], Vec<Vec<RequestOutcome>>),
    deducted: Vec<Vec<Deducted>>,
    inserted: &[(String, RequestId)],
) -> Judged {
    let scenario = &prepared.scenario;
    let created_by = creators(prepared.seeded(), inserted, outcomes.len(), 0);
    let end = End::of_world(&world, outcomes, |_| None);
    let settles = match end {
        End::Quiescent => settle_reads(&mut world, prepared, None).settles,
        _ => Vec::new(),
    };
    let state = State::of_world(&world);
    let mut retried = retried;
    retried.resize(outcomes.len(), Vec::new());
    let observation = Observation {
        outcomes: outcomes.to_vec(),
        retried,
        deducted: Some(deducted),
        settles,
        created_by,
        end,
        state,
    };
    let violations = judge(scenario, &observation);
    Judged { observation, violations }
}
