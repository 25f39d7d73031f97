//! Shrinking: a failing (scenario, schedule) made as small as it can be
//! while it still shows the same symptom (the same invariant broken by the
//! same catalog race, or by none of the catalog's): fewest requests, then fewest
//! faults and seed customers, then fewest preemptions, then the shortest
//! schedule.
//!
//! Candidates are replayed leniently (a token that names a request that
//! cannot move is skipped; a fault that cannot happen where the request is
//! parked is dropped), and every accepted candidate is re-recorded as the
//! exact schedule it ran, so the result replays strictly.

use cusim::flow::Strategy;
use serde::Serialize;

use crate::corpus::regression::Regression;
use crate::drive::stepper::{execute_run, Lenient, Prepared, RunOptions};
use crate::input::scenario::Scenario;
use crate::input::schedule::{Schedule, Token};
use crate::judge::races::{Race, Symptom};
use crate::judge::{judge, Invariant};

/// A scenario, a strategy and a schedule: everything a replay needs.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub scenario: Scenario,
    pub strategy: Strategy,
    #[serde(serialize_with = "as_string")]
    pub schedule: Schedule,
}

fn as_string<S: serde::Serializer>(schedule: &Schedule, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&schedule.to_string())
}

/// How small a reproducing case is; smaller is better, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Size {
    pub requests: usize,
    pub faults: usize,
    pub seed_customers: usize,
    pub preemptions: usize,
    pub schedule_len: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Shrunk {
    pub case: Case,
    pub size: Size,
    pub invariant: Invariant,
    pub race: Option<Race>,
    pub message: String,
    /// Candidate cases replayed.
    pub attempts: usize,
}

/// Replays `case` leniently; if it shows `symptom` (the same invariant
/// broken by the same race, or by none of the catalog's), the case as it
/// actually ran (strict schedule) and its size.
fn reproduce(case: &Case, symptom: Symptom) -> Option<(Case, Size, String)> {
    let prepared = Prepared::new(&case.scenario, case.strategy).ok()?;
    let mut chooser = Lenient::new(&case.schedule);
    let options = RunOptions { record_trace: true, ..RunOptions::default() };
    let run = execute_run(&prepared, &mut chooser, options).ok()?;
    let violation = judge(&case.scenario, &run.observation)
        .into_iter()
        .find(|v| v.invariant == symptom.invariant && Symptom::of(&run.trace, v) == symptom)?;
    let schedule = run.minimal_schedule();
    let size = Size {
        requests: case.scenario.requests.len(),
        faults: case.scenario.faults.len()
            + schedule.0.iter().filter(|t| matches!(t, Token::Run { fault: Some(_), .. })).count(),
        seed_customers: case.scenario.customers.len(),
        preemptions: run.preemptions,
        schedule_len: schedule.len(),
    };
    Some((
        Case { scenario: case.scenario.clone(), strategy: case.strategy, schedule },
        size,
        violation.message,
    ))
}

fn without_request(case: &Case, removed: usize) -> Case {
    let mut scenario = case.scenario.clone();
    scenario.requests.remove(removed);
    scenario.faults.retain(|f| f.request != removed);
    for fault in &mut scenario.faults {
        if fault.request > removed {
            fault.request -= 1;
        }
    }
    let tokens = case
        .schedule
        .0
        .iter()
        .filter_map(|token| match *token {
            Token::Run { request, .. } if request == removed => None,
            Token::Run { request, fault } if request > removed => {
                Some(Token::Run { request: request - 1, fault })
            }
            other => Some(other),
        })
        .collect();
    Case { scenario, strategy: case.strategy, schedule: Schedule(tokens) }
}

/// Every one-step-smaller variant of `case`, most promising first.
fn candidates(case: &Case) -> Vec<Case> {
    let mut out = Vec::new();
    for r in (0..case.scenario.requests.len()).rev() {
        if case.scenario.requests.len() > 1 {
            out.push(without_request(case, r));
        }
    }
    for f in 0..case.scenario.faults.len() {
        let mut smaller = case.clone();
        smaller.scenario.faults.remove(f);
        out.push(smaller);
    }
    for c in (0..case.scenario.customers.len()).rev() {
        let mut smaller = case.clone();
        smaller.scenario.customers.remove(c);
        out.push(smaller);
    }
    let tokens = &case.schedule.0;
    out.push(Case { schedule: Schedule::default(), ..case.clone() });
    for cut in (0..tokens.len()).rev() {
        out.push(Case { schedule: Schedule(tokens[..cut].to_vec()), ..case.clone() });
    }
    for i in 0..tokens.len() {
        let mut fewer = tokens.clone();
        fewer.remove(i);
        out.push(Case { schedule: Schedule(fewer), ..case.clone() });
        if let Token::Run { request, fault: Some(_) } = tokens[i] {
            let mut plain = tokens.clone();
            plain[i] = Token::run(request);
            out.push(Case { schedule: Schedule(plain), ..case.clone() });
        }
        // Let the previous mover go on instead: one preemption fewer.
        if let (Some(Token::Run { request: previous, .. }), Token::Run { .. }) =
            (i.checked_sub(1).map(|p| tokens[p]), tokens[i])
        {
            let mut stay = tokens.clone();
            stay[i] = Token::run(previous);
            out.push(Case { schedule: Schedule(stay), ..case.clone() });
        }
    }
    out
}

/// Shrinks a case known to show `symptom`. `None` if it does not
/// reproduce. Bounded: at most `max_attempts` replays.
pub fn shrink(case: &Case, symptom: Symptom, max_attempts: usize) -> Option<Shrunk> {
    let (mut best, mut size, mut message) = reproduce(case, symptom)?;
    let mut attempts = 1;
    'improve: loop {
        for candidate in candidates(&best) {
            if attempts >= max_attempts {
                break 'improve;
            }
            attempts += 1;
            if let Some((smaller, smaller_size, smaller_message)) = reproduce(&candidate, symptom) {
                if smaller_size < size {
                    (best, size, message) = (smaller, smaller_size, smaller_message);
                    continue 'improve;
                }
            }
        }
        break;
    }
    Some(Shrunk { case: best, size, invariant: symptom.invariant, race: symptom.race, message, attempts })
}

impl Shrunk {
    /// The shrunk case as a regression file of the corpus.
    pub fn to_regression(&self) -> Regression {
        Regression {
            scenario: self.case.scenario.clone(),
            strategy: self.case.strategy,
            schedule: self.case.schedule.to_string(),
            invariant: self.invariant,
            race: self.race,
            message: self.message.clone(),
        }
    }
}
