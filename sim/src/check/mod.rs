//! `cusim check`: a black-box checker for any server that speaks the API
//! (API.md). Concurrent clients drive the live server with a workload
//! drawn from a seed ([`workload`]), over HTTP only ([`client`]); every
//! call and answer is recorded ([`history`]); afterwards every touched
//! customer is read back through the API, and the history is judged
//! against the invariants as a client can see them ([`verdict`]).
//!
//! Nothing here reads the server's memory or calls its code: the same
//! checker judges `cusim serve` (whose truth is known: `legacy` must be
//! caught, `safe` must pass) and any other implementation.

pub mod client;
pub mod history;
pub mod page;
pub mod preflight;
pub mod profile;
pub mod reproduce;
pub mod rows;
pub mod verdict;
pub mod workload;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cusim::model::Catalog;
use cusim::rng::Rng;

use crate::judge::invariants::owed_defaults;
use serde_json::Value;

use self::client::{Client, Reply, Target};
use self::history::{Event, History, Outcome, Sender, FORMAT};
use self::preflight::{Given, Learned};
use self::workload::{Call, Workload};

/// The most clients a run may have.
pub const MAX_CLIENTS: usize = 256;

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub target: Target,
    pub secret_key: String,
    pub workload: Workload,
    /// Clients released together in each group.
    pub clients: usize,
    /// Stop starting groups once this many calls were sent.
    pub ops: u64,
    /// Stop starting groups once the run has lasted this long.
    pub time_limit: Duration,
    pub seed: u64,
    /// How long a call may take before its outcome is unknown.
    pub request_timeout: Duration,
    /// How long the target may go on with a call its client gave up on
    /// (the server's own time limit): the read-back waits this long after
    /// a call whose outcome is unknown.
    pub server_time_limit: Duration,
    /// The catalog the target serves (owed defaults are judged against it).
    pub catalog: Catalog,
    /// Prefix of every id and email of the run (fresh per run).
    pub run_id: String,
    /// The target's facts given instead of learned (`--routes`,
    /// `--api-version`, `--target-profile`).
    pub given: Given,
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0}")]
    BadInput(String),
    #[error("the target is unreachable: {0}")]
    Unreachable(String),
    /// It answered, but not as any generation of the API does.
    #[error("the target does not speak the API as this client knows it: {0}")]
    Unspoken(String),
}

/// How far a run has got, for progress lines.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub groups: usize,
    pub calls: u64,
    pub elapsed: Duration,
}

/// A run id nobody used before: the seed's first draw mixed with the
/// process and the wall clock, so that a rerun of the same seed on the same
/// server makes new customers (the workload itself is the seed's alone).
pub fn fresh_run_id(seed: u64) -> String {
    let clock =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mixed = Rng::from_state(seed ^ clock ^ (u64::from(std::process::id()) << 32)).next_u64();
    format!("chk{:010x}", mixed & 0xff_ffff_ffff)
}

/// The feature checks and tracks name: the first feature of the first
/// default a new customer is owed (by group) that grants one.
pub fn feature_of(catalog: &Catalog) -> Result<String, CheckError> {
    owed_defaults(catalog, false, None)
        .iter()
        .filter_map(|(_, product)| catalog.product(product))
        .find_map(|p| p.features.keys().next().cloned())
        .ok_or_else(|| {
            CheckError::BadInput("the catalog owes a new customer no default that grants a feature".into())
        })
}

/// The preflight: the target's profile, learned (or as given), before a run.
pub async fn learn(config: &CheckConfig) -> Result<Learned, CheckError> {
    let feature = feature_of(&config.catalog)?;
    let mut client = Client::new(
        config.target.clone(),
        config.secret_key.clone(),
        config.request_timeout,
        profile::Profile::default(),
    );
    preflight::learn(&mut client, &config.run_id, &feature, &config.given).await
}

