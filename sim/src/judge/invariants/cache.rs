//! `fresh_cache` and `usage_conserved`: the cache agrees with the DB,
//! and accepted usage is neither lost nor doubled, in the DB or the cache.

use std::collections::BTreeMap;

use cusim::flow::Response;
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

    pub(super) fn usage_conserved(&mut self) {
        let mut accepted: BTreeMap<(String, String), (i64, Vec<Source>)> = BTreeMap::new();
        for (i, outcome) in self.obs.outcomes.iter().enumerate() {
            if let Some(Response::Track(track)) = outcome.response() {
                let key = (track.customer.customer.internal_id.clone(), track.feature_id.clone());
                let entry = accepted.entry(key).or_default();
                entry.0 += track.value;
                entry.1.push(Source::Request(i));
            }
        }
        let mut recorded: BTreeMap<(String, String), i64> = BTreeMap::new();
        for row in self.obs.state.rows() {
            let full = self.obs.state.full(&row.internal_id).expect("reads back");
            for (feature, balance) in &full.balances {
                if balance.usage != 0 {
                    recorded.insert((row.internal_id.clone(), feature.clone()), balance.usage);
                }
            }
        }
        let mut keys: Vec<(String, String)> = accepted.keys().chain(recorded.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        let mut found = Vec::new();
        for key in keys {
            let (sum, sources) = accepted.get(&key).cloned().unwrap_or_default();
            let in_db = recorded.get(&key).copied().unwrap_or(0);
            if sum != in_db {
                found.push((
                    sources.clone(),
                    format!("customer {} {}: tracks accepted {sum}, the DB has {in_db}", key.0, key.1),
                    json!({ "customer": key.0, "feature": key.1, "accepted": sum, "in_db": in_db }),
                ));
            }
            for (cache_key, cached) in self.obs.state.cache.iter().map(|(k, v)| (k, v)) {
                if cached.customer.internal_id == key.0 {
                    let in_cache = cached.balances.get(&key.1).map_or(0, |b| b.usage);
                    if in_cache != sum {
                        found.push((
                            sources.clone(),
                            format!(
                                "customer {} {}: tracks accepted {sum}, cache {cache_key} has {in_cache}",
                                key.0, key.1
                            ),
                            json!({
                                "customer": key.0,
                                "feature": key.1,
                                "accepted": sum,
                                "cache_key": cache_key.to_string(),
                                "in_cache": in_cache,
                            }),
                        ));
                    }
                }
            }
        }
        for (sources, message, evidence) in found {
            self.violate(Invariant::UsageConserved, &sources, message, evidence);
        }
    }
}
