//! A scenario (SPEC §7) as HTTP calls of API.md: what `cusim drive` sends.
//!
//! Every id and email is made fresh per schedule (a prefix), so that no
//! schedule meets another's customers and no state needs resetting. What
//! the API cannot say (another org or environment, a fingerprint,
//! metadata, a Stripe customer asked for, defaults turned off, a group,
//! expansions, a required balance, settle faults, skewed instances, a
//! named fault) is refused, naming the request and the field.

use cusim::flow::Request;

use crate::check::workload::{Block, Call, Data};
use crate::input::scenario::Scenario;

/// What one schedule sends: the seed customers (one after another, before
/// the requests), and one call per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calls {
    pub setup: Vec<Call>,
    pub requests: Vec<Call>,
}

/// A scenario's calls, ids and emails still as written (see [`fresh`]).
pub fn calls_of(scenario: &Scenario) -> Result<Calls, String> {
    let mut refused = Vec::new();
    if !scenario.faults.is_empty() {
        refused.push(
            "faults: a fault at a named point is the model's (on the wire a fault goes in a schedule: `N!db_error`, or --fault-sweep)".to_owned(),
        );
    }
    if !scenario.settle_faults.is_empty() {
        refused.push("settle_faults: the read-back is the API's own reads".to_owned());
    }
    if scenario.instances.iter().any(|i| i.skew_ms != 0) {
        refused.push("instances: a real server's clock is its own".to_owned());
    }
    let setup: Vec<Call> = scenario
        .customers
        .iter()
        .enumerate()
        .filter_map(|(i, seed)| {
            call_of(&seed.as_request(), 0, None)
                .map_err(|e| refused.push(format!("customers[{i}]: {e}")))
                .ok()
        })
        .collect();
    let requests: Vec<Call> = scenario
        .requests
        .iter()
        .enumerate()
        .filter_map(|(i, sent)| {
            call_of(&sent.request, sent.retries, sent.idempotency_key.clone())
                .map_err(|e| refused.push(format!("requests[{i}]: {e}")))
                .ok()
        })
        .collect();
    if refused.is_empty() {
        Ok(Calls { setup, requests })
    } else {
        Err(format!("the API cannot send this scenario as written: {}", refused.join("; ")))
    }
}

/// One request as a call.
fn call_of(request: &Request, retries: u32, idempotency_key: Option<String>) -> Result<Call, String> {
    let default_scope = cusim::model::Scope::default();
    let scope = request.scope();
    if scope != default_scope {
        return Err(format!(
            "org/env {}/{:?}: one secret key speaks for one org and environment ({}/{:?})",
            scope.org_id, scope.env, default_scope.org_id, default_scope.env
        ));
    }
    match request {
        Request::Create {
            id,
            name,
            email,
            fingerprint,
            metadata,
            disable_default,
            create_in_stripe,
            create_default_products,
            default_group,
            expand,
            ..
        } => {
            let unsaid = [
                ("fingerprint", fingerprint.is_some()),
                ("metadata", metadata.is_some()),
                ("disable_default", *disable_default),
                ("create_in_stripe", *create_in_stripe),
                ("create_default_products", !create_default_products),
                ("default_group", default_group.is_some()),
                ("expand", !expand.is_empty()),
                ("retries", retries > 0),
                ("idempotency_key", idempotency_key.is_some()),
            ];
            if let Some((field, _)) = unsaid.iter().find(|(_, set)| *set) {
                return Err(format!("{field}: not sent by the API's create"));
            }
            Ok(Call::Create { customer_id: id.clone(), email: email.clone(), name: name.clone() })
        }
        Request::Check { customer_id, feature_id, required_balance, customer_data, auto_create, .. } => {
            if *required_balance != 1 {
                return Err("required_balance: the check sends none".into());
            }
            if retries > 0 || idempotency_key.is_some() {
                return Err("retries/idempotency_key: a check is sent once, without a key".into());
            }
            Ok(Call::Check {
                customer_id: customer_id.clone(),
                feature_id: feature_id.clone(),
                auto_create: *auto_create,
                customer_data: data_of(customer_data.as_ref())?,
            })
        }
        Request::Track { customer_id, feature_id, value, customer_data, auto_create, .. } => {
            if customer_data.is_some() {
                return Err("customer_data: a track sends none".into());
            }
            let value = u64::try_from(*value).map_err(|_| format!("value {value}: a track adds usage"))?;
            Ok(Call::Track {
                customer_id: customer_id.clone(),
                feature_id: feature_id.clone(),
                value,
                auto_create: *auto_create,
                idempotency_key,
                retries,
            })
        }
        Request::Get { customer_id, .. } => Ok(Call::Get { customer_id: customer_id.clone() }),
    }
}

fn data_of(data: Option<&cusim::model::CustomerData>) -> Result<Option<Data>, String> {
    match data {
        None => Ok(None),
        Some(data) if data.email.is_some() || data.fingerprint.is_some() || data.metadata.is_some() => {
            Err("customer_data: only a name is sent with a check".into())
        }
        Some(data) => Ok(data.name.clone().map(|name| Data { name })),
    }
}

