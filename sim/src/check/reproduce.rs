//! From a live failure back to a schedule: the scenario a finding's group
//! implies (its setup as existing customers, the first call of two or
//! three of its clients as requests), searched on the model for a
//! schedule whose answers match the ones observed and that breaks the
//! finding's invariant. Found: a `cusim replay` command that
//! shows the failure step by step, and the races of SPEC §8 its trace
//! holds. Not found in a search that ran the whole (reduced) space: no
//! schedule of the model explains what the server answered, which is a
//! finding about the model (or a server that is not the model).

use std::collections::BTreeMap;
use std::path::Path;

use cusim::flow::{Response, Strategy};
use cusim::model::ApiError;
use serde_json::{json, Value};

use super::history::{Event, History, Outcome, Sender};
use super::profile::Profile;
use super::verdict::Finding;
use super::workload::{Block, Call};
use crate::drive::stepper::{Execution, Prepared, RunOptions};
use crate::explore::search;
use crate::input::scenario::Scenario;
use crate::judge::observation::RequestOutcome;
use crate::judge::races::{classify, Race};
use crate::judge::{judge, Invariant};

/// The most requests a reproduction's scenario has: the space of three
/// concurrent requests runs whole in seconds.
pub const MAX_REQUESTS: usize = 3;

/// What a reproduction found.
#[derive(Debug)]
pub struct Reproduction {
    /// The scenario, as SPEC §7 JSON.
    pub scenario: Value,
    /// The history's event each request of the scenario stands for.
    pub events: Vec<usize>,
    pub strategy: Strategy,
    /// The schedule whose answers match, if one was found.
    pub schedule: Option<String>,
    /// The invariants the matching run broke, and the races its trace holds.
    pub broken: Vec<Invariant>,
    pub races: Vec<Race>,
    pub schedules_run: u64,
    /// Whether every set's whole (reduced) space ran, none matching: no
    /// schedule of the model answers those requests as the server did.
    pub exhausted: bool,
    /// How many sets of requests were tried.
    pub sets_tried: usize,
}

/// The most sets of requests a reproduction tries.
pub const MAX_SUBSETS: usize = 256;

/// The invariants of the model a reproduction of a finding of
/// `invariant` must break: the same one, seen from inside (a read-back
/// without defaults is, inside, a stale cache or a customer without them).
fn accepted(finding: &Finding) -> Vec<Invariant> {
    use Invariant::*;
    match finding.invariant.as_str() {
        "no_internal_error" => vec![NoInternalError],
        "unique_customer" => vec![UniqueCustomer],
        "claim_correct" => vec![ClaimCorrect, UniqueCustomer],
        "defaults_present" | "responses_see_defaults" => {
            vec![DefaultsPresent, ResponsesSeeDefaults, FreshCache]
        }
        "usage_conserved" => vec![UsageConserved],
        // What a client reading its own write can miss, by the group's block.
        "read_your_writes" if finding.block == Some(Block::Claim) => vec![ClaimCorrect, UniqueCustomer],
        "read_your_writes" if finding.block == Some(Block::Usage) => vec![UsageConserved],
        _ => vec![
            ClaimCorrect,
            UniqueCustomer,
            UsageConserved,
            FreshCache,
            ResponsesSeeDefaults,
            DefaultsPresent,
        ],
    }
}

