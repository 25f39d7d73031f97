//! Judging a history from outside: the invariants of SPEC §6 as a client
//! sees them, read from the answers of the run and of the read-back of
//! every touched customer. Each finding names its invariant, the group and
//! the calls of the history involved, and the races of the catalog it most
//! likely shows (a suspicion, from the group's block; `--reproduce`
//! confirms one on the model).
//!
//! | invariant | judged from outside as |
//! |---|---|
//! | `no_internal_error` | no call is answered 500 or `internal_error` (a 503 is a backend that may be retried) |
//! | `unique_customer` | one `autumn_id` per customer id, over every answer that shows the id; one per email over the id-less creates sharing it |
//! | `claim_correct` | a create of id X shows a customer whose id is X; a customer acknowledged as X is still found as X at the end |
//! | `defaults_present` | the read-back shows every customer with exactly its owed defaults |
//! | `responses_see_defaults` | no answer of the run shows a customer without them (a check or track: its balance of the defaults' feature) |
//! | `usage_conserved` | Elle's counter: the read-back usage lies between the acknowledged sum and the sum that may have been applied (answered 2xx or 5xx, or not at all); one key, customer and value make one request, whoever sent it; an unkeyed retry is another |
//! | `read_your_writes` | a client that was told it created X, or tracked N on X, then reads X and sees it, with at least N of usage |

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::history::{Event, History, Outcome, Sender};
use super::workload::{Block, Call, Group};
use crate::judge::invariants::owed_defaults;
use crate::judge::races::Race;
use cusim::model::FailedKey;

/// The invariants judged, in the order findings are listed.
pub const INVARIANTS: [&str; 7] = [
    "no_internal_error",
    "unique_customer",
    "claim_correct",
    "defaults_present",
    "responses_see_defaults",
    "usage_conserved",
    "read_your_writes",
];

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub invariant: String,
    /// The group whose calls broke it (none: the read-back alone).
    pub group: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<Block>,
    /// The customer it is about, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// The races of SPEC §8 it most likely shows.
    pub suspects: Vec<Race>,
    /// The history's events involved, by index.
    pub events: Vec<usize>,
    pub message: String,
}

/// What a customer-shaped answer shows.
struct Shown<'a> {
    id: Option<&'a str>,
    autumn_id: Option<&'a str>,
}

fn customer_of(body: &Value) -> Shown<'_> {
    Shown {
        id: body.get("id").and_then(Value::as_str),
        autumn_id: body.get("autumn_id").and_then(Value::as_str),
    }
}

/// Whether `call` answers with a customer.
fn shows_customer(call: &Call) -> bool {
    matches!(call, Call::Create { .. } | Call::Get { .. })
}

/// The usage of `feature` a customer-shaped answer shows: `None` when it
/// shows none, `Some(Err(..))` when what it shows is no integer.
pub fn usage_of<'b>(body: &'b Value, feature: &str) -> Option<Result<i64, &'b Value>> {
    let usage = body.get("balances")?.get(feature)?.get("usage")?;
    Some(usage.as_i64().ok_or(usage))
}

/// The group of `history` whose calls named customer `id` or, for an
/// id-less customer, sent an id-less create with `email`.
pub fn group_of(history: &History, id: Option<&str>, email: Option<&str>) -> Option<usize> {
    history
        .groups
        .iter()
        .find(|g| {
            g.setup.iter().chain(g.lanes.iter().flatten()).any(|c| match (c, id) {
                (_, Some(id)) => c.customer_id() == Some(id),
                (Call::Create { customer_id: None, email: Some(sent), .. }, None) => {
                    email.is_some_and(|email| sent.eq_ignore_ascii_case(email))
                }
                _ => false,
            })
        })
        .map(|g| g.index)
}

struct Judge<'a> {
    history: &'a History,
    /// The defaults every customer of the run is owed, as (group, product).
    owed: Vec<(String, String)>,
    findings: Vec<Finding>,
}

/// Judges `history`.
pub fn judge(history: &History) -> Vec<Finding> {
    let owed = owed_defaults(&history.catalog, false, None);
    let mut judge = Judge { history, owed, findings: Vec::new() };
    judge.no_internal_error();
    judge.unique_customer();
    judge.claim_correct();
    judge.defaults();
    judge.usage_conserved();
    judge.read_your_writes();
    let order = |f: &Finding| INVARIANTS.iter().position(|i| *i == f.invariant).unwrap_or(INVARIANTS.len());
    judge
        .findings
        .sort_by(|a, b| (order(a), a.group, a.events.first()).cmp(&(order(b), b.group, b.events.first())));
    judge.findings
}

impl<'a> Judge<'a> {
    fn block(&self, group: Option<usize>) -> Option<Block> {
        group.and_then(|g| self.history.groups.get(g)).map(|g| g.block)
    }

