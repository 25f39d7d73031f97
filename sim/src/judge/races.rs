//! Which race of SPEC §8 a violation shows, matched by the interleaving
//! that defines it: the operations of the run's trace, with what each
//! answered ([`Call`]), ordered by the run's happens-before order (each
//! event's [`Past`]): one request's steps in the order it made them, and
//! two steps of different requests only where they conflict (the
//! exhaustive scheduler's dependency relation), never by the order in
//! which two commuting steps happened to run. So every schedule of one
//! class of equivalent schedules shows the same races, whichever of them
//! a reduced search ran. A violation whose run holds no such interleaving
//! is named by no race: it is a failure the catalog does not describe (a
//! cache eviction before a sync, a keyed retry counted twice), and is
//! reported as such.
//!
//! Each matcher reads the catalog's interleaving column, where it speaks
//! of the order of two steps that commute (R7's cache write and `processor`
//! update, R8's DB read and cache deduct), by the conflicting steps that
//! order means:
//!
//! | race | the interleaving matched |
//! |---|---|
//! | R1 | B looks id X up and finds nothing; A inserts X; B's insert of X fails with 23505, and B answers `internal_error` |
//! | R2 | A inserts X; B reads X with fewer products than the DB ends with, and caches it; that entry is what stays |
//! | R3 | A inserts X, then crashes before it attached anything to X; X ends without its defaults |
//! | R4 | two requests each look the email up and find no id-less row; each inserts an id-less row with it |
//! | R5 | two requests each see id-less row X by its email; each sets X's id |
//! | R6 | two requests each see X with no `processor`, then each creates a Stripe customer for X under its own idempotency key |
//! | R7 | B reads X with no `processor` and caches it; A then sets X's `processor` (after B's read); nothing invalidates or replaces B's entry after it |
//! | R8 | A and B both miss the cache; A sets it and deducts there; B then overwrites it with its snapshot, read from the DB before A's deduction reached it (A's sync) |
//! | R9 | A deducts in the cache; an invalidation deletes the entry; A's sync finds no entry |
//!
//! A race needs its symptom too (the invariant the catalog names, about
//! the customer the interleaving touched): an interleaving that did no
//! harm is not a race found.

use std::collections::BTreeSet;
use std::fmt;

use cusim::backend::{
    AttachOutcome, CacheKey, CacheWriteOutcome, DbError, DeductOutcome, DeductTarget, InsertOutcome, Op,
    Outcome, SyncOutcome,
};
use cusim::model::CustomerRow;
use serde::{Deserialize, Serialize};

use super::invariants::{Invariant, Violation};
use super::trace::{Event, EventKind, Past};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Race {
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
}

impl Race {
    pub const ALL: [Race; 9] =
        [Race::R1, Race::R2, Race::R3, Race::R4, Race::R5, Race::R6, Race::R7, Race::R8, Race::R9];
}

impl fmt::Display for Race {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// What a failure shows: the invariant it breaks, and the catalog race
/// whose interleaving its run holds (`None`: none of the catalog's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Symptom {
    pub invariant: Invariant,
    pub race: Option<Race>,
}

impl fmt::Display for Symptom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.race {
            Some(race) => write!(f, "{} ({race})", self.invariant),
            None => write!(f, "{} (no catalog race)", self.invariant),
        }
    }
}

impl Symptom {
    /// Every symptom a violation of `invariant` may show: with no catalog
    /// race, or with each race `race_of` matches for it.
    pub fn possible(invariant: Invariant) -> Vec<Symptom> {
        let races: &[Race] = match invariant {
            Invariant::NoInternalError => &[Race::R1],
            Invariant::FreshCache => &[Race::R2, Race::R7],
            Invariant::DefaultsPresent => &[Race::R3],
            Invariant::UniqueCustomer => &[Race::R4],
            Invariant::ClaimCorrect => &[Race::R5],
            Invariant::SingleStripeCustomer => &[Race::R6],
            Invariant::UsageConserved => &[Race::R8, Race::R9],
            _ => &[],
        };
        std::iter::once(None)
            .chain(races.iter().copied().map(Some))
            .map(|race| Symptom { invariant, race })
            .collect()
    }

    /// What `violation` shows in the run that recorded `trace`.
    pub fn of(trace: &[Event], violation: &Violation) -> Symptom {
        Symptom { invariant: violation.invariant, race: race_of(trace, violation) }
    }
}

