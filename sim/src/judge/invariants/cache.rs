//! `fresh_cache` and `usage_conserved`: the cache agrees with the DB,
//! and usage is neither lost nor doubled, in the DB or the cache.

use std::collections::BTreeMap;

use cusim::backend::mem::{key_applied, Deducted};
use cusim::flow::{Request, Response};
use cusim::model::Scope;
use serde_json::json;

use super::{Checker, Invariant, Source};

impl Checker<'_> {
    pub(super) fn fresh_cache(&mut self) {
        let mut found = Vec::new();
        for (key, cached) in self.obs.state.cache.iter().map(|(k, v)| (k, v)) {
            let db = self.obs.state.full(&cached.customer.internal_id);
            let names_row = db.as_ref().is_some_and(|db| {
                db.customer.id.as_deref() == Some(key.id.as_str()) && db.customer.scope() == key.scope
            });
            if db != Some(cached) || !names_row {
                found.push((key.to_string(), cached.clone(), db));
            }
        }
        for (key, cached, db) in found {
            // Who showed the stale snapshot (most likely who cached it);
            // failing that, who created the customer.
            let showed: Vec<Source> = self
                .responses()
                .into_iter()
                .filter(|(_, _, _, response)| response.customer() == &cached)
                .map(|(source, ..)| source)
                .collect();
            let creators = if showed.iter().any(|s| matches!(s, Source::Request(_))) {
                showed
            } else {
                self.creators(std::slice::from_ref(&cached.customer.internal_id))
            };
            let message = match &db {
                None => format!(
                    "cache {key} holds customer {} that the DB does not have",
                    cached.customer.internal_id
                ),
                Some(_) => {
                    format!("cache {key} differs from the DB's view of {}", cached.customer.internal_id)
                }
            };
            self.violate(Invariant::FreshCache, &creators, message, json!({ "cached": cached, "db": db }));
        }
    }

    /// Usage is judged as Elle judges a counter: per customer and
    /// feature, the DB's usage lies between what was acknowledged and what
    /// may have been applied, each logical request counted once (a keyed
    /// retry is the same logical request, an unkeyed one a new one); the
    /// cache, where it holds the customer, agrees with the DB. An attempt
    /// not acknowledged may have been applied exactly when a deduction of
    /// it took effect (`Observation::deducted`; where nobody saw, unless it
    /// was refused); the bounds are no wider than that.
    pub(super) fn usage_conserved(&mut self) {
        let mut tallies: BTreeMap<(Scope, String, String), Tally> = BTreeMap::new();
        for logical in self.logical_tracks() {
            let tally = tallies.entry(logical.counter.clone()).or_default();
            tally.sources.extend(logical.requests.iter().map(|&i| Source::Request(i)));
            if logical.acknowledged {
                tally.acknowledged += logical.value;
            } else if logical.maybe_applied {
                tally.low += logical.value.min(0);
                tally.high += logical.value.max(0);
            }
        }
        for full in &self.obs.state.customers {
            let Some(id) = &full.customer.id else { continue };
            for (feature, balance) in &full.balances {
                let counter = (full.customer.scope(), id.clone(), feature.clone());
                tallies.entry(counter).or_default().in_db += balance.usage;
            }
        }
        let mut found = Vec::new();
        for ((scope, id, feature), tally) in &tallies {
            let (low, high) = (tally.acknowledged + tally.low, tally.acknowledged + tally.high);
            if !(low..=high).contains(&tally.in_db) {
                let (bound, why) = if tally.in_db < low {
                    (low, "less than was acknowledged: usage was lost")
                } else {
                    (high, "more than may have been applied: usage was counted twice")
                };
                found.push((
                    tally.sources.clone(),
                    format!(
                        "customer {id} ({scope}) {feature}: the DB has {}, {why} (acknowledged {}, applied at most {high}, bound {bound})",
                        tally.in_db, tally.acknowledged
                    ),
                    json!({
                        "customer": id,
                        "scope": scope.to_string(),
                        "feature": feature,
                        "in_db": tally.in_db,
                        "acknowledged": tally.acknowledged,
                        "lowest": low,
                        "highest": high,
                    }),
                ));
            }
        }
        for (cache_key, cached) in &self.obs.state.cache {
            let internal_id = &cached.customer.internal_id;
            let Some(db) = self.obs.state.full(internal_id) else { continue };
            let mut features: Vec<&String> = cached.balances.keys().chain(db.balances.keys()).collect();
            features.sort();
            features.dedup();
            for feature in features {
                let in_cache = cached.balances.get(feature).map_or(0, |b| b.usage);
                let in_db = db.balances.get(feature).map_or(0, |b| b.usage);
                if in_cache != in_db {
                    let counter = (cache_key.scope.clone(), cache_key.id.clone(), feature.clone());
                    let sources = tallies.get(&counter).map(|t| t.sources.clone()).unwrap_or_default();
                    found.push((
                        sources,
                        format!("customer {internal_id} {feature}: cache {cache_key} has {in_cache}, the DB {in_db}"),
                        json!({
                            "customer": internal_id,
                            "feature": feature,
                            "cache_key": cache_key.to_string(),
                            "in_cache": in_cache,
                            "in_db": in_db,
                        }),
                    ));
                }
            }
        }
        for (sources, message, evidence) in found {
            self.violate(Invariant::UsageConserved, &sources, message, evidence);
        }
    }

    /// The tracks of the run as logical requests: each attempt of an
    /// unkeyed track is one; the attempts of every track sent with the same
    /// key, customer, feature and value are one together while the key is
    /// in its window ([`key_windows`]).
    fn logical_tracks(&self) -> Vec<LogicalTrack> {
        let deducted = |i: usize, k: usize, attempt: &crate::judge::RequestOutcome| match &self.obs.deducted {
            Some(deducted) => *deducted
                .get(i)
                .and_then(|attempts| attempts.get(k))
                .expect("Observation::deducted holds a mark per attempt of every request"),
            None => Deducted { counted: attempt.may_have_applied(), keyed_at_ms: None },
        };
        let mut logical: Vec<LogicalTrack> = Vec::new();
        // Per key: the logical track its first window is, and its attempts.
        type Group = (Scope, String, String, String, i64);
        let mut keyed: BTreeMap<Group, (usize, Vec<KeyedAttempt>)> = BTreeMap::new();
        for (i, sent) in self.scenario.requests.iter().enumerate() {
            let Request::Track { customer_id, feature_id, value, .. } = &sent.request else { continue };
            let counter = (sent.scope(), customer_id.clone(), feature_id.clone());
            let attempts = self.obs.retried[i].iter().chain(std::iter::once(&self.obs.outcomes[i]));
            for (k, attempt) in attempts.enumerate() {
                let acknowledged = matches!(attempt.response(), Some(Response::Track(_)));
                let did = deducted(i, k, attempt);
                match &sent.idempotency_key {
                    Some(key) => {
                        let group =
                            (sent.scope(), key.clone(), customer_id.clone(), feature_id.clone(), *value);
                        let (_, attempts) = keyed.entry(group).or_insert_with(|| {
                            logical.push(LogicalTrack::new(counter.clone(), *value));
                            (logical.len() - 1, Vec::new())
                        });
                        attempts.push(KeyedAttempt { request: i, acknowledged, did });
                    }
                    None => {
                        let mut track = LogicalTrack::new(counter.clone(), *value);
                        track.note(i, acknowledged, did.counted);
                        logical.push(track);
                    }
                }
            }
        }
        // A key's later windows are logical tracks of their own, after
        // every other.
        for (first, attempts) in keyed.into_values() {
            let mut tracks = vec![first];
            for (attempt, window) in attempts.iter().zip(key_windows(&attempts)) {
                while tracks.len() <= window {
                    logical.push(LogicalTrack::new(logical[first].counter.clone(), logical[first].value));
                    tracks.push(logical.len() - 1);
                }
                logical[tracks[window]].note(attempt.request, attempt.acknowledged, attempt.did.counted);
            }
        }
        logical
    }
}