    fn find(
        &mut self,
        invariant: &str,
        group: Option<usize>,
        customer: Option<&str>,
        mut events: Vec<usize>,
        message: String,
    ) {
        events.sort();
        events.dedup();
        let block = self.block(group);
        self.findings.push(Finding {
            invariant: invariant.to_owned(),
            group,
            block,
            customer: customer.map(str::to_owned),
            suspects: block.map(|b| b.suspects(invariant)).unwrap_or_default(),
            events,
            message,
        });
    }

    fn events(&self) -> std::slice::Iter<'a, Event> {
        let history: &'a History = self.history;
        history.events.iter()
    }

    /// The products a customer-shaped answer shows, as (group, product).
    fn products(&self, body: &Value) -> Vec<(String, String)> {
        let mut products: Vec<(String, String)> = body
            .get("subscriptions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("plan_id").and_then(Value::as_str))
            .map(|plan| {
                let group = self.history.catalog.product(plan).map_or("?", |p| p.group.as_str());
                (group.to_owned(), plan.to_owned())
            })
            .collect();
        products.sort();
        products
    }

    fn describe(products: &[(String, String)]) -> String {
        if products.is_empty() {
            return "none".into();
        }
        products.iter().map(|(group, product)| format!("{product} ({group})")).collect::<Vec<_>>().join(", ")
    }

    fn no_internal_error(&mut self) {
        let mut by_group: BTreeMap<Option<usize>, Vec<&Event>> = BTreeMap::new();
        for event in self.events() {
            // An internal error, not a backend that is unavailable (a 503
            // `db_unavailable` is a legitimate answer, sent to be retried).
            if let Outcome::Failed { status, code, .. } = &event.outcome {
                if *status == 500 || code == "internal_error" {
                    by_group.entry(event.group).or_default().push(event);
                }
            }
        }
        for (group, events) in by_group {
            let first = events[0];
            let message = match &first.outcome {
                Outcome::Failed { status, code, message } => format!(
                    "{} call(s) answered an internal error; the first, event {} ({}), {status} {code}: {message}",
                    events.len(),
                    first.index,
                    call_name(&first.call)
                ),
                _ => unreachable!("only failures are gathered"),
            };
            let customer = first.call.customer_id().map(str::to_owned);
            let indices = events.iter().map(|e| e.index).collect();
            self.find("no_internal_error", group, customer.as_deref(), indices, message);
        }
    }

    fn unique_customer(&mut self) {
        // Customer id → autumn id → the events that showed it.
        let mut by_id: BTreeMap<&str, BTreeMap<&str, Vec<&Event>>> = BTreeMap::new();
        // lower(email) → autumn id → the id-less creates that returned it.
        let mut by_email: BTreeMap<String, BTreeMap<&str, Vec<&Event>>> = BTreeMap::new();
        for event in self.events() {
            let Some(body) = event.outcome.ok_body() else { continue };
            if !shows_customer(&event.call) {
                continue;
            }
            let shown = customer_of(body);
            let Some(autumn_id) = shown.autumn_id else { continue };
            if let Some(id) = shown.id {
                by_id.entry(id).or_default().entry(autumn_id).or_default().push(event);
            }
            if let Call::Create { customer_id: None, email: Some(email), .. } = &event.call {
                by_email.entry(email.to_lowercase()).or_default().entry(autumn_id).or_default().push(event);
            }
        }
        let mut found = Vec::new();
        for (id, autumn_ids) in &by_id {
            if autumn_ids.len() > 1 {
                found.push((Some(id.to_string()), format!("customer {id} was shown as"), autumn_ids));
            }
        }
        for (email, autumn_ids) in &by_email {
            if autumn_ids.len() > 1 {
                found.push((None, format!("id-less creates with email {email} returned"), autumn_ids));
            }
        }
        for (customer, what, autumn_ids) in found {
            let all: Vec<&Event> = autumn_ids.values().flatten().copied().collect();
            let group = all.iter().find_map(|e| e.group);
            let shown: Vec<String> = autumn_ids
                .iter()
                .map(|(autumn, events)| {
                    let indices: Vec<String> = events.iter().map(|e| e.index.to_string()).collect();
                    format!("{autumn} (events {})", indices.join(", "))
                })
                .collect();
            let message = format!("{what} {} different customers: {}", autumn_ids.len(), shown.join("; "));
            self.find(
                "unique_customer",
                group,
                customer.as_deref(),
                all.iter().map(|e| e.index).collect(),
                message,
            );
        }
    }

    fn claim_correct(&mut self) {
        let mut found = Vec::new();
        for event in self.events() {
            let (Call::Create { customer_id: Some(asked), .. }, Some(body)) =
                (&event.call, event.outcome.ok_body())
            else {
                continue;
            };
            let shown = customer_of(body);
            if shown.id != Some(asked.as_str()) {
                found.push((
                    event.group,
                    asked.clone(),
                    vec![event.index],
                    format!(
                        "event {}: a create of {asked} answered with a customer whose id is {}",
                        event.index,
                        shown.id.map_or("null".to_owned(), |id| format!("{id:?}"))
                    ),
                ));
            }
        }
        // A customer a create of X answered is still X at the end: the
        // read-back of X finds it (the same `autumn_id`, where shown).
        for readback in self.events().filter(|e| e.sender == Sender::Readback) {
            let Call::Get { customer_id: id } = &readback.call else { continue };
            let at_end = match (&readback.outcome, readback.outcome.ok_body()) {
                (_, Some(body)) => Some(customer_of(body).autumn_id),
                (outcome, None) if outcome.code() == Some("customer_not_found") => None,
                _ => continue, // No answer to judge: counted by `unjudged`.
            };
            let lost = self.events().find(|e| {
                let Call::Create { customer_id: Some(asked), .. } = &e.call else { return false };
                let Some(shown) = e.outcome.ok_body().map(customer_of) else { return false };
                e.sender != Sender::Readback
                    && asked == id
                    && shown.id == Some(id.as_str())
                    && match at_end {
                        None => true,
                        Some(now) => shown.autumn_id.zip(now).is_some_and(|(then, now)| then != now),
                    }
            });
            if let Some(ack) = lost {
                let autumn = ack.outcome.ok_body().and_then(|b| customer_of(b).autumn_id).unwrap_or("?");
                let now = match at_end {
                    None => format!("finds no {id}"),
                    Some(now) => format!("finds {id} as {}", now.unwrap_or("?")),
                };
                found.push((
                    ack.group,
                    id.to_owned(),
                    vec![ack.index, readback.index],
                    format!(
                        "event {} answered a create of {id} with {autumn}, yet the read-back (event {}) {now}: that customer is no longer {id}",
                        ack.index, readback.index
                    ),
                ));
            }
        }
        for (group, customer, events, message) in found {
            self.find("claim_correct", group, Some(&customer), events, message);
        }
    }

    /// `defaults_present` on the read-back, `responses_see_defaults` on
    /// every other answer.
    fn defaults(&mut self) {
        let feature = self.history.feature.clone();
        let feature_owed = self.owed.iter().any(|(_, product)| {
            self.history.catalog.product(product).is_some_and(|p| p.features.contains_key(&feature))
        });
        // (read-back or not, group) → the answers without their defaults.
        type Missing<'e> = BTreeMap<(bool, Option<usize>), Vec<(&'e Event, String)>>;
        let mut found: Missing<'_> = BTreeMap::new();
        for event in self.events() {
            let Some(body) = event.outcome.ok_body() else { continue };
            let readback = event.sender == Sender::Readback;
            if shows_customer(&event.call) {
                let products = self.products(body);
                if products != self.owed {
                    let id = customer_of(body).id.unwrap_or("(no id)");
                    found.entry((readback, event.group)).or_default().push((
                        event,
                        format!(
                            "event {} shows {id} with {}, owed {}",
                            event.index,
                            Self::describe(&products),
                            Self::describe(&self.owed)
                        ),
                    ));
                }
            } else if feature_owed && body.get("balance").is_some_and(Value::is_null) {
                found.entry((false, event.group)).or_default().push((
                    event,
                    format!(
                        "event {} ({}) shows no balance of {feature} for {}, which its defaults grant",
                        event.index,
                        call_name(&event.call),
                        event.call.customer_id().unwrap_or("?")
                    ),
                ));
            }
        }
        for ((readback, group), events) in found {
            let invariant = if readback { "defaults_present" } else { "responses_see_defaults" };
            for (event, message) in events {
                // A read-back belongs to the group that touched its customer.
                let email = match &event.call {
                    Call::Create { customer_id: None, email, .. } => email.as_deref(),
                    _ => None,
                };
                let group = group.or_else(|| group_of(self.history, event.call.customer_id(), email));
                let customer = event.call.customer_id().or(email);
                self.find(invariant, group, customer, vec![event.index], message);
            }
        }
    }

    fn usage_conserved(&mut self) {
        let feature = self.history.feature.clone();
        let sums = usage_bounds(self.history);
        let mut found = Vec::new();
        for (customer, UsageBounds { acknowledged, may_have_applied, mut events }) in sums {
            // What cannot be judged here is counted by `unjudged`.
            let readback = self
                .events()
                .find(|e| e.sender == Sender::Readback && e.call.customer_id() == Some(customer.as_str()));
            let Some(readback) = readback else { continue };
            // A customer not found holds no usage: what was acknowledged on
            // it is lost.
            let usage = match readback.outcome.ok_body() {
                Some(body) => match usage_of(body, &feature) {
                    Some(Ok(usage)) => usage,
                    _ => continue,
                },
                None if readback.outcome.code() == Some("customer_not_found") => 0,
                None => continue,
            };
            events.push(readback.index);
            let (usage, acknowledged, may_have_applied) =
                (i128::from(usage), i128::from(acknowledged), i128::from(may_have_applied));
            let message = if usage < acknowledged {
                format!(
                    "{customer}: usage of {feature} reads {usage} (event {}), below the {acknowledged} acknowledged: usage was lost",
                    readback.index
                )
            } else if usage > may_have_applied {
                format!(
                    "{customer}: usage of {feature} reads {usage} (event {}), above the {may_have_applied} that may have been applied: usage was counted twice",
                    readback.index
                )
            } else {
                continue;
            };
            found.push((customer, events, message, usage < acknowledged));
        }
        for (customer, events, message, lost) in found {
            let group = group_of(self.history, Some(&customer), None);
            self.find("usage_conserved", group, Some(&customer), events, message);
            if !lost {
                // Counted twice is no race of the catalog.
                self.findings.last_mut().expect("just found").suspects.clear();
            }
        }
    }

    fn read_your_writes(&mut self) {
        let feature = self.history.feature.clone();
        // Each client's calls in a group, in order.
        let mut lanes: BTreeMap<(usize, usize), Vec<&Event>> = BTreeMap::new();
        for event in self.events() {
            if let (Some(group), Sender::Client(n)) = (event.group, event.sender) {
                lanes.entry((group, n)).or_default().push(event);
            }
        }
        let mut found = Vec::new();
        for ((group, client), events) in lanes {
            // What this client was told it wrote: customer → (autumn id, event), and usage it tracked.
            let mut created: BTreeMap<&str, (Option<&str>, usize)> = BTreeMap::new();
            let mut tracked: BTreeMap<&str, (u64, Vec<usize>)> = BTreeMap::new();
            for event in events {
                let Some(id) = event.call.customer_id() else { continue };
                match (&event.call, &event.outcome) {
                    (Call::Get { .. }, Outcome::Ok { body, .. }) => {
                        let shown = customer_of(body);
                        if let Some((Some(autumn), at)) = created.get(id) {
                            if shown.autumn_id.is_some_and(|a| a != *autumn) {
                                found.push((group, id.to_owned(), vec![*at, event.index], format!(
                                    "client {client} was told event {at} made {id} as {autumn}, then read {id} as {} (event {})",
                                    shown.autumn_id.unwrap_or("?"), event.index
                                )));
                            }
                        }
                        if let Some((sum, ats)) = tracked.get(id) {
                            let usage = usage_of(body, &feature).and_then(Result::ok);
                            if usage.is_some_and(|u| i128::from(u) < i128::from(*sum)) {
                                let mut involved = ats.clone();
                                involved.push(event.index);
                                found.push((group, id.to_owned(), involved, format!(
                                    "client {client} tracked {sum} of {feature} on {id}, acknowledged, then read usage {} (event {})",
                                    usage.unwrap_or(0), event.index
                                )));
                            }
                        }
                    }
                    (Call::Get { .. }, Outcome::Failed { code, .. }) if code == "customer_not_found" => {
                        if let Some((_, at)) = created.get(id) {
                            found.push((group, id.to_owned(), vec![*at, event.index], format!(
                                "client {client} was told event {at} made or found {id}, then read {id}: not found (event {})",
                                event.index
                            )));
                        }
                    }
                    (Call::Create { customer_id: Some(_), .. }, Outcome::Ok { body, .. }) => {
                        created.insert(id, (customer_of(body).autumn_id, event.index));
                    }
                    (Call::Check { .. }, Outcome::Ok { .. }) => {
                        created.entry(id).or_insert((None, event.index));
                    }
                    (Call::Track { value, .. }, Outcome::Ok { status: 200, .. }) => {
                        created.entry(id).or_insert((None, event.index));
                        let entry = tracked.entry(id).or_default();
                        entry.0 = entry.0.saturating_add(*value);
                        entry.1.push(event.index);
                    }
                    _ => {}
                }
            }
        }
        for (group, customer, events, message) in found {
            self.find("read_your_writes", Some(group), Some(&customer), events, message);
        }
    }
}

