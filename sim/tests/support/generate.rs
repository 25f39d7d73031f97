//! proptest generators: scenarios whose ids, emails (in case variants) and
//! orgs collide often, with optional faults, and schedules to run them by.

use cusim::backend::Point;
use cusim::flow::Request;
use cusim::model::{CustomerData, Product, ProductKind};
use cusim_sim::input::scenario::{
    FaultKind, FaultSpec, Instance, Scenario, ScenarioRequest, SeedCustomer, SettleFaultSpec,
};
use cusim_sim::input::schedule::{Schedule, Token};
use proptest::prelude::*;
use proptest::sample::select;

pub const IDS: [&str; 2] = ["cus_a", "cus_b"];
pub const EMAILS: [&str; 3] = ["ann@example.com", "ANN@Example.com", "bob@example.com"];

fn kind() -> impl Strategy<Value = ProductKind> {
    select(vec![ProductKind::Free, ProductKind::Free, ProductKind::Paid, ProductKind::Trial])
}

/// 1–3 groups of default products (free, paid, trial), a few not default.
pub fn products() -> impl Strategy<Value = Vec<Product>> {
    prop::collection::vec((0..3usize, kind(), 0i64..=1000, prop::bool::weighted(0.9)), 1..=4).prop_map(
        |specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (group, kind, words, is_default))| Product {
                    id: format!("p{i}"),
                    group: format!("g{group}"),
                    is_default,
                    kind,
                    features: [("words".to_owned(), words)].into_iter().collect(),
                })
                .collect()
        },
    )
}

fn org() -> impl Strategy<Value = Option<String>> {
    prop_oneof![5 => Just(None), 1 => Just(Some("org_2".to_owned()))]
}

fn name() -> impl Strategy<Value = Option<String>> {
    prop_oneof![Just(None), Just(Some("Ann".to_owned()))]
}

/// Mostly one address, in two spellings: collisions are the point.
fn some_email() -> impl Strategy<Value = String> {
    prop_oneof![4 => Just(EMAILS[0]), 4 => Just(EMAILS[1]), 1 => Just(EMAILS[2])].prop_map(str::to_owned)
}

fn email() -> impl Strategy<Value = Option<String>> {
    prop_oneof![1 => Just(None), 6 => some_email().prop_map(Some)]
}

fn customer_data() -> impl Strategy<Value = Option<CustomerData>> {
    prop_oneof![
        2 => Just(None),
        1 => (name(), email()).prop_map(|(name, email)| Some(CustomerData { name, email, ..CustomerData::default() })),
    ]
}

pub fn request() -> impl Strategy<Value = Request> {
    let id = select(IDS.to_vec()).prop_map(str::to_owned);
    let create = (prop::option::weighted(0.8, id.clone()), name(), email(), prop::bool::weighted(0.3), org())
        .prop_map(|(id, name, email, create_in_stripe, org)| {
            let email = if id.is_none() { email.or_else(|| Some(EMAILS[0].to_owned())) } else { email };
            let mut request = Request::create(
                id.as_deref(),
                CustomerData { name, email, create_in_stripe, ..CustomerData::default() },
            );
            if let Request::Create { org: o, .. } = &mut request {
                *o = org;
            }
            request
        });
    let check =
        (id.clone(), customer_data(), org()).prop_map(|(customer_id, customer_data, org)| Request::Check {
            customer_id,
            feature_id: "words".into(),
            required_balance: 1,
            customer_data,
            auto_create: true,
            org,
            env: None,
        });
    let track =
        (id, 1i64..=5, customer_data(), org()).prop_map(|(customer_id, value, customer_data, org)| {
            Request::Track {
                customer_id,
                feature_id: "words".into(),
                value,
                customer_data,
                auto_create: true,
                org,
                env: None,
            }
        });
    prop_oneof![3 => create, 2 => check, 2 => track]
}

