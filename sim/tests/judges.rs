//! The judges agree: every conformance history (`fixtures/conformance/`)
//! is classified as it says by the oracle (given the history as an
//! observation of a run it did not see) and by `cusim check`'s verdict
//! (given it as a check history). The client tests' judge is held to the
//! same files in the `http` mode (`client-tests/test/conformance.test.js`).
//! Each invariant's one meaning is docs/SPEC.md §6's table.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cusim::flow::{Request, Response, TrackResponse};
use cusim::model::{
    ApiError, Balance, Catalog, CustomerData, CustomerRow, DefaultScope, Env, ErrorCode, FullCustomer,
};
use cusim_sim::check::history::{Event, History, Outcome, Sender, FORMAT};
use cusim_sim::check::verdict;
use cusim_sim::check::workload::{Block, Call, Group};
use cusim_sim::claims::{Bound, Claim};
use cusim_sim::corpus::regression::json_files;
use cusim_sim::input::scenario::{Scenario, ScenarioRequest};
use cusim_sim::judge::{End, Observation, RequestOutcome, State};
use serde::Deserialize;
use serde_json::json;

/// The invariants every judge reads from what clients see.
const JUDGED: [&str; 4] = ["no_internal_error", "unique_customer", "claim_correct", "usage_conserved"];
const FEATURE: &str = "words";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[allow(dead_code)]
    description: String,
    calls: Vec<Sent>,
    read_back: std::collections::BTreeMap<String, ReadBack>,
    broken: Vec<String>,
    #[serde(default = "yes")]
    model: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sent {
    client: usize,
    op: String,
    customer_id: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    value: u64,
    #[serde(default)]
    key: Option<String>,
    attempt: u32,
    answer: Option<Answer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    status: u16,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    autumn_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadBack {
    autumn_id: String,
    usage: i64,
}

fn cases() -> Vec<(PathBuf, Case)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/conformance");
    json_files(&dir)
        .unwrap()
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let case: Case =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, case)
        })
        .collect()
}

/// Each call's step in its client's lane: a retry keeps its call's step.
fn steps(case: &Case) -> Vec<usize> {
    let mut next = std::collections::BTreeMap::<usize, usize>::new();
    case.calls
        .iter()
        .map(|sent| {
            let step = next.entry(sent.client).or_default();
            if sent.attempt == 0 {
                *step += 1;
            }
            *step - 1
        })
        .collect()
}

fn call_of(sent: &Sent) -> Call {
    match sent.op.as_str() {
        "track" => Call::Track {
            customer_id: sent.customer_id.clone().expect("a track names its customer"),
            feature_id: FEATURE.into(),
            value: sent.value,
            auto_create: true,
            idempotency_key: sent.key.clone(),
            retries: 1,
        },
        "create" => {
            Call::Create { customer_id: sent.customer_id.clone(), email: sent.email.clone(), name: None }
        }
        other => panic!("unknown op {other}"),
    }
}