/// What the tracks of one customer add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageBounds {
    /// The values of the tracks answered 200.
    pub acknowledged: u64,
    /// The values of the tracks that may have taken effect (answered 2xx,
    /// 5xx, or not at all).
    pub may_have_applied: u64,
    /// The tracks' events.
    pub events: Vec<usize>,
}

/// One logical track (docs/SPEC.md §6): every attempt sent with one key
/// for one customer and value is one, whoever sent it; each attempt of an
/// unkeyed track is one of its own.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum LogicalTrack<'h> {
    Keyed { customer: &'h str, key: &'h str, value: u64 },
    Unkeyed { index: usize },
}

/// Per customer, the bounds its usage must lie within (Elle's counter),
/// over its logical tracks.
pub fn usage_bounds(history: &History) -> BTreeMap<String, UsageBounds> {
    let mut logical: BTreeMap<LogicalTrack<'_>, Vec<&Event>> = BTreeMap::new();
    for event in &history.events {
        if let Call::Track { customer_id, idempotency_key, value, .. } = &event.call {
            let track = match idempotency_key {
                Some(key) => LogicalTrack::Keyed { customer: customer_id, key, value: *value },
                None => LogicalTrack::Unkeyed { index: event.index },
            };
            logical.entry(track).or_default().push(event);
        }
    }
    let mut sums: BTreeMap<String, UsageBounds> = BTreeMap::new();
    for attempts in logical.values() {
        let Call::Track { customer_id, value, .. } = &attempts[0].call else { continue };
        // A 200 acknowledges the usage; a 202 (accepted, applied later)
        // does not yet.
        let acknowledged = attempts.iter().any(|e| matches!(e.outcome, Outcome::Ok { status: 200, .. }));
        // It may have taken effect unless every attempt was refused
        // (a 409 duplicate key refuses a retry, not the attempt before it).
        let maybe_applied = attempts.iter().any(|e| match &e.outcome {
            Outcome::Ok { .. } | Outcome::Unknown { .. } => true,
            Outcome::Failed { status, .. } => *status >= 500,
        });
        let entry = sums.entry(customer_id.clone()).or_default();
        if acknowledged {
            entry.acknowledged = entry.acknowledged.saturating_add(*value);
        }
        if acknowledged || maybe_applied {
            entry.may_have_applied = entry.may_have_applied.saturating_add(*value);
        }
        entry.events.extend(attempts.iter().map(|e| e.index));
    }
    sums
}