/// When something of a trace happened: its position, its decision, and
/// the decisions that happen before that one.
#[derive(Clone, Copy)]
struct Moment<'t> {
    at: usize,
    decision: usize,
    past: &'t Past,
}

impl Moment<'_> {
    /// Whether this happens before `other`: in the same decision, by
    /// position (one mover's code in order); else by the run's
    /// happens-before order, never by the position of two decisions that
    /// commute.
    fn before(&self, other: &Moment<'_>) -> bool {
        if self.decision == other.decision {
            self.at < other.at
        } else {
            other.past.has(self.decision)
        }
    }
}

/// One operation of a trace: who made it, on which attempt, what it was
/// and what it answered.
struct Step<'t> {
    when: Moment<'t>,
    request: usize,
    attempt: u32,
    op: &'t Op,
    outcome: &'t Outcome,
}

impl Step<'_> {
    fn before(&self, other: &Step<'_>) -> bool {
        self.when.before(&other.when)
    }

    /// Made by the same attempt of the same request as `other`.
    fn same_attempt(&self, other: &Step<'_>) -> bool {
        (self.request, self.attempt) == (other.request, other.attempt)
    }
}

/// A crash: when, and which attempt of which request.
struct Crash<'t> {
    when: Moment<'t>,
    request: usize,
    attempt: u32,
}

/// A trace read for matching: its operations and crashes, in the order
/// they were recorded, each with its place in the run's happens-before
/// order.
struct History<'t> {
    steps: Vec<Step<'t>>,
    crashes: Vec<Crash<'t>>,
}

impl<'t> History<'t> {
    fn of(trace: &'t [Event]) -> History<'t> {
        let mut attempts: Vec<u32> = Vec::new();
        let mut steps = Vec::new();
        let mut crashes = Vec::new();
        for (at, event) in trace.iter().enumerate() {
            let Some(request) = event.request else { continue };
            if attempts.len() <= request {
                attempts.resize(request + 1, 1);
            }
            let when = || Moment {
                at,
                decision: event.step.expect("a request's events belong to decisions"),
                past: &event.past,
            };
            match &event.kind {
                EventKind::Op { call, .. } => steps.push(Step {
                    when: when(),
                    request,
                    attempt: attempts[request],
                    op: &call.op,
                    outcome: &call.outcome,
                }),
                EventKind::Crash { .. } => {
                    crashes.push(Crash { when: when(), request, attempt: attempts[request] })
                }
                EventKind::Retry { attempt } => attempts[request] = *attempt,
                _ => {}
            }
        }
        History { steps, crashes }
    }

    fn steps(&self) -> impl Iterator<Item = &Step<'t>> + '_ {
        self.steps.iter()
    }
}

/// Every customer row an answer shows.
fn rows(outcome: &Outcome) -> Vec<&CustomerRow> {
    match outcome {
        Outcome::Row { row: Some(row) } => vec![row],
        Outcome::Rows { rows } => rows.iter().collect(),
        Outcome::Insert { outcome: InsertOutcome::Inserted(row) }
        | Outcome::Insert { outcome: InsertOutcome::Existing(row) } => vec![row],
        Outcome::Full { customer: Some(full) } => vec![&full.customer],
        _ => Vec::new(),
    }
}

/// The row an insert put in, if it did.
fn inserted<'t>(step: &Step<'t>) -> Option<&'t CustomerRow> {
    match (step.op, step.outcome) {
        (Op::Insert { .. }, Outcome::Insert { outcome: InsertOutcome::Inserted(row) }) => Some(row),
        _ => None,
    }
}

/// The internal id a piece of evidence names at `path` (a customer's, or a
/// full customer's).
fn internal_id_at<'v>(evidence: &'v serde_json::Value, path: &[&str]) -> Option<&'v str> {
    let mut value = evidence;
    for key in path {
        value = &value[*key];
    }
    value["internal_id"].as_str().or_else(|| value["customer"]["internal_id"].as_str())
}

fn products_at(evidence: &serde_json::Value, key: &str) -> usize {
    evidence[key]["products"].as_array().map_or(0, Vec::len)
}