/// `calls` with every id, email and idempotency key made unique to
/// `prefix` (letters and digits): ids become `PREFIX-ID`, emails
/// `PREFIX.LOCAL@DOMAIN` (the case of what was written kept, so that
/// emails that differ only by case still do).
pub fn fresh(calls: &Calls, prefix: &str) -> Calls {
    let id = |id: &str| format!("{prefix}-{id}");
    let email = |email: &str| format!("{prefix}.{email}");
    let one = |call: &Call| match call.clone() {
        Call::Create { customer_id, email: mail, name } => Call::Create {
            customer_id: customer_id.as_deref().map(id),
            email: mail.as_deref().map(email),
            name,
        },
        Call::Get { customer_id } => Call::Get { customer_id: id(&customer_id) },
        Call::Check { customer_id, feature_id, auto_create, customer_data } => {
            Call::Check { customer_id: id(&customer_id), feature_id, auto_create, customer_data }
        }
        Call::Track { customer_id, feature_id, value, auto_create, idempotency_key, retries } => {
            Call::Track {
                customer_id: id(&customer_id),
                feature_id,
                value,
                auto_create,
                idempotency_key: idempotency_key.as_deref().map(id),
                retries,
            }
        }
    };
    Calls { setup: calls.setup.iter().map(one).collect(), requests: calls.requests.iter().map(one).collect() }
}

/// The block of `cusim check` a scenario's calls are most like, for the
/// races a finding suspects: creates of one id (with checks: create and
/// check), id-less creates sharing an email, a seeded id-less customer
/// claimed, or usage.
pub fn block_of(calls: &Calls) -> Block {
    let creates_with_id =
        calls.requests.iter().any(|c| matches!(c, Call::Create { customer_id: Some(_), .. }));
    let idless = calls.requests.iter().any(|c| matches!(c, Call::Create { customer_id: None, .. }));
    let checks = calls.requests.iter().any(|c| matches!(c, Call::Check { .. }));
    let tracks = calls.requests.iter().any(|c| matches!(c, Call::Track { .. }));
    let seeded_idless = calls.setup.iter().any(|c| matches!(c, Call::Create { customer_id: None, .. }));
    if tracks {
        Block::Usage
    } else if seeded_idless && creates_with_id {
        Block::Claim
    } else if idless {
        Block::SharedEmail
    } else if checks && creates_with_id {
        Block::CreateCheck
    } else if checks {
        Block::Usage
    } else {
        Block::SameId
    }
}

/// The feature the checks and tracks name (the first), if any.
pub fn feature_named(calls: &Calls) -> Option<String> {
    calls.requests.iter().find_map(|c| match c {
        Call::Check { feature_id, .. } | Call::Track { feature_id, .. } => Some(feature_id.clone()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::builtin::BUILTINS;

    #[test]
    fn same_id_creates_become_fresh_creates_of_one_id() {
        let scenario = crate::corpus::builtin::find("r1-same-id-create")
            .expect("a built-in")
            .scenario()
            .expect("it parses");
        let calls = calls_of(&scenario).expect("sendable");
        assert_eq!(block_of(&calls), Block::SameId);
        let fresh = fresh(&calls, "d1");
        let ids: Vec<Option<&str>> = fresh.requests.iter().map(Call::customer_id).collect();
        assert!(
            ids.len() >= 2 && ids.iter().all(|id| *id == ids[0] && id.is_some_and(|i| i.starts_with("d1-"))),
            "{ids:?}"
        );
    }

    #[test]
    fn what_the_api_cannot_say_is_refused_by_request_and_field() {
        let mut scenario = crate::corpus::builtin::find("r1-same-id-create")
            .expect("a built-in")
            .scenario()
            .expect("it parses");
        if let Request::Create { fingerprint, .. } = &mut scenario.requests[1].request {
            *fingerprint = Some("fp".into());
        }
        let error = calls_of(&scenario).unwrap_err();
        assert!(error.contains("requests[1]: fingerprint"), "{error}");
    }

    #[test]
    fn emails_keep_their_case_and_ids_their_alphabet() {
        let calls = Calls {
            setup: vec![],
            requests: vec![
                Call::Create { customer_id: None, email: Some("A@x.io".into()), name: None },
                Call::Create { customer_id: None, email: Some("a@x.io".into()), name: None },
            ],
        };
        let made = fresh(&calls, "d7");
        let emails: Vec<String> = made
            .requests
            .iter()
            .filter_map(|c| match c {
                Call::Create { email, .. } => email.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(emails, ["d7.A@x.io", "d7.a@x.io"]);
        assert_eq!(block_of(&calls), Block::SharedEmail);
        // Every built-in that the API can send comes out valid.
        for builtin in BUILTINS {
            if let Ok(calls) = calls_of(&builtin.scenario().expect("it parses")) {
                for call in fresh(&calls, "d0").requests {
                    if let Some(id) = call.customer_id() {
                        assert!(cusim::model::validate_customer_id(id).is_ok(), "{}: {id}", builtin.name());
                    }
                }
            }
        }
    }
}