/// What the verdict could not judge, counted: customers the run touched
/// that have no read-back, read-backs that got no answer to judge, and
/// tracked customers whose read-back shows no integer usage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Unjudged {
    /// Customers (by id, or by email if id-less) never read back.
    pub not_read_back: Vec<String>,
    /// Read-backs answered with an error or not at all: `customer: outcome`
    /// (a `customer_not_found` is judged, by `claim_correct`).
    pub read_back_failed: Vec<String>,
    /// Tracked customers whose read-back shows no usage, or no integer.
    pub usage_unreadable: Vec<String>,
}

impl Unjudged {
    pub fn is_empty(&self) -> bool {
        self.not_read_back.is_empty() && self.read_back_failed.is_empty() && self.usage_unreadable.is_empty()
    }
}

/// The customers a run touched that a read-back can reach: every id, and
/// every email of an id-less create that no create with an id sent (such
/// a customer may rightly have been claimed, and an id-less create would
/// then make a new one).
pub fn read_back_targets(groups: &[Group]) -> Vec<Call> {
    let calls: Vec<&Call> =
        groups.iter().flat_map(|g| g.setup.iter().chain(g.lanes.iter().flatten())).collect();
    let ids: BTreeSet<&str> = calls.iter().filter_map(|c| c.customer_id()).collect();
    let claimable: BTreeSet<String> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Create { customer_id: Some(_), email: Some(email), .. } => Some(email.to_lowercase()),
            _ => None,
        })
        .collect();
    let mut emails: BTreeMap<String, &str> = BTreeMap::new();
    for call in &calls {
        if let Call::Create { customer_id: None, email: Some(email), .. } = call {
            if !claimable.contains(&email.to_lowercase()) {
                emails.entry(email.to_lowercase()).or_insert(email);
            }
        }
    }
    ids.into_iter()
        .map(|id| Call::Get { customer_id: id.to_owned() })
        .chain(emails.into_values().map(|email| Call::Create {
            customer_id: None,
            email: Some(email.to_owned()),
            name: None,
        }))
        .collect()
}

