//! Settle reads (SPEC §6): after quiescence, one read of each touched
//! customer through the strategy's own read path, the next request a real
//! customer would make. This is where they are defined; each driver runs
//! the plan on its backend, one read after another.

use cusim::flow::Request;
use cusim::model::{validate_customer_id, CustomerData, CustomerRow, Scope};

use crate::input::scenario::Scenario;

use super::observation::SettleKey;

/// One settle read to make: which customer, and the request that reads it.
#[derive(Debug, Clone)]
pub struct SettleRead {
    pub scope: Scope,
    pub customer: SettleKey,
    pub request: Request,
}

/// The settle reads after a run that committed `committed`: every
/// customer the scenario names by id, and every committed customer (by
/// id, or an id-less one by its email), each once, in order.
pub fn plan(scenario: &Scenario, committed: &[CustomerRow]) -> Vec<SettleRead> {
    settle_keys(scenario, committed)
        .into_iter()
        .map(|(scope, customer)| SettleRead { request: settle_request(&scope, &customer), scope, customer })
        .collect()
}

/// What the settle reads visit, sorted.
fn settle_keys(scenario: &Scenario, committed: &[CustomerRow]) -> Vec<(Scope, SettleKey)> {
    let mut keys: Vec<(Scope, SettleKey)> = scenario
        .named_customers()
        .into_iter()
        .filter(|(_, id)| validate_customer_id(id).is_ok())
        .map(|(scope, id)| (scope, SettleKey::Id(id)))
        .collect();
    for row in committed {
        match (&row.id, row.idless_email_key()) {
            (Some(id), _) => keys.push((row.scope(), SettleKey::Id(id.clone()))),
            (None, Some(_)) => {
                let email = row.email.clone().expect("an id-less key has an email");
                keys.push((row.scope(), SettleKey::Email(email)));
            }
            (None, None) => {}
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// The request a settle read makes: a read by id, or an id-less create
/// with the customer's email (the only request that reaches an id-less
/// customer).
fn settle_request(scope: &Scope, key: &SettleKey) -> Request {
    let (org, env) = (Some(scope.org_id.clone()), Some(scope.env));
    match key {
        SettleKey::Id(id) => Request::Get { customer_id: id.clone(), org, env },
        SettleKey::Email(email) => {
            let data = CustomerData { email: Some(email.clone()), ..Default::default() };
            let mut request = Request::create(None, data);
            if let Request::Create { org: o, env: e, .. } = &mut request {
                (*o, *e) = (org, env);
            }
            request
        }
    }
}