/// The sets of requests (history events) to try for `finding`, smallest
/// first: the calls the finding involves that show it (its core), with
/// none, one or two other clients' calls of its group added (the other
/// side of a race is often a call that was answered well). Each client's
/// first call in the group stands for it, first attempt.
pub fn candidates(history: &History, finding: &Finding) -> Result<Vec<Vec<usize>>, String> {
    // (Every set, in order; the caller tries at most MAX_SUBSETS of them.)
    let group = finding.group.ok_or("the finding is about the read-back alone: no group to reproduce")?;
    if group >= history.groups.len() {
        return Err(format!("the history has no group {group}"));
    }
    // One call stands for each client: the call of its lane the finding
    // involves (the first such), else its lane's first operation, or its
    // read (below); always a first attempt. One call per client: the
    // calls of one lane were sent one after another, and the model has no
    // order between requests.
    let mut lanes: BTreeMap<Sender, Vec<&Event>> = BTreeMap::new();
    for event in &history.events {
        let is_operation = !matches!(event.call, Call::Get { .. });
        if event.group == Some(group)
            && matches!(event.sender, Sender::Client(_))
            && event.attempt == 0
            && is_operation
        {
            lanes.entry(event.sender).or_default().push(event);
        }
    }
    let named = |e: &Event| finding.events.contains(&e.index);
    let mut firsts: Vec<&Event> = Vec::new();
    let mut involved: Vec<&Event> = Vec::new();
    for calls in lanes.values() {
        match calls.iter().find(|e| named(e)) {
            Some(event) => {
                firsts.push(event);
                involved.push(event);
            }
            None => firsts.push(calls[0]),
        }
    }
    firsts.sort_by_key(|e| (e.invoked_us, e.index));
    involved.sort_by_key(|e| (e.invoked_us, e.index));
    let core: Vec<&Event> = match finding.invariant.as_str() {
        // One request answered an internal error; the one that beat it
        // is added below.
        "no_internal_error" => involved
            .iter()
            .copied()
            .filter(|e| matches!(&e.outcome, Outcome::Failed { status, code, .. } if *status == 500 || code == "internal_error"))
            .take(1)
            .collect(),
        // Two answers showing different customers.
        "unique_customer" => {
            let mut core: Vec<&Event> = Vec::new();
            for event in &involved {
                let autumn = |e: &Event| e.outcome.ok_body().and_then(|b| b.get("autumn_id").cloned());
                if autumn(event).is_some() && core.iter().all(|c| autumn(c) != autumn(event)) {
                    core.push(event);
                }
            }
            core.truncate(2);
            core
        }
        _ => involved.iter().copied().take(2).collect(),
    };
    // The other clients' calls: their operations (answered ones first),
    // then their reads (a read fills the cache, and may fill it stale).
    let core_lanes: Vec<Sender> = core.iter().map(|e| e.sender).collect();
    let others: Vec<&Event> = {
        let rest = firsts.iter().copied().filter(|e| !core_lanes.contains(&e.sender));
        let (answered, failed): (Vec<&Event>, Vec<&Event>) =
            rest.partition(|e| e.outcome.ok_body().is_some());
        let reads = history.events.iter().filter(|e| {
            e.group == Some(group)
                && matches!(e.sender, Sender::Client(_))
                && !core_lanes.contains(&e.sender)
                && e.attempt == 0
                && matches!(e.call, Call::Get { .. })
        });
        answered.into_iter().chain(failed).chain(reads).collect()
    };
    let with = |extra: &[&Event]| {
        let mut set: Vec<usize> = core.iter().chain(extra).map(|e| e.index).collect();
        set.sort();
        set
    };
    let mut sets = Vec::new();
    if core.len() >= 2 {
        sets.push(with(&[]));
    }
    if core.len() < MAX_REQUESTS {
        for other in &others {
            sets.push(with(&[other]));
        }
    }
    if core.len() + 2 <= MAX_REQUESTS {
        for (i, a) in others.iter().enumerate() {
            // One call per client: never two of one lane.
            for b in others[i + 1..].iter().filter(|b| b.sender != a.sender) {
                sets.push(with(&[a, b]));
            }
        }
    }
    sets.retain(|set| set.len() >= 2);
    sets.dedup();
    if sets.is_empty() {
        return Err(format!("group {group} has fewer than two clients' calls to race"));
    }
    Ok(sets)
}

/// The scenario (SPEC §7 JSON) whose requests are the calls of `events`,
/// and whose customers are their group's setup.
pub fn scenario_of(history: &History, finding: &Finding, events: &[usize]) -> Result<Value, String> {
    let group_index = finding.group.ok_or("the finding is about the read-back alone")?;
    let group =
        history.groups.get(group_index).ok_or_else(|| format!("the history has no group {group_index}"))?;
    let customers: Vec<Value> = group
        .setup
        .iter()
        .filter_map(|call| match call {
            Call::Create { customer_id, email, name } => {
                Some(json!({"id": customer_id, "email": email, "name": name}))
            }
            _ => None,
        })
        .collect();
    let requests: Vec<Value> =
        events.iter().map(|i| request_json(&history.events[*i].call, &history.profile)).collect();
    let products = serde_json::to_value(&history.catalog.products).map_err(|e| e.to_string())?;
    Ok(json!({
        "name": format!("{}-g{group_index}-{}", history.run_id, finding.invariant.replace('_', "-")),
        "description": format!(
            "From cusim check run {} of {}: group {group_index} ({}), events {:?}: {}",
            history.run_id, history.target, group.block.as_str(), events, finding.message
        ),
        "force_paid_default": history.catalog.force_paid_default,
        "products": products,
        "customers": customers,
        "requests": requests,
    }))
}

