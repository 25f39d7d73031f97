//! `single_stripe_customer`: at most one Stripe customer per customer,
//! and `processor` names it.

use std::collections::BTreeMap;

use cusim::flow::Request;
use serde_json::json;

use super::{Checker, Invariant, Source};

impl Checker<'_> {
    pub(super) fn single_stripe_customer(&mut self) {
        let rows = self.obs.state.rows();
        let mut by_customer: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for stripe in self.obs.state.stripe.iter() {
            by_customer.entry(stripe.params.internal_id.as_str()).or_default().push(stripe.id.as_str());
        }
        let mut found = Vec::new();
        for (internal_id, stripe_ids) in &by_customer {
            let row = rows.iter().find(|r| r.internal_id == *internal_id);
            let processor = row.and_then(|r| r.processor.as_deref());
            let message = if row.is_none() {
                Some(format!(
                    "Stripe customers {stripe_ids:?} belong to customer {internal_id}, which does not exist"
                ))
            } else if stripe_ids.len() > 1 {
                Some(format!(
                    "customer {internal_id} has {} Stripe customers {stripe_ids:?}; processor names {}",
                    stripe_ids.len(),
                    processor.unwrap_or("none")
                ))
            } else if processor != Some(stripe_ids[0]) {
                Some(format!(
                    "customer {internal_id}'s Stripe customer is {}, but processor names {}",
                    stripe_ids[0],
                    processor.unwrap_or("none")
                ))
            } else {
                None
            };
            if let Some(message) = message {
                found.push((
                    internal_id.to_string(),
                    message,
                    stripe_ids.clone(),
                    processor.map(str::to_owned),
                ));
            }
        }
        for row in &rows {
            if let Some(processor) = &row.processor {
                if !by_customer
                    .get(row.internal_id.as_str())
                    .is_some_and(|ids| ids.contains(&processor.as_str()))
                {
                    found.push((
                        row.internal_id.clone(),
                        format!(
                            "customer {} names processor {processor}, not one of its Stripe customers",
                            row.internal_id
                        ),
                        by_customer.get(row.internal_id.as_str()).cloned().unwrap_or_default(),
                        Some(processor.clone()),
                    ));
                }
            }
        }
        for (internal_id, message, stripe_ids, processor) in found {
            let creators = self.creators(std::slice::from_ref(&internal_id));
            let mut sources = creators;
            for (i, request) in self.scenario.requests.iter().enumerate() {
                let touched = self.obs.outcomes[i]
                    .response()
                    .is_some_and(|r| r.customer().customer.internal_id == internal_id);
                if touched && !matches!(request.request, Request::Get { .. }) {
                    sources.push(Source::Request(i));
                }
            }
            self.violate(
                Invariant::SingleStripeCustomer,
                &sources,
                message,
                json!({ "customer": internal_id, "stripe_customers": stripe_ids, "processor": processor }),
            );
        }
    }
}