/// One attempt of a keyed track: its request, whether it was
/// acknowledged, and what its deductions did.
struct KeyedAttempt {
    request: usize,
    acknowledged: bool,
    did: Deducted,
}

/// Which window of its key each of one key's attempts falls in (0, 1, …):
/// taken in the order their keyed deductions ran at the DB, a window
/// opens when a deduction with the key counts, and an attempt whose
/// deduction ran once the idempotency window had passed since then
/// (24 h: [`key_applied`]) begins the next; the key was forgotten, so its
/// track is a new one, which must count if acknowledged. Attempts whose
/// keyed deduction did not run, or whose time nobody saw, are in the
/// first.
fn key_windows(attempts: &[KeyedAttempt]) -> Vec<usize> {
    let mut windows = vec![0; attempts.len()];
    let mut timed: Vec<(u64, usize)> =
        attempts.iter().enumerate().filter_map(|(n, a)| Some((a.did.keyed_at_ms?, n))).collect();
    timed.sort();
    let (mut window, mut opened) = (0, None);
    for (at_ms, n) in timed {
        if opened.is_some_and(|since| !key_applied(since, at_ms)) {
            window += 1;
            opened = None;
        }
        windows[n] = window;
        if attempts[n].did.counted && opened.is_none() {
            opened = Some(at_ms);
        }
    }
    windows
}

/// One logical track: what it counts, whether any attempt of it was
/// acknowledged, and whether any may have been applied.
struct LogicalTrack {
    counter: (Scope, String, String),
    value: i64,
    acknowledged: bool,
    maybe_applied: bool,
    requests: Vec<usize>,
}

impl LogicalTrack {
    fn new(counter: (Scope, String, String), value: i64) -> LogicalTrack {
        LogicalTrack { counter, value, acknowledged: false, maybe_applied: false, requests: Vec::new() }
    }

    /// An attempt of it, of request `request`.
    fn note(&mut self, request: usize, acknowledged: bool, maybe_applied: bool) {
        self.acknowledged |= acknowledged;
        self.maybe_applied |= maybe_applied;
        if !self.requests.contains(&request) {
            self.requests.push(request);
        }
    }
}

/// One counter's bounds: acknowledged usage, and how far the tracks not
/// acknowledged that may have been applied may move it either way.
#[derive(Default)]
struct Tally {
    acknowledged: i64,
    low: i64,
    high: i64,
    in_db: i64,
    sources: Vec<Source>,
}
