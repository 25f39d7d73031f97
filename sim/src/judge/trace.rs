//! The history a driver records of a run, one event per line of its
//! trace: operations, waits, deadlocks, crashes, clock moves, responses
//! and settle reads. Reports print it; the race classifier reads it.

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
    /// A settle read after quiescence.
    Settle { customer: String, result: String },
}

/// An operation as it was made, and what it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub op: Op,
    pub outcome: Outcome,
}
