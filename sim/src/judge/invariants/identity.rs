//! `unique_customer` and `claim_correct`: one row per customer, every
//! create of an id answered with the same customer, and a claim that
//! keeps its id.

use std::collections::BTreeMap;

use cusim::flow::Request;
use cusim::model::Scope;
use serde_json::json;

use super::{Checker, Invariant, Source};
use crate::judge::observation::SettleKey;

impl Checker<'_> {
    pub(super) fn unique_customer(&mut self) {
        let rows = self.obs.state.rows();
        let mut by_id: BTreeMap<(Scope, String), Vec<String>> = BTreeMap::new();
        let mut by_email: BTreeMap<(Scope, String), Vec<String>> = BTreeMap::new();
        for row in &rows {
            if let Some(id) = &row.id {
                by_id.entry((row.scope(), id.clone())).or_default().push(row.internal_id.clone());
            } else if let Some(email) = row.email.as_ref().filter(|e| !e.is_empty()) {
                by_email
                    .entry((row.scope(), email.to_lowercase()))
                    .or_default()
                    .push(row.internal_id.clone());
            }
        }
        for ((scope, id), internal_ids) in by_id.into_iter().filter(|(_, v)| v.len() > 1) {
            let creators = self.creators(&internal_ids);
            self.violate(
                Invariant::UniqueCustomer,
                &creators,
                format!("{} rows with id {id} in {scope}", internal_ids.len()),
                json!({ "id": id, "internal_ids": internal_ids }),
            );
        }
        for ((scope, email), internal_ids) in by_email.into_iter().filter(|(_, v)| v.len() > 1) {
            let creators = self.creators(&internal_ids);
            self.violate(
                Invariant::UniqueCustomer,
                &creators,
                format!("{} id-less rows with email {email} in {scope}", internal_ids.len()),
                json!({ "email": email, "internal_ids": internal_ids }),
            );
        }
        let mut answers: BTreeMap<(Scope, String), Vec<(Source, String)>> = BTreeMap::new();
        for (source, scope, request, response) in self.responses() {
            let asked = match request {
                Some(request) => request.customer_id().map(str::to_owned),
                None => match source {
                    Source::Settle(i) => match &self.obs.settles[i].customer {
                        SettleKey::Id(id) => Some(id.clone()),
                        SettleKey::Email(_) => None,
                    },
                    Source::Request(_) => None,
                },
            };
            if let Some(id) = asked {
                answers
                    .entry((scope, id))
                    .or_default()
                    .push((source, response.customer().customer.internal_id.clone()));
            }
        }
        for ((scope, id), seen) in answers {
            let mut distinct: Vec<&String> = seen.iter().map(|(_, internal)| internal).collect();
            distinct.sort();
            distinct.dedup();
            if distinct.len() > 1 {
                let sources: Vec<Source> = seen.iter().map(|(s, _)| *s).collect();
                let who: Vec<String> =
                    seen.iter().map(|(s, internal)| format!("{s} got {internal}")).collect();
                self.violate(
                    Invariant::UniqueCustomer,
                    &sources,
                    format!("responses for id {id} in {scope} name {} different customers", distinct.len()),
                    json!({ "id": id, "responses": who }),
                );
            }
        }
    }

    pub(super) fn claim_correct(&mut self) {
        let rows = self.obs.state.rows();
        let mut found = Vec::new();
        for (i, outcome) in self.obs.outcomes.iter().enumerate() {
            let request = &self.scenario.requests[i].request;
            let (Request::Create { id: Some(asked), .. }, Some(response)) = (request, outcome.response())
            else {
                continue;
            };
            let customer = &response.customer().customer;
            let now = rows.iter().find(|r| r.internal_id == customer.internal_id);
            // Built only for a violation: serializing rows is most of a clean run's judging.
            let evidence = || json!({ "asked": asked.as_str(), "returned": customer, "now": now });
            if customer.id.as_deref() != Some(asked.as_str()) {
                found.push((
                    i,
                    None,
                    format!(
                        "create {{id: {asked}}} returned customer {} with id {}",
                        customer.internal_id,
                        customer.id.as_deref().unwrap_or("null")
                    ),
                    evidence(),
                ));
                continue;
            }
            if now.and_then(|r| r.id.as_deref()) != Some(asked.as_str()) {
                // Whoever asked for the id the row has now took it over.
                let taker = now.and_then(|r| r.id.as_deref()).and_then(|id| {
                    self.scenario.requests.iter().position(
                        |r| matches!(&r.request, Request::Create { id: Some(other), .. } if other.as_str() == id),
                    )
                });
                found.push((
                    i,
                    taker,
                    format!(
                        "create {{id: {asked}}} returned customer {}, whose id is now {}",
                        customer.internal_id,
                        now.map_or("gone".to_owned(), |r| r.id.clone().unwrap_or_else(|| "null".into()))
                    ),
                    evidence(),
                ));
            }
        }
        for (i, taker, message, evidence) in found {
            let sources: Vec<Source> = std::iter::once(i).chain(taker).map(Source::Request).collect();
            self.violate(Invariant::ClaimCorrect, &sources, message, evidence);
        }
    }
}