/// The order read-backs are listed in: the id-less ones (by email) first,
/// then by id.
pub fn read_back_order(call: &Call) -> (Option<&str>, Option<&str>) {
    match call {
        Call::Create { customer_id: None, email, .. } => (None, email.as_deref()),
        other => (other.customer_id(), None),
    }
}

/// What `history`'s verdict could not judge.
pub fn unjudged(history: &History) -> Unjudged {
    let mut unjudged = Unjudged::default();
    let readbacks: Vec<&Event> = history.events.iter().filter(|e| e.sender == Sender::Readback).collect();
    let name = |call: &Call| match call {
        Call::Create { customer_id: None, email: Some(email), .. } => format!("id-less {email}"),
        other => other.customer_id().unwrap_or("?").to_owned(),
    };
    for target in read_back_targets(&history.groups) {
        match readbacks.iter().find(|e| e.call == target) {
            None => unjudged.not_read_back.push(name(&target)),
            Some(e) if e.outcome.ok_body().is_none() && e.outcome.code() != Some("customer_not_found") => {
                unjudged.read_back_failed.push(format!("{}: {}", name(&target), e.outcome.short()))
            }
            Some(_) => {}
        }
    }
    for customer in usage_bounds(history).into_keys() {
        let body = readbacks
            .iter()
            .find(|e| e.call.customer_id() == Some(customer.as_str()))
            .and_then(|e| e.outcome.ok_body());
        if let Some(body) = body {
            if !matches!(usage_of(body, &history.feature), Some(Ok(_))) {
                unjudged.usage_unreadable.push(customer);
            }
        }
    }
    unjudged
}