/// A call as a scenario request (its first attempt: the model's client
/// does not retry it). A check or track creates a missing customer where
/// the target's profile says it did, at the version it was sent at. (The
/// model gives a failed request's key back, as API.md's contract does;
/// the requests here are first attempts, which that does not change.)
fn request_json(call: &Call, profile: &Profile) -> Value {
    let auto_create = profile.creates_missing(call);
    match call {
        Call::Create { customer_id, email, name } => {
            let mut request = json!({"op": "create", "id": customer_id});
            if let Some(email) = email {
                request["email"] = json!(email);
            }
            if let Some(name) = name {
                request["name"] = json!(name);
            }
            request
        }
        Call::Get { customer_id } => json!({"op": "get", "customer_id": customer_id}),
        Call::Check { customer_id, feature_id, customer_data, .. } => {
            let mut request = json!({"op": "check", "customer_id": customer_id, "feature_id": feature_id, "auto_create": auto_create});
            if let Some(data) = customer_data {
                request["customer_data"] = json!({"name": data.name});
            }
            request
        }
        Call::Track { customer_id, feature_id, value, idempotency_key, .. } => {
            let mut request = json!({"op": "track", "customer_id": customer_id, "feature_id": feature_id, "value": value, "auto_create": auto_create});
            if let Some(key) = idempotency_key {
                request["idempotency_key"] = json!(key);
            }
            request
        }
    }
}

/// What an answer shows, to compare the server's with the model's.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    /// A customer: its id, its products, and its internal id (compared
    /// only as a partition: which answers show the same customer).
    Customer {
        id: Option<String>,
        products: Vec<String>,
        internal: Option<String>,
    },
    Check {
        allowed: bool,
        has_balance: bool,
    },
    Track,
    Error(String),
}

