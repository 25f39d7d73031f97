//! The history of a check run: every call's invocation and completion,
//! with the client's monotonic times, what was sent and what came back,
//! kept as one JSON file. The verdict is judged from it alone, so a saved
//! history can be judged again, or reproduced on the model.

use std::path::Path;

use cusim::model::Catalog;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::profile::Profile;
use super::workload::{Call, Group};

/// The history file's format version (2: the target's profile and the
/// preflight's lines; a format 1 history is read with the current
/// contract's profile, the only one its checker knew).
pub const FORMAT: u32 = 2;

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
    /// The target's facts the run was sent and is judged by.
    #[serde(default)]
    pub profile: Profile,
    /// How the preflight found each fact (or that it was given).
    #[serde(default)]
    pub preflight: Vec<String>,
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
        // From format 2 on a history keeps its target's profile: a missing
        // one is no default.
        let raw: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
        if raw.get("format").and_then(Value::as_u64).is_some_and(|f| f >= 2) && raw.get("profile").is_none() {
            return Err(format!(
                "{}: at profile: missing (a format 2 history keeps the profile its target was checked by)",
                path.display()
            ));
        }
        let de = &mut serde_json::Deserializer::from_str(&text);
        let history: History = serde_path_to_error::deserialize(de)
            .map_err(|e| format!("{}: at {}: {}", path.display(), e.path(), e.inner()))?;
        if !(1..=FORMAT).contains(&history.format) {
            return Err(format!(
                "{}: at format: {} is not a history format this cusim reads (1 to {FORMAT})",
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