/// Up to three of `items`, and how many more.
fn some_of(items: &[String]) -> String {
    let shown = items.iter().take(3).cloned().collect::<Vec<_>>().join("; ");
    match items.len() {
        n if n > 3 => format!("{shown}; and {} more", n - 3),
        _ => shown,
    }
}

/// What the verdict could not judge, said once each: customers not read
/// back or whose read-back failed, usage that is no integer (see
/// [`Unjudged`]); a target that shows no `autumn_id` (then
/// `unique_customer` is judged by email and rows only), or no balance of
/// the feature.
pub fn notes(history: &History) -> Vec<String> {
    let mut notes = Vec::new();
    let unjudged = unjudged(history);
    if !unjudged.not_read_back.is_empty() {
        notes.push(format!(
            "{} customers were not read back ({}): defaults_present, claim_correct and usage_conserved did not judge them",
            unjudged.not_read_back.len(),
            some_of(&unjudged.not_read_back)
        ));
    }
    if !unjudged.read_back_failed.is_empty() {
        notes.push(format!(
            "{} read-backs got no answer to judge ({}): defaults_present and usage_conserved did not judge those customers",
            unjudged.read_back_failed.len(),
            some_of(&unjudged.read_back_failed)
        ));
    }
    if !unjudged.usage_unreadable.is_empty() {
        notes.push(format!(
            "{} tracked customers show no integer usage of {} in their read-back ({}): usage_conserved did not judge them",
            unjudged.usage_unreadable.len(),
            history.feature,
            some_of(&unjudged.usage_unreadable)
        ));
    }
    let customers: Vec<&Value> = history
        .events
        .iter()
        .filter(|e| shows_customer(&e.call))
        .filter_map(|e| e.outcome.ok_body())
        .collect();
    if !customers.is_empty() && customers.iter().all(|b| b.get("autumn_id").is_none()) {
        notes.push(
            "no answer carried `autumn_id` (with_autumn_id): unique_customer and read_your_writes could not compare internal ids"
                .to_owned(),
        );
    }
    if !customers.is_empty()
        && customers.iter().all(|b| b.get("balances").and_then(|x| x.get(&history.feature)).is_none())
    {
        notes.push(format!(
            "no customer showed a balance of {}: usage_conserved and read_your_writes could not read usage",
            history.feature
        ));
    }
    notes.extend(profile_notes(history));
    notes
}

/// What the target's profile changes in what the history shows, said once
/// each: keyed resends refused because the target keeps a failed
/// request's key (each counts as not applied, which usage_conserved's
/// bounds already hold), keys refused at their first use, checks that
/// cannot create, and answers that contradict the profile.
pub fn profile_notes(history: &History) -> Vec<String> {
    let profile = &history.profile;
    let mut notes = Vec::new();
    let refused = |e: &Event| matches!(&e.outcome, Outcome::Failed { status: 409, code, .. } if code == "duplicate_idempotency_key");
    let keyed = |e: &&Event| matches!(&e.call, Call::Track { idempotency_key: Some(_), .. });
    // A resend refused after an attempt the target answered with a failure.
    let after_failure: Vec<&Event> = history
        .events
        .iter()
        .filter(keyed)
        .filter(|e| e.attempt > 0 && refused(e))
        .filter(|e| {
            history.events.iter().any(|before| {
                before.call == e.call
                    && before.sender == e.sender
                    && before.group == e.group
                    && before.step == e.step
                    && before.attempt + 1 == e.attempt
                    && matches!(before.outcome, Outcome::Failed { .. })
            })
        })
        .collect();
    if !after_failure.is_empty() {
        notes.push(match profile.failed_key {
            FailedKey::Kept => format!(
                "{} keyed resends after a failed attempt were refused 409, as a target that keeps a failed request's key refuses them (its profile): each counts as not applied, the attempt before it as it was answered",
                after_failure.len()
            ),
            FailedKey::GivenBack => format!(
                "{} keyed resends after a failed attempt were refused 409, though the profile says the target gives a failed request's key back (event {}): a request with that key still held it",
                after_failure.len(),
                after_failure[0].index
            ),
        });
    }
    let first_use: Vec<&Event> =
        history.events.iter().filter(keyed).filter(|e| e.attempt == 0 && refused(e)).collect();
    if !first_use.is_empty() {
        notes.push(format!(
            "{} keyed tracks were refused 409 at their key's first use (event {}; every key of a run is fresh): the target refuses keys nobody sent before; those tracks count as not applied",
            first_use.len(),
            first_use[0].index
        ));
    }
    let auto_sent = history.events.iter().any(|e| {
        matches!(e.call, Call::Check { auto_create: true, .. } | Call::Track { auto_create: true, .. })
    });
    if auto_sent && profile.auto_create_version.is_none() {
        notes.push(
            "the target creates no missing customer on check or track at any version tried: the checks and tracks that would auto-create only find (create_check's race creates as reads)"
                .to_owned(),
        );
    }
    if history.format == 1 {
        notes.push(
            "a format 1 history keeps no profile: it is judged as API.md's contract, the only one its checker knew"
                .to_owned(),
        );
    }
    if profile.auto_create_at_api_version
        && history.events.iter().any(|e| {
            matches!(e.call, Call::Check { auto_create: false, .. } | Call::Track { auto_create: false, .. })
        })
    {
        notes.push(format!(
            "check and track auto-create at {} on this target: those sent without auto-create create a missing customer too",
            profile.api_version
        ));
    }
    let contradicted: Vec<&Event> = history
        .events
        .iter()
        .filter(|e| matches!(e.call, Call::Check { .. } | Call::Track { .. }))
        .filter(|e| profile.creates_missing(&e.call) && e.outcome.code() == Some("customer_not_found"))
        .collect();
    if !contradicted.is_empty() {
        notes.push(format!(
            "{} checks or tracks were answered customer_not_found at a version the profile says creates a missing customer (event {})",
            contradicted.len(),
            contradicted[0].index
        ));
    }
    notes
}

