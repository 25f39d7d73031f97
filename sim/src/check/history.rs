//! The history of a check run: every call's invocation and completion,
//! with the client's monotonic times, what was sent and what came back,
//! kept as one JSON file. The verdict is judged from it alone, so a saved
//! history can be judged again, or reproduced on the model.

use std::path::Path;

use cusim::model::Catalog;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::workload::{Call, Group};

/// The history file's format version.
pub const FORMAT: u32 = 1;

/// Who sent a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sender {
    /// A group's setup, sent before its clients are released.
    Setup,
    /// Client N of the run.
    Client(usize),
    /// The read-back of every touched customer after the run.
    Readback,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// A 2xx answer with a JSON body.
    Ok { status: u16, body: Value },
    /// A 4xx or 5xx answer: its status, and the code and message of its
    /// JSON error body (empty when it had none).
    Failed { status: u16, code: String, message: String },
    /// No usable answer: a timeout, a connection refused or lost, or a
    /// body that is not JSON. Whether the call took effect is unknown.
    Unknown { reason: String },
}

impl Outcome {
    pub fn ok_body(&self) -> Option<&Value> {
        match self {
            Outcome::Ok { body, .. } => Some(body),
            _ => None,
        }
    }

    /// The error code of a failed call.
    pub fn code(&self) -> Option<&str> {
        match self {
            Outcome::Failed { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A short form for tables: `200`, `500 internal_error`, `unknown`.
    pub fn short(&self) -> String {
        match self {
            Outcome::Ok { status, .. } => status.to_string(),
            Outcome::Failed { status, code, .. } => format!("{status} {code}"),
            Outcome::Unknown { .. } => "unknown".into(),
        }
    }
}

/// One call: one attempt of one logical request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Its place in the history.
    pub index: usize,
    /// The group it belongs to (none for the read-back).
    pub group: Option<usize>,
    pub sender: Sender,
    /// Its place in its sender's lane of the group.
    pub step: usize,
    /// 0 for the first attempt, then 1, 2… for each retry.
    pub attempt: u32,
    pub call: Call,
    /// When it was sent and when it ended, in microseconds since the run began
    /// (the checker's monotonic clock).
    pub invoked_us: u64,
    pub completed_us: u64,
    pub outcome: Outcome,
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub format: u32,
    pub target: String,
    pub workload: String,
    pub seed: u64,
    pub run_id: String,
    pub clients: usize,
    pub feature: String,
    pub catalog: Catalog,
    pub groups: Vec<Group>,
    pub events: Vec<Event>,
    /// How long the run took, in microseconds (the read-back included).
    pub elapsed_us: u64,
    /// Why the run stopped: `ops`, `time` or `interrupted`.
    pub stopped_by: String,
}

impl History {
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| format!("cannot encode the history: {e}"))?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: cannot write: {e}", path.display()))
    }

    pub fn load(path: &Path) -> Result<History, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        let history: History = serde_path_to_error::deserialize(de)
            .map_err(|e| format!("{}: at {}: {}", path.display(), e.path(), e.inner()))?;
        if history.format != FORMAT {
            return Err(format!(
                "{}: at format: {} is not a history format this cusim reads ({FORMAT})",
                path.display(),
                history.format
            ));
        }
        let at = |what: String| Err(format!("{}: at {what}", path.display()));
        for (i, group) in history.groups.iter().enumerate() {
            if group.index != i {
                return at(format!("groups[{i}].index: {} (groups are listed in order)", group.index));
            }
        }
        for (i, event) in history.events.iter().enumerate() {
            if let Some(g) = event.group {
                let Some(group) = history.groups.get(g) else {
                    return at(format!(
                        "events[{i}].group: {g}, but there are {} groups",
                        history.groups.len()
                    ));
                };
                let steps = match event.sender {
                    Sender::Setup => group.setup.len(),
                    Sender::Client(n) => match group.lanes.get(n) {
                        Some(lane) => lane.len(),
                        None => {
                            return at(format!(
                                "events[{i}].sender: client {n}, but group {g} has {} lanes",
                                group.lanes.len()
                            ))
                        }
                    },
                    Sender::Readback => return at(format!("events[{i}]: a read-back belongs to no group")),
                };
                if event.step >= steps {
                    return at(format!(
                        "events[{i}].step: {}, but its lane in group {g} has {steps} calls",
                        event.step
                    ));
                }
            }
            if event.index != i {
                return Err(format!(
                    "{}: at events[{i}].index: {} (events are listed in order)",
                    path.display(),
                    event.index
                ));
            }
        }
        Ok(history)
    }

    /// The calls that were sent (not counting the read-back).
    pub fn operations(&self) -> usize {
        self.events.iter().filter(|e| e.sender != Sender::Readback).count()
    }
}