/// Runs the workload against the target of profile `learned` and reads
/// back every customer it touched. `progress` is told after each group;
/// `stop` ends the run after the group in flight (an interrupt).
pub async fn run(
    config: &CheckConfig,
    learned: &Learned,
    stop: Arc<AtomicBool>,
    mut progress: impl FnMut(Progress),
) -> Result<History, CheckError> {
    if config.clients < 2 || config.clients > MAX_CLIENTS {
        return Err(CheckError::BadInput(format!("--clients {}: from 2 to {MAX_CLIENTS}", config.clients)));
    }
    let feature = feature_of(&config.catalog)?;
    let start = Instant::now();
    let since = |at: Instant| at.duration_since(start).as_micros() as u64;
    let new_client = || {
        Client::new(config.target.clone(), config.secret_key.clone(), config.request_timeout, learned.profile)
    };

    let mut clients: Vec<Client> = (0..config.clients).map(|_| new_client()).collect();
    let mut rng = Rng::from_state(config.seed);
    let mut groups = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    let mut calls = 0u64;
    let stopped_by = loop {
        if stop.load(Ordering::Relaxed) {
            break "interrupted";
        }
        if calls >= config.ops {
            break "ops";
        }
        if start.elapsed() >= config.time_limit {
            break "time";
        }
        let index = groups.len();
        let group = config.workload.group(&mut rng, index, &config.run_id, config.clients, &feature);
        let mut group_events = Vec::new();
        for (step, call) in group.setup.iter().enumerate() {
            perform(&mut clients[0], call, Some(index), Sender::Setup, step, &since, &mut group_events).await;
        }
        // One task per lane, each with a client of its own; clients beyond
        // the lanes wait for the next group.
        let lanes = group.lanes.len().min(clients.len());
        let barrier = Arc::new(tokio::sync::Barrier::new(lanes));
        let mut tasks = Vec::new();
        for (n, (lane, mut client)) in group.lanes.iter().cloned().zip(clients.drain(..lanes)).enumerate() {
            let barrier = Arc::clone(&barrier);
            tasks.push(tokio::spawn(async move {
                let mut lane_events = Vec::new();
                barrier.wait().await;
                for (step, call) in lane.iter().enumerate() {
                    perform(
                        &mut client,
                        call,
                        Some(index),
                        Sender::Client(n),
                        step,
                        &|at| at.duration_since(start).as_micros() as u64,
                        &mut lane_events,
                    )
                    .await;
                }
                (client, lane_events)
            }));
        }
        for task in tasks {
            let (client, lane_events) = task.await.expect("a client task does not panic");
            clients.push(client);
            group_events.extend(lane_events);
        }
        group_events.sort_by_key(|e| (e.invoked_us, e.sender, e.step, e.attempt));
        calls += group_events.len() as u64;
        append(&mut events, group_events);
        groups.push(group);
        progress(Progress { groups: groups.len(), calls, elapsed: start.elapsed() });
    };

    // A call whose outcome is unknown may still be running on the server:
    // give it the server's time limit, and the client's, before reading back.
    if events.iter().any(|e| matches!(e.outcome, Outcome::Unknown { .. })) {
        tokio::time::sleep(config.server_time_limit.max(config.request_timeout)).await;
    }
    // Read back every customer the run touched (by id; an id-less one by
    // an id-less create with its email), spread over the clients.
    let touched = verdict::read_back_targets(&groups);
    let per_client = touched.len().div_ceil(clients.len()).max(1);
    let mut tasks = Vec::new();
    for (calls, mut client) in touched.chunks(per_client).map(<[Call]>::to_vec).zip(clients.drain(..)) {
        tasks.push(tokio::spawn(async move {
            let mut read = Vec::new();
            for call in calls {
                perform(
                    &mut client,
                    &call,
                    None,
                    Sender::Readback,
                    0,
                    &|at| at.duration_since(start).as_micros() as u64,
                    &mut read,
                )
                .await;
            }
            read
        }));
    }
    let mut readback = Vec::new();
    for task in tasks {
        readback.extend(task.await.expect("a read-back task does not panic"));
    }
    readback.sort_by(|a, b| verdict::read_back_order(&a.call).cmp(&verdict::read_back_order(&b.call)));
    append(&mut events, readback);

    Ok(History {
        format: FORMAT,
        target: config.target.url(),
        workload: config.workload.name.clone(),
        seed: config.seed,
        run_id: config.run_id.clone(),
        clients: config.clients,
        feature,
        catalog: config.catalog.clone(),
        profile: learned.profile,
        preflight: learned.lines.clone(),
        groups,
        events,
        elapsed_us: since(Instant::now()),
        stopped_by: stopped_by.to_owned(),
    })
}

/// Appends `more` to `events`, numbering them.
pub(crate) fn append(events: &mut Vec<Event>, more: Vec<Event>) {
    for mut event in more {
        event.index = events.len();
        events.push(event);
    }
}

/// Whether a track is sent again after an attempt that ended so: no
/// answer, or a 5xx.
fn retry_after(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Unknown { .. } => true,
        Outcome::Failed { status, .. } => *status >= 500,
        Outcome::Ok { .. } => false,
    }
}

/// Sends `call` (and its retries), recording each attempt.
pub(crate) async fn perform(
    client: &mut Client,
    call: &Call,
    group: Option<usize>,
    sender: Sender,
    step: usize,
    since: &impl Fn(Instant) -> u64,
    events: &mut Vec<Event>,
) {
    let retries = match call {
        Call::Track { retries, .. } => *retries,
        _ => 0,
    };
    for attempt in 0..=retries {
        let invoked = Instant::now();
        let reply = client.send(call).await;
        let completed = Instant::now();
        let outcome = outcome_of(reply);
        let again = retry_after(&outcome);
        events.push(Event {
            index: 0,
            group,
            sender,
            step,
            attempt,
            call: call.clone(),
            invoked_us: since(invoked),
            completed_us: since(completed),
            outcome,
        });
        if !again {
            break;
        }
    }
}

fn outcome_of(reply: Reply) -> Outcome {
    match reply {
        Reply::Unknown(reason) => Outcome::Unknown { reason },
        Reply::Answered { status, body: Ok(body) } if (200..300).contains(&status) => {
            Outcome::Ok { status, body }
        }
        Reply::Answered { status, body } if status >= 400 => {
            let field = |name: &str| {
                body.as_ref()
                    .ok()
                    .and_then(|b| b.get(name))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            Outcome::Failed { status, code: field("code"), message: field("message") }
        }
        Reply::Answered { status, body } => Outcome::Unknown {
            reason: match body {
                Ok(_) => format!("status {status} is neither a success nor an error"),
                Err(why) => format!("a {status} answer whose body is {why}"),
            },
        },
    }
}