/// The race `violation` shows in the run that recorded `trace`, if its
/// trace holds the interleaving that defines one (see the module's table).
pub fn race_of(trace: &[Event], violation: &Violation) -> Option<Race> {
    let history = History::of(trace);
    let h = &history;
    match violation.invariant {
        Invariant::NoInternalError => r1(h, violation).then_some(Race::R1),
        Invariant::FreshCache => [(Race::R2, r2 as Matcher), (Race::R7, r7)]
            .into_iter()
            .find(|(_, m)| m(h, violation))
            .map(|(r, _)| r),
        Invariant::DefaultsPresent => r3(h, violation).then_some(Race::R3),
        Invariant::UniqueCustomer => r4(h, violation).then_some(Race::R4),
        Invariant::ClaimCorrect => r5(h, violation).then_some(Race::R5),
        Invariant::SingleStripeCustomer => r6(h, violation).then_some(Race::R6),
        Invariant::UsageConserved => [(Race::R8, r8 as Matcher), (Race::R9, r9)]
            .into_iter()
            .find(|(_, m)| m(h, violation))
            .map(|(r, _)| r),
        _ => None,
    }
}

type Matcher = fn(&History<'_>, &Violation) -> bool;

/// The races the violations of one run show.
pub fn classify(trace: &[Event], violations: &[Violation]) -> BTreeSet<Race> {
    violations.iter().filter_map(|v| race_of(trace, v)).collect()
}

/// R1: B looks id X up and finds nothing; A inserts X; B's insert of X
/// fails with 23505 (and B answers `internal_error`).
fn r1(h: &History<'_>, violation: &Violation) -> bool {
    h.steps().any(|b| {
        let Op::Insert { customer, .. } = b.op else { return false };
        let Some(id) = &customer.id else { return false };
        let unique = matches!(b.outcome, Outcome::DbError { error: DbError::UniqueViolation { .. } });
        if !unique || !violation.requests.contains(&b.request) {
            return false;
        }
        h.steps().filter(|look| look.before(b) && look.same_attempt(b)).any(|look| {
            let found_none = matches!(
                (look.op, look.outcome),
                (Op::LookupId { scope, id: looked, .. }, Outcome::Row { row: None })
                    if *scope == customer.scope && looked == id
            );
            found_none
                && h.steps().any(|a| {
                    a.request != b.request
                        && look.before(a)
                        && a.before(b)
                        && inserted(a)
                            .is_some_and(|row| row.id.as_ref() == Some(id) && row.scope() == customer.scope)
                })
        })
    })
}

/// R2: A inserts X; B reads X with fewer products than the DB ends with,
/// and caches it; that entry is what stays.
fn r2(h: &History<'_>, violation: &Violation) -> bool {
    let evidence = &violation.evidence;
    let Some(x) = internal_id_at(evidence, &["db"]) else { return false };
    let (cached, in_db) = (products_at(evidence, "cached"), products_at(evidence, "db"));
    if cached >= in_db {
        return false;
    }
    h.steps().any(|b| {
        let Op::CacheWrite { value, .. } = b.op else { return false };
        let written = matches!(b.outcome, Outcome::CacheWrite { outcome: CacheWriteOutcome::Written });
        if !written || value.internal_id() != x || value.products.len() != cached {
            return false;
        }
        h.steps().filter(|read| read.before(b) && read.request == b.request).any(|read| {
            let saw_too_few = matches!(
                (read.op, read.outcome),
                (Op::DbRead { .. }, Outcome::Full { customer: Some(full) })
                    if full.internal_id() == x && full.products.len() < in_db
            );
            saw_too_few
                && h.steps().any(|a| {
                    a.request != b.request
                        && a.before(read)
                        && inserted(a).is_some_and(|row| row.internal_id == x)
                })
        })
    })
}

/// R3: A inserts X, then crashes before it attached anything to X; X
/// ends without its defaults.
fn r3(h: &History<'_>, violation: &Violation) -> bool {
    let Some(x) = internal_id_at(&violation.evidence, &["customer"]) else { return false };
    h.steps().any(|a| {
        if inserted(a).is_none_or(|row| row.internal_id != x) {
            return false;
        }
        let Some(crash) = h.crashes.iter().find(|c| {
            a.when.before(&c.when) && (c.request, c.attempt) == (a.request, a.attempt)
        }) else {
            return false;
        };
        !h.steps().any(|step| {
            a.before(step)
                && step.when.before(&crash.when)
                && step.request == a.request
                && matches!(
                    (step.op, step.outcome),
                    (Op::AttachDefault { product, .. }, Outcome::Attach { outcome: AttachOutcome::Attached(_) })
                        if product.internal_customer_id == x
                )
        })
    })
}

/// R4: two requests each look the email up and find no id-less row; each
/// inserts an id-less row with it.
fn r4(h: &History<'_>, violation: &Violation) -> bool {
    let Some(email) = violation.evidence["email"].as_str() else { return false };
    let Some(duplicates) = violation.evidence["internal_ids"].as_array() else { return false };
    let looked_and_inserted = |request: usize| {
        let insert = h.steps().find(|s| {
            s.request == request
                && inserted(s).is_some_and(|row| {
                    row.id.is_none()
                        && duplicates.iter().any(|d| d.as_str() == Some(row.internal_id.as_str()))
                })
        });
        insert.is_some_and(|insert| {
            h.steps().any(|look| {
                look.before(insert)
                    && look.same_attempt(insert)
                    && matches!(
                        (look.op, look.outcome),
                        (Op::LookupEmail { email: looked, .. }, Outcome::Rows { rows })
                            if looked.to_lowercase() == email.to_lowercase() && rows.is_empty()
                    )
            })
        })
    };
    let requests: BTreeSet<usize> = h.steps().map(|s| s.request).collect();
    requests.into_iter().filter(|&r| looked_and_inserted(r)).count() >= 2
}

/// R5: two requests each see id-less row X by its email; each sets X's id.
fn r5(h: &History<'_>, violation: &Violation) -> bool {
    let Some(x) = internal_id_at(&violation.evidence, &["returned"]) else { return false };
    let claimed_after_seeing = |request: usize| {
        h.steps().any(|claim| {
            let claimed = claim.request == request
                && matches!(
                    (claim.op, claim.outcome),
                    (Op::Claim { .. }, Outcome::Row { row: Some(row) }) if row.internal_id == x
                );
            claimed
                && h.steps().any(|look| {
                    look.before(claim)
                        && look.same_attempt(claim)
                        && matches!(
                            (look.op, look.outcome),
                            (Op::LookupEmail { .. }, Outcome::Rows { rows })
                                if rows.iter().any(|r| r.internal_id == x && r.id.is_none())
                        )
                })
        })
    };
    let requests: BTreeSet<usize> = h.steps().map(|s| s.request).collect();
    requests.into_iter().filter(|&r| claimed_after_seeing(r)).count() >= 2
}

/// R6: two requests each see X with no `processor`, then each creates a
/// Stripe customer for X under its own idempotency key.
fn r6(h: &History<'_>, violation: &Violation) -> bool {
    let Some(x) = violation.evidence["customer"].as_str() else { return false };
    // Per request: the idempotency keys of the creates it made for X after
    // its last sight of X showed no processor.
    let mut creators: Vec<(usize, &str)> = Vec::new();
    for step in h.steps() {
        let (Op::StripeCreate { idempotency_key, params }, Outcome::StripeCustomer { .. }) =
            (step.op, step.outcome)
        else {
            continue;
        };
        if params.internal_id != x {
            continue;
        }
        // One attempt's steps are in program order in the trace.
        let last_sight = h
            .steps()
            .filter(|s| s.before(step) && s.same_attempt(step))
            .flat_map(|s| rows(s.outcome))
            .filter(|row| row.internal_id == x)
            .last();
        if last_sight.is_some_and(|row| row.processor.is_none()) {
            creators.push((step.request, idempotency_key));
        }
    }
    creators.iter().any(|(a, key_a)| creators.iter().any(|(b, key_b)| a != b && key_a != key_b))
}

/// R7: B reads X with no `processor` and caches it; A then sets X's
/// `processor` (after B's read, which the change conflicts with); nothing
/// invalidates or replaces B's entry after B wrote it.
fn r7(h: &History<'_>, violation: &Violation) -> bool {
    let evidence = &violation.evidence;
    let Some(x) = internal_id_at(evidence, &["db"]) else { return false };
    let stale = evidence["cached"]["customer"]["processor"].is_null()
        && !evidence["db"]["customer"]["processor"].is_null();
    if !stale {
        return false;
    }
    h.steps().any(|b| {
        let cached_without = matches!(
            (b.op, b.outcome),
            (Op::CacheWrite { value, .. }, Outcome::CacheWrite { outcome: CacheWriteOutcome::Written })
                if value.internal_id() == x && value.customer.processor.is_none()
        );
        let Op::CacheWrite { key, .. } = b.op else { return false };
        let stays = || !h.steps().any(|s| b.before(s) && (invalidates(s, key) || cache_set(s, key)));
        let read_without = |read: &Step<'_>| {
            read.before(b)
                && read.same_attempt(b)
                && matches!(
                    (read.op, read.outcome),
                    (Op::DbRead { .. }, Outcome::Full { customer: Some(full) })
                        if full.internal_id() == x && full.customer.processor.is_none()
                )
        };
        cached_without
            && stays()
            && h.steps().filter(|r| read_without(r)).any(|read| {
                h.steps().any(|a| {
                    let set = matches!(
                        (a.op, a.outcome),
                        (Op::SetProcessor { internal_id, .. }, Outcome::Updated { updated: true }) if internal_id == x
                    );
                    set && a.request != b.request && read.before(a)
                })
            })
    })
}

