//! `defaults_present` and `responses_see_defaults`: every customer holds
//! exactly the defaults it is owed, worked out here from the request (or
//! seed) that inserted it and the catalog, independently of the flows.

use std::collections::BTreeMap;

use cusim::flow::Request;
use cusim::model::{Catalog, FullCustomer, ProductKind};
use serde_json::json;

use super::{Checker, Invariant};
use crate::judge::observation::Creator;

/// The defaults a customer is owed, as `(group, product)` pairs in group
/// order: per group the best default by trial > paid > free, then by
/// product id (SPEC §3), restated here independently of the flows.
pub fn owed_defaults(
    catalog: &Catalog,
    disable_default: bool,
    only_group: Option<&str>,
) -> Vec<(String, String)> {
    if disable_default {
        return Vec::new();
    }
    let rank = |kind: ProductKind| match kind {
        ProductKind::Trial => 0,
        ProductKind::Paid => 1,
        ProductKind::Free => 2,
    };
    let mut best: BTreeMap<&str, (u8, &str)> = BTreeMap::new();
    for product in &catalog.products {
        let counts = product.is_default && (product.kind != ProductKind::Paid || catalog.force_paid_default);
        if !counts || only_group.is_some_and(|g| g != product.group) {
            continue;
        }
        let candidate = (rank(product.kind), product.id.as_str());
        let slot = best.entry(product.group.as_str()).or_insert(candidate);
        if candidate < *slot {
            *slot = candidate;
        }
    }
    best.into_iter().map(|(group, (_, id))| (group.to_owned(), id.to_owned())).collect()
}

fn products_of(full: &FullCustomer) -> Vec<(String, String)> {
    let mut products: Vec<(String, String)> =
        full.products.iter().map(|p| (p.group.clone(), p.product_id.clone())).collect();
    products.sort();
    products
}

impl Checker<'_> {
    /// The defaults owed to the customer `internal_id`, from whoever inserted it.
    pub(super) fn owed(&self, internal_id: &str) -> Option<Vec<(String, String)>> {
        // (no defaults asked for, the one group asked for)
        let (disabled, only_group) = match self.obs.created_by.get(internal_id)? {
            Creator::Seed(i) => (self.scenario.customers[*i].disable_default, None),
            Creator::Request(i) => match &self.scenario.requests[*i].request {
                Request::Create { disable_default, create_default_products, default_group, .. } => {
                    (*disable_default || !*create_default_products, default_group.as_deref())
                }
                Request::Check { customer_data, .. } | Request::Track { customer_data, .. } => {
                    (customer_data.as_ref().is_some_and(|data| data.disable_default), None)
                }
                Request::Get { .. } => return None,
            },
        };
        Some(owed_defaults(&self.catalog, disabled, only_group))
    }

    pub(super) fn defaults_present(&mut self) {
        for row in self.obs.state.rows() {
            let Some(owed) = self.owed(&row.internal_id) else { continue };
            let full = self.obs.state.full(&row.internal_id).expect("a committed row reads back");
            let has = products_of(full);
            if has != owed {
                let creators = self.creators(std::slice::from_ref(&row.internal_id));
                self.violate(
                    Invariant::DefaultsPresent,
                    &creators,
                    format!(
                        "customer {} (id {}) has products {has:?}, owes {owed:?}",
                        row.internal_id,
                        row.id.as_deref().unwrap_or("null")
                    ),
                    json!({ "customer": full, "owed": owed }),
                );
            }
        }
    }

    pub(super) fn responses_see_defaults(&mut self) {
        let mut found = Vec::new();
        for (source, _, _, response) in self.responses() {
            let customer = response.customer();
            let Some(owed) = self.owed(&customer.customer.internal_id) else { continue };
            let shown = products_of(customer);
            if shown != owed {
                found.push((source, customer.customer.internal_id.clone(), shown, owed, customer.clone()));
            }
        }
        for (source, internal_id, shown, owed, customer) in found {
            self.violate(
                Invariant::ResponsesSeeDefaults,
                &[source],
                format!("{source} showed customer {internal_id} with products {shown:?}; it owes {owed:?}"),
                json!({ "response_customer": customer }),
            );
        }
    }
}