/// The case as `cusim check` would have recorded it.
fn as_history(case: &Case) -> History {
    let steps = steps(case);
    let clients = case.calls.iter().map(|c| c.client + 1).max().unwrap_or(1);
    let mut lanes: Vec<Vec<Call>> = vec![Vec::new(); clients];
    let mut events = Vec::new();
    for (i, sent) in case.calls.iter().enumerate() {
        let call = call_of(sent);
        if sent.attempt == 0 {
            lanes[sent.client].push(call.clone());
        }
        let outcome = match &sent.answer {
            None => Outcome::Unknown { reason: "no answer".into() },
            Some(answer) if answer.status < 300 => {
                let body = match &call {
                    Call::Track { customer_id, value, .. } => {
                        json!({"customer_id": customer_id, "value": value})
                    }
                    _ => json!({"id": answer.id, "autumn_id": answer.autumn_id, "subscriptions": []}),
                };
                Outcome::Ok { status: answer.status, body }
            }
            Some(answer) => Outcome::Failed {
                status: answer.status,
                code: answer.code.clone().unwrap_or_default(),
                message: String::new(),
            },
        };
        events.push(Event {
            index: i,
            group: Some(0),
            sender: Sender::Client(sent.client),
            step: steps[i],
            attempt: sent.attempt,
            call,
            invoked_us: i as u64,
            completed_us: i as u64 + 1,
            outcome,
        });
    }
    // Every customer id the calls name is read back; one the case does
    // not list was not found.
    let named: BTreeSet<&str> = case.calls.iter().filter_map(|c| c.customer_id.as_deref()).collect();
    for id in named {
        let index = events.len();
        let outcome = match case.read_back.get(id) {
            Some(read) => Outcome::Ok {
                status: 200,
                body: json!({"id": id, "autumn_id": read.autumn_id, "subscriptions": [],
                             "balances": {FEATURE: {"usage": read.usage}}}),
            },
            None => {
                Outcome::Failed { status: 404, code: "customer_not_found".into(), message: String::new() }
            }
        };
        events.push(Event {
            index,
            group: None,
            sender: Sender::Readback,
            step: 0,
            attempt: 0,
            call: Call::Get { customer_id: id.to_owned() },
            invoked_us: index as u64,
            completed_us: index as u64 + 1,
            outcome,
        });
    }
    History {
        format: FORMAT,
        target: "conformance".into(),
        workload: case.name.clone(),
        seed: 0,
        run_id: "conformance".into(),
        clients,
        feature: FEATURE.into(),
        catalog: Catalog::new(Vec::new(), false),
        profile: Default::default(),
        preflight: Vec::new(),
        groups: vec![Group { index: 0, block: Block::Usage, setup: Vec::new(), lanes }],
        events,
        elapsed_us: 0,
        stopped_by: "ops".into(),
    }
}

fn customer(id: Option<&str>, internal_id: &str, usage: i64) -> FullCustomer {
    FullCustomer {
        customer: CustomerRow {
            internal_id: internal_id.into(),
            org_id: "org_1".into(),
            env: Env::Sandbox,
            id: id.map(str::to_owned),
            name: None,
            email: None,
            fingerprint: None,
            metadata: Default::default(),
            processor: None,
            created_at: 0,
            default_scope: DefaultScope::All,
            stripe_wanted: false,
        },
        products: Vec::new(),
        balances: [(FEATURE.to_owned(), Balance { granted: 0, usage })].into_iter().collect(),
    }
}

fn error_code(code: &str) -> ErrorCode {
    ErrorCode::ALL.into_iter().find(|c| c.as_str() == code).unwrap_or_else(|| panic!("unknown code {code}"))
}