fn invalidates(step: &Step<'_>, key: &CacheKey) -> bool {
    matches!((step.op, step.outcome), (Op::CacheInvalidate { key: k, .. }, Outcome::Done) if k == key)
}

/// The cache key of the counter a lost-usage violation is about, if usage
/// was lost (the DB has less than was acknowledged).
fn lost_counter(violation: &Violation) -> Option<(&str, &str)> {
    let evidence = &violation.evidence;
    let (in_db, lowest) = (evidence["in_db"].as_i64()?, evidence["lowest"].as_i64()?);
    (in_db < lowest).then_some(())?;
    Some((evidence["customer"].as_str()?, evidence["scope"].as_str()?))
}

fn on_counter(key: &CacheKey, counter: (&str, &str)) -> bool {
    key.id == counter.0 && key.scope.to_string() == counter.1
}

/// Whether `step` deducted in the cache at `counter`'s key.
fn deducted_in_cache(step: &Step<'_>, counter: (&str, &str)) -> Option<CacheKey> {
    match (step.op, step.outcome) {
        (
            Op::Deduct { target: DeductTarget::Cache(key), .. },
            Outcome::Deduct { outcome: DeductOutcome::Applied { .. } },
        ) if on_counter(key, counter) => Some(key.clone()),
        _ => None,
    }
}