fn observed(event: &Event) -> Option<Shape> {
    match &event.outcome {
        Outcome::Unknown { .. } => None,
        Outcome::Failed { code, .. } => Some(Shape::Error(code.clone())),
        Outcome::Ok { body, .. } => Some(match &event.call {
            Call::Create { .. } | Call::Get { .. } => {
                let mut products: Vec<String> = body["subscriptions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s["plan_id"].as_str().map(str::to_owned))
                    .collect();
                products.sort();
                Shape::Customer {
                    id: body["id"].as_str().map(str::to_owned),
                    products,
                    internal: body["autumn_id"].as_str().map(str::to_owned),
                }
            }
            Call::Check { .. } => Shape::Check {
                allowed: body["allowed"].as_bool().unwrap_or(false),
                has_balance: !body["balance"].is_null(),
            },
            Call::Track { .. } => Shape::Track,
        }),
    }
}

fn modelled(outcome: &RequestOutcome) -> Option<Shape> {
    let RequestOutcome::Responded(result) = outcome else { return None };
    Some(match result.as_ref() {
        Err(ApiError { code, .. }) => Shape::Error(code.as_str().to_owned()),
        Ok(Response::Customer { customer }) => {
            let mut products: Vec<String> = customer.products.iter().map(|p| p.product_id.clone()).collect();
            products.sort();
            Shape::Customer {
                id: customer.customer.id.clone(),
                products,
                internal: Some(customer.customer.internal_id.clone()),
            }
        }
        Ok(Response::Check(check)) => Shape::Check {
            allowed: check.balance.is_some() && check.allowed,
            has_balance: check.balance.is_some(),
        },
        Ok(Response::Track(_)) => Shape::Track,
    })
}

/// Whether the model's run answered every request as the server did
/// (an unknown outcome matches anything; internal ids match as a
/// partition: two answers show one customer on both sides, or on neither).
fn matches(seen: &[Option<Shape>], execution: &Execution) -> bool {
    let model: Vec<Option<Shape>> = execution.observation.outcomes.iter().map(modelled).collect();
    if model.len() != seen.len() {
        return false;
    }
    let strip = |shape: &Shape| match shape {
        Shape::Customer { id, products, .. } => {
            Shape::Customer { id: id.clone(), products: products.clone(), internal: None }
        }
        other => other.clone(),
    };
    let internal = |shape: &Option<Shape>| match shape {
        Some(Shape::Customer { internal, .. }) => internal.clone(),
        _ => None,
    };
    let mut pairs: BTreeMap<String, String> = BTreeMap::new();
    let mut back: BTreeMap<String, String> = BTreeMap::new();
    for (seen, model) in seen.iter().zip(&model) {
        let Some(seen) = seen else { continue };
        let Some(model) = model else { return false };
        if strip(seen) != strip(model) {
            return false;
        }
        if let (Some(a), Some(b)) = (internal(&Some(seen.clone())), internal(&Some(model.clone()))) {
            if pairs.entry(a.clone()).or_insert_with(|| b.clone()) != &b
                || back.entry(b).or_insert(a.clone()) != &a
            {
                return false;
            }
        }
    }
    true
}

/// A run of the model that answered as the server did.
struct Hit {
    schedule: String,
    broken: Vec<Invariant>,
    races: Vec<Race>,
}

/// The most schedules one set of requests is searched for.
pub const SET_LIMIT: u64 = 20_000;

/// Tries each candidate set of requests of `finding` (see [`candidates`])
/// on the model under `strategy`, searching each set's schedules for one
/// that answers every request as the server did and breaks the finding's
/// invariant as seen from inside, preferring one whose trace holds a race
/// the finding suspects; at most [`SET_LIMIT`] schedules a set and `limit`
/// in all. The scenario of the set that matched (else of the first set)
/// is written to `scenario_path`.
pub fn reproduce(
    history: &History,
    finding: &Finding,
    strategy: Strategy,
    scenario_path: &Path,
    limit: u64,
) -> Result<Reproduction, String> {
    let mut sets = candidates(history, finding)?;
    // More sets than are tried: "none explains it" cannot be claimed.
    let cut = sets.len() > MAX_SUBSETS;
    sets.truncate(MAX_SUBSETS);
    let wanted = accepted(finding);
    let mut schedules_run = 0;
    let mut exhausted = true;
    let mut tried = 0;
    // The first match whose trace holds no suspected race, kept in case
    // no set gives one that does.
    let mut fallback: Option<(Vec<usize>, Value, String, Hit)> = None;
    for events in &sets {
        if schedules_run >= limit {
            exhausted = false;
            break;
        }
        tried += 1;
        let scenario_json = scenario_of(history, finding, events)?;
        let text = serde_json::to_string_pretty(&scenario_json).map_err(|e| e.to_string())? + "\n";
        let scenario = Scenario::parse(&text, scenario_path).map_err(|e| e.to_string())?;
        let prepared =
            Prepared::new(&scenario, strategy).map_err(|e| format!("{}: {e}", scenario_path.display()))?;
        let seen: Vec<Option<Shape>> = events.iter().map(|i| observed(&history.events[*i])).collect();
        let options = RunOptions { record_trace: true, ..RunOptions::default() };
        let (mut best, mut other) = (None, None);
        let found = search(&prepared, 0, SET_LIMIT.min(limit - schedules_run), options, |execution| {
            if !matches(&seen, execution) {
                return false;
            }
            let violations = judge(&scenario, &execution.observation);
            if !violations.iter().any(|v| wanted.contains(&v.invariant)) {
                return false;
            }
            let mut broken: Vec<Invariant> = violations.iter().map(|v| v.invariant).collect();
            broken.sort();
            broken.dedup();
            let races: Vec<Race> = classify(&execution.trace, &violations).into_iter().collect();
            let suspected = finding.suspects.is_empty() || races.iter().any(|r| finding.suspects.contains(r));
            let hit = Hit { schedule: execution.minimal_schedule().to_string(), broken, races };
            if suspected {
                best = Some(hit);
            } else {
                other.get_or_insert(hit);
            }
            suspected
        });
        schedules_run += found.schedules_run;
        exhausted &= found.exhausted;
        if let Some(hit) = best {
            write(scenario_path, &text)?;
            return Ok(reproduction(
                scenario_json,
                events.clone(),
                strategy,
                Some(hit),
                schedules_run,
                false,
                tried,
            ));
        }
        if let (None, Some(hit)) = (&fallback, other) {
            fallback = Some((events.clone(), scenario_json, text, hit));
        }
    }
    if let Some((events, scenario_json, text, hit)) = fallback {
        write(scenario_path, &text)?;
        return Ok(reproduction(scenario_json, events, strategy, Some(hit), schedules_run, false, tried));
    }
    let scenario = scenario_of(history, finding, &sets[0])?;
    write(scenario_path, &(serde_json::to_string_pretty(&scenario).map_err(|e| e.to_string())? + "\n"))?;
    let complete = exhausted && !cut && tried == sets.len();
    Ok(reproduction(scenario, sets[0].clone(), strategy, None, schedules_run, complete, tried))
}

fn reproduction(
    scenario: Value,
    events: Vec<usize>,
    strategy: Strategy,
    hit: Option<Hit>,
    schedules_run: u64,
    exhausted: bool,
    sets_tried: usize,
) -> Reproduction {
    let (schedule, broken, races) = match hit {
        Some(hit) => (Some(hit.schedule), hit.broken, hit.races),
        None => (None, Vec::new(), Vec::new()),
    };
    Reproduction { scenario, events, strategy, schedule, broken, races, schedules_run, exhausted, sets_tried }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: cannot write: {e}", path.display()))
}
