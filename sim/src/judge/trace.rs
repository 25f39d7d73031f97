//! The history a driver records of a run, one event per line of its
//! trace: operations, waits, deadlocks, crashes, clock moves, responses
//! and settle reads. Reports print it; the race classifier reads it.

use std::sync::Arc;

use cusim::backend::mem::TxnId;
use cusim::backend::{Op, Outcome, Point};
use serde::Serialize;

use crate::input::scenario::FaultKind;

/// One line of a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// The decision this happened in (settle reads have none).
    pub step: Option<usize>,
    pub request: Option<usize>,
    #[serde(flatten)]
    pub kind: EventKind,
    /// The decisions that happen before this event's decision.
    #[serde(skip)]
    pub past: Past,
}

/// The decisions of a run that happen before a decision: the transitive
/// closure of each mover's own order (a request's decisions, the clock's)
/// and of the order in which decisions that conflict ran (the exhaustive
/// scheduler's dependency relation, `drive::stepper::footprint`). Every
/// schedule of one class of equivalent schedules gives each decision the
/// same past, so what is read through it (the race matchers) does not
/// depend on which of them ran. `Past::default()` is unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Past(Option<Arc<[u64]>>);

impl Past {
    /// The pasts of the decisions of a run whose movers are `movers` (per
    /// decision, who acted in it: requests, or `None` for the clock), where
    /// decisions `a < b` conflict when `conflict(a, b)`.
    pub fn of_run(movers: &[Vec<Option<usize>>], conflict: impl Fn(usize, usize) -> bool) -> Vec<Past> {
        let words = movers.len().div_ceil(64);
        let mut pasts: Vec<Vec<u64>> = Vec::with_capacity(movers.len());
        for b in 0..movers.len() {
            let mut past = vec![0u64; words];
            for a in 0..b {
                if movers[a].iter().any(|m| movers[b].contains(m)) || conflict(a, b) {
                    past[a / 64] |= 1 << (a % 64);
                    for (word, other) in past.iter_mut().zip(&pasts[a]) {
                        *word |= other;
                    }
                }
            }
            pasts.push(past);
        }
        pasts.into_iter().map(|p| Past(Some(p.into()))).collect()
    }

    /// Whether decision `decision` is in this past.
    ///
    /// # Panics
    /// When the past is unknown (the trace was recorded without it).
    pub fn has(&self, decision: usize) -> bool {
        let bits = self.0.as_ref().expect("a trace read for its order records each decision's past");
        bits.get(decision / 64).is_some_and(|w| w & (1 << (decision % 64)) != 0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum EventKind {
    /// An operation ran at its point: `op` and `result` say it in a line,
    /// `call` holds it as it was (what the race matcher reads).
    Op {
        point: Point,
        op: String,
        result: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        fault: Option<FaultKind>,
        #[serde(skip)]
        call: Box<Call>,
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
    /// The client sends the request again (`attempt` counts from 2);
    /// with an idempotency key, the same key.
    Retry { attempt: u32 },
    /// The request's attempt arrives (`attempt` counts from 1): its code
    /// runs up to its first operation.
    Arrive { attempt: u32 },
    /// A settle read after quiescence.
    Settle { customer: String, result: String },
}

/// An operation as it was made, and what it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub op: Op,
    pub outcome: Outcome,
}