fn cache_missed(step: &Step<'_>, key: &CacheKey) -> bool {
    matches!((step.op, step.outcome), (Op::CacheRead { key: k }, Outcome::Cache { read }) if k == key && read.entry.is_none())
}

fn cache_set(step: &Step<'_>, key: &CacheKey) -> bool {
    matches!(
        (step.op, step.outcome),
        (Op::CacheWrite { key: k, .. }, Outcome::CacheWrite { outcome: CacheWriteOutcome::Written })
            if k == key
    )
}

/// R8: A and B both miss the cache; A sets it and deducts there; B then
/// overwrites it with its snapshot, read from the DB before A's deduction
/// reached it (before A's sync, if any).
fn r8(h: &History<'_>, violation: &Violation) -> bool {
    let Some(counter) = lost_counter(violation) else { return false };
    h.steps().any(|a| {
        let Some(key) = deducted_in_cache(a, counter) else { return false };
        let a_missed_and_set = h.steps().any(|m| {
            m.same_attempt(a)
                && cache_missed(m, &key)
                && h.steps().any(|s| s.same_attempt(a) && m.before(s) && s.before(a) && cache_set(s, &key))
        });
        // A's deduction reached the DB before `read`.
        let synced_before = |read: &Step<'_>| {
            h.steps().any(|s| s.same_attempt(a) && matches!(s.op, Op::SyncUsage { .. }) && s.before(read))
        };
        a_missed_and_set
            && h.steps().any(|b| {
                b.request != a.request
                    && a.before(b)
                    && cache_set(b, &key)
                    && h.steps().any(|m| m.same_attempt(b) && m.before(a) && cache_missed(m, &key))
                    && h.steps().any(|read| {
                        read.same_attempt(b)
                            && read.before(b)
                            && matches!(read.op, Op::DbRead { .. })
                            && !synced_before(read)
                    })
            })
    })
}

/// R9: A deducts in the cache; an invalidation deletes the entry; A's
/// sync finds no entry.
fn r9(h: &History<'_>, violation: &Violation) -> bool {
    let Some(counter) = lost_counter(violation) else { return false };
    h.steps().any(|a| {
        let Some(key) = deducted_in_cache(a, counter) else { return false };
        h.steps().any(|s| {
            let lost = matches!(
                (s.op, s.outcome),
                (Op::SyncUsage { key: k, .. }, Outcome::Sync { outcome: SyncOutcome::CacheMissing })
                    if *k == key
            );
            lost && s.same_attempt(a)
                && a.before(s)
                && h.steps().any(|v| a.before(v) && v.before(s) && invalidates(v, &key))
        })
    })
}
