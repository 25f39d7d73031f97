//! Acceptance cases 1–15 on a real Postgres server: each case's requests,
//! one at a time, under every strategy, give the same responses and settle
//! reads and leave the same state as on the in-memory model (whose own tests check the
//! cases' assertions). Ids are compared by creation order.

use crate::support;

use cusim::flow::{Request, Strategy};
use cusim::model::{Catalog, CustomerData, Product, ProductKind};
use cusim_pg::schema;
use cusim_sim::input::scenario::Scenario;
use support::*;

fn same_on_postgres(name: &str, catalog: Catalog, requests: Vec<Request>) {
    let scenario = Scenario {
        name: name.to_owned(),
        description: None,
        force_paid_default: catalog.force_paid_default,
        products: catalog.products,
        customers: Vec::new(),
        requests: requests.into_iter().map(Into::into).collect(),
        faults: Vec::new(),
        settle_faults: Vec::new(),
        instances: Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for strategy in Strategy::ALL {
        let expected = sequential_on_mem(&scenario, strategy);
        let actual = runtime.block_on(async {
            let schema_name = format!("seq_{name}_{strategy}");
            let database =
                schema::create(&database_url(), &schema_name, strategy, &scenario.catalog()).await.unwrap();
            let run = sequential_on_postgres(&database, &scenario, strategy).await;
            schema::drop(&database).await;
            run
        });
        assert_eq!(actual.0, expected.0, "{name} under {strategy}: responses differ from the model's");
        assert_eq!(actual.1, expected.1, "{name} under {strategy}: settle reads differ from the model's");
        assert_eq!(actual.2, expected.2, "{name} under {strategy}: final state differs from the model's");
        assert_eq!(actual.0.len(), scenario.requests.len());
    }
}

fn product(id: &str, group: &str, kind: ProductKind, words: i64) -> Product {
    Product {
        id: id.into(),
        group: group.into(),
        is_default: true,
        kind,
        features: [("words".to_owned(), words)].into_iter().collect(),
    }
}

fn free() -> Catalog {
    Catalog::new(vec![product("free", "main", ProductKind::Free, 1000)], false)
}

fn create(id: Option<&str>, name: Option<&str>, email: Option<&str>) -> Request {
    Request::create(
        id,
        CustomerData { name: name.map(Into::into), email: email.map(Into::into), ..Default::default() },
    )
}

#[test]
fn case_01_create_basic_with_id() {
    same_on_postgres("c01", free(), vec![create(Some("basic"), Some("Test"), Some("basic@example.com"))]);
}

#[test]
fn case_02_create_idempotent_with_same_id() {
    let request = create(Some("idem"), Some("Test"), Some("idem@example.com"));
    same_on_postgres("c02", free(), vec![request.clone(), request]);
}

#[test]
fn case_03_create_with_expand_params() {
    let catalog = Catalog::new(vec![product("pro_trial", "main", ProductKind::Trial, 5000)], false);
    same_on_postgres("c03", catalog, vec![create(Some("expand"), Some("E"), Some("expand@example.com"))]);
}

#[test]
fn case_04_create_concurrent_same_id() {
    same_on_postgres(
        "c04",
        free(),
        vec![create(Some("same"), Some("A"), None), create(Some("same"), Some("B"), None)],
    );
}

#[test]
fn case_05_create_null_id_with_email() {
    same_on_postgres("c05", free(), vec![create(None, Some("No Id"), Some("null@example.com"))]);
}

#[test]
fn case_06_create_null_id_no_email_error() {
    same_on_postgres("c06", free(), vec![create(None, Some("Nobody"), None), create(None, None, Some(""))]);
}

#[test]
fn case_07_create_null_id_idempotent() {
    same_on_postgres(
        "c07",
        free(),
        vec![create(None, None, Some("same@example.com")), create(None, None, Some("Same@Example.COM"))],
    );
}

#[test]
fn case_08_create_null_id_then_add_id() {
    same_on_postgres(
        "c08",
        free(),
        vec![
            create(None, Some("Ann"), Some("ann@example.com")),
            create(Some("ann"), Some("Other"), Some("ann@example.com")),
        ],
    );
}

#[test]
fn case_09_create_concurrent_null_id_same_email() {
    same_on_postgres(
        "c09",
        free(),
        vec![
            create(None, Some("A"), Some("race@example.com")),
            create(None, Some("B"), Some("race@example.com")),
        ],
    );
}

#[test]
fn case_10_defaults_single_free_product() {
    same_on_postgres(
        "c10",
        free(),
        vec![
            create(Some("single"), None, None),
            Request::track("single", "words", 3),
            Request::check("single", "words"),
        ],
    );
}

#[test]
fn case_11_defaults_multiple_groups() {
    let catalog = Catalog::new(
        vec![product("free_a", "a", ProductKind::Free, 100), product("free_b", "b", ProductKind::Free, 50)],
        false,
    );
    let mut one_group = create(Some("one"), None, None);
    if let Request::Create { default_group, .. } = &mut one_group {
        *default_group = Some("b".into());
    }
    let mut none = create(Some("none"), None, None);
    if let Request::Create { disable_default, .. } = &mut none {
        *disable_default = true;
    }
    same_on_postgres("c11", catalog, vec![create(Some("multi"), None, None), one_group, none]);
}

#[test]
fn case_12_defaults_same_group_priority() {
    let all = vec![
        product("a_free", "main", ProductKind::Free, 1),
        product("b_paid", "main", ProductKind::Paid, 2),
        product("c_trial", "main", ProductKind::Trial, 3),
    ];
    same_on_postgres("c12a", Catalog::new(all.clone(), false), vec![create(Some("p"), None, None)]);
    same_on_postgres("c12b", Catalog::new(all[..2].to_vec(), true), vec![create(Some("p"), None, None)]);
    same_on_postgres("c12c", Catalog::new(all[..2].to_vec(), false), vec![create(Some("p"), None, None)]);
}

#[test]
fn case_13_defaults_trial_product() {
    let catalog = Catalog::new(vec![product("pro_trial", "main", ProductKind::Trial, 5000)], false);
    same_on_postgres(
        "c13",
        catalog,
        vec![create(Some("trial"), None, Some("trial@example.com")), Request::get("trial")],
    );
}

#[test]
fn case_14_defaults_paid_product_legacy() {
    let catalog = Catalog::new(vec![product("pro", "main", ProductKind::Paid, 10_000)], true);
    same_on_postgres("c14", catalog, vec![create(Some("paid"), None, None)]);
}

#[test]
fn case_15_defaults_paid_requires_stripe_customer() {
    let catalog = Catalog::new(
        vec![
            product("pro", "main", ProductKind::Paid, 10_000),
            product("addon", "extras", ProductKind::Paid, 5),
        ],
        true,
    );
    same_on_postgres(
        "c15",
        catalog,
        vec![
            create(Some("paid"), Some("Payer"), Some("payer@example.com")),
            create(Some("paid"), None, None),
        ],
    );
}

#[test]
fn bad_database_input_is_reported_clearly() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let catalog = free();
    let bad_url = runtime.block_on(schema::create("not a url", "x", Strategy::Safe, &catalog)).unwrap_err();
    assert!(bad_url.to_string().contains("is not valid"), "{bad_url}");
    let unreachable = runtime
        .block_on(schema::create("postgres://postgres@127.0.0.1:1/postgres", "x", Strategy::Safe, &catalog))
        .unwrap_err();
    assert!(
        unreachable.to_string().contains("cannot connect to the database at 127.0.0.1:1"),
        "{unreachable}"
    );
    let bad_schema = runtime
        .block_on(schema::create(&database_url(), "Robert'); DROP", Strategy::Safe, &catalog))
        .unwrap_err();
    assert!(bad_schema.to_string().contains("lowercase letters"), "{bad_schema}");
    let mut url = database_url();
    url = url.replacen("postgres://", "postgres://nobody_here:secret@", 1).replacen("@postgres@", "@", 1);
    if let Err(error) = runtime.block_on(schema::create(&url, "x", Strategy::Safe, &catalog)) {
        assert!(!error.to_string().contains("secret"), "the password is not shown: {error}");
    }
}