/// The case as an observation of a run the oracle did not see: which
/// attempts deducted is not known (`deducted: None`).
fn as_observation(case: &Case) -> (Scenario, Observation) {
    let steps = steps(case);
    // One request per call (a client's retries are its attempts).
    let mut requests: Vec<(usize, usize)> = Vec::new();
    let mut scenario_requests = Vec::new();
    let mut attempts: Vec<Vec<RequestOutcome>> = Vec::new();
    // A track's answer shows no internal id: give it the one the case
    // shows for its customer (read back, or answered to a create), so the
    // model's response adds no customer of its own.
    let autumn_of = |id: &str| {
        let answered = case.calls.iter().find_map(|c| {
            let answer = c.answer.as_ref()?;
            (c.op == "create" && answer.id.as_deref() == Some(id)).then(|| answer.autumn_id.clone()).flatten()
        });
        case.read_back
            .get(id)
            .map(|r| r.autumn_id.clone())
            .or(answered)
            .unwrap_or_else(|| format!("cus_of_{id}"))
    };
    for (i, sent) in case.calls.iter().enumerate() {
        let at = match requests.iter().position(|r| *r == (sent.client, steps[i])) {
            Some(at) => at,
            None => {
                requests.push((sent.client, steps[i]));
                let request = match sent.op.as_str() {
                    "track" => Request::Track {
                        customer_id: sent.customer_id.clone().unwrap(),
                        feature_id: FEATURE.into(),
                        value: sent.value as i64,
                        customer_data: None,
                        auto_create: true,
                        org: None,
                        env: None,
                    },
                    _ => Request::create(
                        sent.customer_id.as_deref(),
                        CustomerData { email: sent.email.clone(), ..CustomerData::default() },
                    ),
                };
                scenario_requests.push(ScenarioRequest {
                    request,
                    retries: 1,
                    idempotency_key: sent.key.clone(),
                    instance: None,
                });
                attempts.push(Vec::new());
                requests.len() - 1
            }
        };
        let outcome = match &sent.answer {
            None => RequestOutcome::Crashed { at: cusim::backend::Point::Commit },
            Some(answer) if answer.status < 300 => {
                let response = match sent.op.as_str() {
                    "track" => {
                        let id = sent.customer_id.clone().unwrap();
                        Response::Track(TrackResponse {
                            customer: customer(Some(&id), &autumn_of(&id), 0),
                            customer_id: id,
                            feature_id: FEATURE.into(),
                            value: sent.value as i64,
                        })
                    }
                    _ => Response::Customer {
                        customer: customer(
                            answer.id.as_deref(),
                            answer.autumn_id.as_deref().expect("a create's answer names its customer"),
                            0,
                        ),
                    },
                };
                RequestOutcome::Responded(Box::new(Ok(response)))
            }
            Some(answer) => RequestOutcome::Responded(Box::new(Err(ApiError::new(
                error_code(answer.code.as_deref().expect("an error has a code")),
                "",
            )))),
        };
        attempts[at].push(outcome);
    }
    let (outcomes, retried): (Vec<RequestOutcome>, Vec<Vec<RequestOutcome>>) = attempts
        .into_iter()
        .map(|mut all| {
            let last = all.pop().expect("a request has an attempt");
            (last, all)
        })
        .unzip();
    let scenario = Scenario {
        name: case.name.clone(),
        description: None,
        force_paid_default: false,
        products: Vec::new(),
        customers: Vec::new(),
        requests: scenario_requests,
        faults: Vec::new(),
        settle_faults: Vec::new(),
        instances: Vec::new(),
    };
    let state = State {
        customers: case.read_back.iter().map(|(id, r)| customer(Some(id), &r.autumn_id, r.usage)).collect(),
        cache: Vec::new(),
        stripe: Vec::new(),
        breaches: Vec::new(),
    };
    let observation = Observation {
        outcomes,
        retried,
        deducted: None,
        settles: Vec::new(),
        created_by: Default::default(),
        end: End::Quiescent,
        state,
    };
    (scenario, observation)
}

fn judged(broken: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    broken.into_iter().filter(|i| JUDGED.contains(&i.as_str())).collect()
}

#[test]
fn every_judge_classifies_every_conformance_history_as_written() {
    let cases = cases();
    assert!(cases.len() >= 13, "the conformance set holds {} cases", cases.len());
    let mut skipped = 0;
    for (path, case) in &cases {
        let started = Instant::now();
        let expected: BTreeSet<String> = case.broken.iter().cloned().collect();
        assert_eq!(judged(expected.clone()), expected, "{}: only {JUDGED:?} are judged here", path.display());
        let history = as_history(case);
        let black_box = judged(verdict::judge(&history).into_iter().map(|f| f.invariant));
        assert_eq!(black_box, expected, "{}: cusim check's verdict", path.display());
        let mut judges = 1;
        if case.model {
            let (scenario, observation) = as_observation(case);
            let oracle = judged(
                cusim_sim::judge::judge(&scenario, &observation).iter().map(|v| v.invariant.to_string()),
            );
            assert_eq!(oracle, expected, "{}: the oracle", path.display());
            judges += 1;
        } else {
            skipped += 1;
        }
        Claim::new(
            format!("judges/{}", case.name),
            "the oracle and cusim check's verdict classify each conformance history as written (the client \
             tests' judge reads the same files)",
            format!("fixtures/conformance/{}.json", case.name),
            Bound::Complete,
        )
        .figure("verdicts", judges)
        .record(started);
    }
    eprintln!(
        "{} conformance histories, {skipped} the oracle cannot be given (no run of the model is like them)",
        cases.len()
    );
}

/// A case file is read strictly: an unknown field is refused, not ignored.
#[test]
fn a_case_file_with_an_unknown_field_is_refused() {
    let bad = serde_json::from_value::<Case>(json!({
        "name": "x", "description": "", "calls": [], "read_back": {}, "broken": [], "colour": 1
    }));
    assert!(bad.is_err());
}