/// A call's route, for messages.
pub fn call_name(call: &Call) -> &'static str {
    match call {
        Call::Create { .. } => "customers.get_or_create",
        Call::Get { .. } => "customers.get",
        Call::Check { .. } => "balances.check",
        Call::Track { .. } => "balances.track",
    }
}

/// Per invariant: how many findings, and the races suspected.
pub fn summary(findings: &[Finding]) -> Vec<(&'static str, usize, BTreeSet<Race>)> {
    INVARIANTS
        .iter()
        .map(|invariant| {
            let of: Vec<&Finding> = findings.iter().filter(|f| f.invariant == *invariant).collect();
            (*invariant, of.len(), of.iter().flat_map(|f| f.suspects.iter().copied()).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A usage group: a track of 3 on `c1` (answered 200) and an id-less
    /// create of `e@x.io`, read back as `readback` shows them.
    fn history(readback: Vec<(Call, Outcome)>) -> History {
        let track = Call::Track {
            customer_id: "c1".into(),
            feature_id: "words".into(),
            value: 3,
            auto_create: true,
            idempotency_key: None,
            retries: 0,
        };
        let create = Call::Create { customer_id: None, email: Some("e@x.io".into()), name: None };
        let ok = |body| Outcome::Ok { status: 200, body };
        let mut events = vec![
            Event {
                index: 0,
                group: Some(0),
                sender: Sender::Client(0),
                step: 0,
                attempt: 0,
                call: track.clone(),
                invoked_us: 0,
                completed_us: 1,
                outcome: ok(json!({"customer_id": "c1", "value": 3})),
            },
            Event {
                index: 1,
                group: Some(0),
                sender: Sender::Client(1),
                step: 0,
                attempt: 0,
                call: create.clone(),
                invoked_us: 0,
                completed_us: 1,
                outcome: ok(
                    json!({"id": null, "autumn_id": "cus_x", "subscriptions": [{"plan_id": "free"}]}),
                ),
            },
        ];
        for (call, outcome) in readback {
            let index = events.len();
            events.push(Event {
                index,
                group: None,
                sender: Sender::Readback,
                step: 0,
                attempt: 0,
                call,
                invoked_us: 2,
                completed_us: 3,
                outcome,
            });
        }
        let catalog = cusim::model::Catalog::new(
            vec![cusim::model::Product {
                id: "free".into(),
                group: "main".into(),
                is_default: true,
                kind: cusim::model::ProductKind::Free,
                features: [("words".to_owned(), 100)].into_iter().collect(),
            }],
            false,
        );
        History {
            format: super::super::history::FORMAT,
            target: "http://127.0.0.1:1".into(),
            workload: "usage".into(),
            seed: 1,
            run_id: "chk".into(),
            clients: 2,
            feature: "words".into(),
            catalog,
            profile: Default::default(),
            preflight: Vec::new(),
            groups: vec![Group {
                index: 0,
                block: Block::Usage,
                setup: Vec::new(),
                lanes: vec![vec![track], vec![create]],
            }],
            events,
            elapsed_us: 3,
            stopped_by: "ops".into(),
        }
    }

    fn get(id: &str) -> Call {
        Call::Get { customer_id: id.into() }
    }

    fn customer(usage: serde_json::Value) -> Outcome {
        Outcome::Ok {
            status: 200,
            body: json!({"id": "c1", "autumn_id": "cus_1", "subscriptions": [{"plan_id": "free"}],
                         "balances": {"words": {"usage": usage}}}),
        }
    }

    fn idless() -> (Call, Outcome) {
        let call = Call::Create { customer_id: None, email: Some("e@x.io".into()), name: None };
        let body = json!({"id": null, "autumn_id": "cus_x", "subscriptions": [{"plan_id": "free"}]});
        (call, Outcome::Ok { status: 200, body })
    }

    #[test]
    fn a_refused_resend_is_noted_by_the_targets_profile() {
        use super::super::profile::Profile;
        use cusim::model::Generation;
        // The track of c1, keyed: its first attempt 500, its resend 409.
        let mut h = history(vec![(get("c1"), customer(json!(0))), idless()]);
        let keyed = Call::Track {
            customer_id: "c1".into(),
            feature_id: "words".into(),
            value: 3,
            auto_create: true,
            idempotency_key: Some("k1".into()),
            retries: 1,
        };
        h.groups[0].lanes[0] = vec![keyed.clone()];
        h.events[0].call = keyed.clone();
        h.events[0].outcome =
            Outcome::Failed { status: 500, code: "internal_error".into(), message: String::new() };
        let mut resend = h.events[0].clone();
        resend.attempt = 1;
        resend.outcome =
            Outcome::Failed { status: 409, code: "duplicate_idempotency_key".into(), message: String::new() };
        h.events.insert(1, resend);
        for (i, e) in h.events.iter_mut().enumerate() {
            e.index = i;
        }
        // Usage 0 is within the bounds either way: the 409 is not applied,
        // the 500 may have been.
        assert!(judge(&h).iter().all(|f| f.invariant != "usage_conserved"), "{:?}", judge(&h));
        assert_eq!(usage_bounds(&h)["c1"].may_have_applied, 3);
        h.profile = Profile::of(Generation::February2026);
        let kept = profile_notes(&h);
        assert!(
            kept.iter()
                .any(|n| n.starts_with("1 keyed resends") && n.contains("keeps a failed request's key")),
            "{kept:?}"
        );
        h.profile = Profile::default();
        let given = profile_notes(&h);
        assert!(given.iter().any(|n| n.contains("though the profile says the target gives")), "{given:?}");
        // A target that creates no customer on check: the note says what
        // create_check's checks become.
        h.groups[0].lanes[1] = vec![Call::Check {
            customer_id: "c2".into(),
            feature_id: "words".into(),
            auto_create: true,
            customer_data: None,
        }];
        h.events[2].call = h.groups[0].lanes[1][0].clone();
        h.profile.auto_create_version = None;
        assert!(profile_notes(&h).iter().any(|n| n.contains("creates no missing customer")));
        h.profile = Profile::of(Generation::February2026);
        h.events[2].outcome =
            Outcome::Failed { status: 404, code: "customer_not_found".into(), message: String::new() };
        assert!(profile_notes(&h).iter().any(|n| n.contains("at a version the profile says creates")));
    }

    #[test]
    fn every_customer_touched_is_a_read_back_target_the_id_less_by_email() {
        let targets = read_back_targets(&history(Vec::new()).groups);
        assert_eq!(targets, [get("c1"), idless().0]);
    }

    #[test]
    fn what_could_not_be_judged_is_counted_not_passed() {
        // Judged whole: usage 3 of 3, nothing to note.
        let whole = history(vec![(get("c1"), customer(json!(3))), idless()]);
        assert_eq!(unjudged(&whole), Unjudged::default());
        assert!(judge(&whole).is_empty(), "{:?}", judge(&whole));
        // A read-back skipped: counted, and noted.
        let skipped = history(vec![(get("c1"), customer(json!(3)))]);
        assert_eq!(unjudged(&skipped).not_read_back, ["id-less e@x.io"]);
        assert!(notes(&skipped).iter().any(|n| n.starts_with("1 customers were not read back")));
        // A read-back that failed.
        let failed = Outcome::Failed { status: 503, code: "db_unavailable".into(), message: String::new() };
        let failed = history(vec![(get("c1"), failed), idless()]);
        assert_eq!(unjudged(&failed).read_back_failed, ["c1: 503 db_unavailable"]);
        // Usage that is no integer.
        let unreadable = history(vec![(get("c1"), customer(json!("3"))), idless()]);
        assert_eq!(unjudged(&unreadable).usage_unreadable, ["c1"]);
        assert!(judge(&unreadable).is_empty());
        // A negative usage is judged: below what was acknowledged.
        let negative = history(vec![(get("c1"), customer(json!(-2))), idless()]);
        assert!(unjudged(&negative).is_empty());
        assert!(judge(&negative).iter().any(|f| f.invariant == "usage_conserved"), "{:?}", judge(&negative));
    }
}