fn seed_customer() -> impl Strategy<Value = SeedCustomer> {
    (prop::option::weighted(0.3, select(IDS.to_vec())), name(), some_email()).prop_map(|(id, name, email)| {
        SeedCustomer {
            id: id.map(str::to_owned),
            name,
            email: Some(email),
            fingerprint: None,
            metadata: None,
            disable_default: false,
            create_in_stripe: false,
            org: None,
            env: None,
        }
    })
}

/// At most one fault, at any point of any request, of a kind that can happen there.
fn faults(requests: usize) -> impl Strategy<Value = Vec<FaultSpec>> {
    prop::option::weighted(0.25, (0..requests, 0..Point::ALL.len(), 0..FaultKind::ALL.len())).prop_map(
        |fault| {
            fault
                .map(|(request, point, kind)| {
                    let at = Point::ALL[point];
                    let kind =
                        Some(FaultKind::ALL[kind]).filter(|k| k.applies_to(at)).unwrap_or(FaultKind::Crash);
                    FaultSpec { request, at, kind, occurrence: 1 }
                })
                .into_iter()
                .collect()
        },
    )
}

/// Now and then a fault at one of the first two settle reads (never a
/// crash: a settle read cannot crash).
fn settle_faults() -> impl Strategy<Value = Vec<SettleFaultSpec>> {
    prop::option::weighted(0.15, (0..2usize, 0..Point::ALL.len(), 0..FaultKind::ALL.len())).prop_map(
        |fault| {
            fault
                .and_then(|(settle, point, kind)| {
                    let (at, kind) = (Point::ALL[point], FaultKind::ALL[kind]);
                    (kind != FaultKind::Crash && kind.applies_to(at)).then_some(SettleFaultSpec {
                        settle,
                        at,
                        kind,
                        occurrence: 1,
                    })
                })
                .into_iter()
                .collect()
        },
    )
}

/// A request as a client sends it: now and then with a retry; a track
/// now and then with one of two idempotency keys (two tracks may share one).
fn sent() -> impl Strategy<Value = ScenarioRequest> {
    (request(), prop::bool::weighted(0.2), prop::option::weighted(0.3, 0..2usize)).prop_map(
        |(request, retry, key)| {
            let keyed = matches!(request, Request::Track { .. });
            ScenarioRequest {
                request,
                retries: u32::from(retry),
                idempotency_key: key.filter(|_| keyed).map(|k| format!("key-{k}")),
                instance: None,
            }
        },
    )
}

pub fn scenario() -> impl Strategy<Value = Scenario> {
    (
        products(),
        any::<bool>(),
        prop::collection::vec(seed_customer(), 0..=1),
        prop::collection::vec(sent(), 1..=4),
        prop::option::weighted(0.2, -2_000i64..=2_000),
    )
        .prop_flat_map(|(products, force_paid_default, customers, requests, skew)| {
            let n = requests.len();
            (faults(n), settle_faults()).prop_map(move |(faults, settle_faults)| Scenario {
                name: "generated".into(),
                description: None,
                force_paid_default,
                products: products.clone(),
                customers: customers.clone(),
                requests: requests
                    .iter()
                    .enumerate()
                    .map(|(i, r)| ScenarioRequest { instance: skew.map(|_| i % 2), ..r.clone() })
                    .collect(),
                faults,
                settle_faults,
                instances: skew
                    .map_or_else(Vec::new, |skew_ms| vec![Instance { skew_ms: 0 }, Instance { skew_ms }]),
            })
        })
}

/// Schedule tokens for up to 4 requests (replayed leniently), with a clock move now and then.
pub fn schedule() -> impl Strategy<Value = Schedule> {
    let token = prop_oneof![12 => (0..4usize).prop_map(Token::run), 1 => Just(Token::Tick { ms: 5_000 })];
    prop::collection::vec(token, 0..32).prop_map(Schedule)
}

pub fn case() -> impl Strategy<Value = (Scenario, Schedule)> {
    (scenario(), schedule())
}
