//! Acceptance cases 1–15 of the refactor plan, each run against every
//! strategy on the in-memory backend, one request at a time. Cases 4 and 9
//! are sequential smoke checks here; their concurrent forms explore
//! interleavings with the stepper.

mod support;

use cusim::flow::{ApiCustomer, Expand, Request, Strategy};
use cusim::model::{Catalog, ErrorCode, ProductKind, ProductStatus};
use support::*;

#[test]
fn case_01_create_basic_with_id() {
    for_each_strategy(|strategy| {
        let mut sim = Sim::new(strategy, free_catalog());
        let customer = sim.customer(&create(
            Some("create-basic-id"),
            Some("Test Customer"),
            Some("create-basic-id@example.com"),
        ));
        assert_eq!(customer.customer.id.as_deref(), Some("create-basic-id"));
        assert_eq!(customer.customer.name.as_deref(), Some("Test Customer"));
        assert_eq!(customer.customer.email.as_deref(), Some("create-basic-id@example.com"));
        assert!(customer.customer.internal_id.starts_with("cus_"));
        assert_eq!(sim.rows_with_id("create-basic-id"), 1);
    });
}

#[test]
fn case_02_create_idempotent_with_same_id() {
    for_each_strategy(|strategy| {
        let mut sim = Sim::new(strategy, free_catalog());
        let request =
            create(Some("create-idempotent"), Some("Test Customer"), Some("create-idempotent@example.com"));
        let first = sim.customer(&request);
        let second = sim.customer(&request);
        assert_eq!(first.customer.id, second.customer.id);
        assert_eq!(first.customer.internal_id, second.customer.internal_id);
        assert_eq!(sim.rows_with_id("create-idempotent"), 1);
        assert_eq!(attached(&second), vec![("main".into(), "free".into())], "defaults attached once");
    });
}

#[test]
fn case_03_create_with_expand_params() {
    for_each_strategy(|strategy| {
        let catalog =
            Catalog::new(vec![product("pro_trial", "main", ProductKind::Trial, &[("words", 5000)])], false);
        let mut sim = Sim::new(strategy, catalog);
        let Request::Create { expand, .. } = &mut create(None, None, None) else { unreachable!() };
        assert!(expand.is_empty());
        let mut request = create(Some("create-expand"), Some("Expand"), Some("expand@example.com"));
        if let Request::Create { expand, fingerprint, .. } = &mut request {
            *expand = vec![Expand::Invoices, Expand::TrialsUsed, Expand::Entities];
            *fingerprint = Some("fp-1".into());
        }
        let full = sim.customer(&request);
        let Request::Create { expand, .. } = &request else { unreachable!() };
        let view = ApiCustomer::from_full(&full, expand);
        assert_eq!(view.invoices, Some(vec![]), "this model bills nothing");
        assert_eq!(view.entities, Some(vec![]));
        let trials = view.trials_used.expect("trials_used expanded");
        assert_eq!(trials.len(), 1);
        assert_eq!(trials[0].plan_id, "pro_trial");
        assert_eq!(trials[0].customer_id.as_deref(), Some("create-expand"));
        assert_eq!(trials[0].fingerprint.as_deref(), Some("fp-1"));

        let plain = ApiCustomer::from_full(&full, &[]);
        assert!(plain.invoices.is_none() && plain.trials_used.is_none() && plain.entities.is_none());
        let json = serde_json::to_value(&plain).unwrap();
        assert!(json.get("invoices").is_none(), "unexpanded fields are absent: {json}");
    });
}

#[test]
fn case_04_create_concurrent_same_id() {
    // Sequential smoke form: the second create finds the first's customer.
    for_each_strategy(|strategy| {
        let mut sim = Sim::new(strategy, free_catalog());
        let a = sim.customer(&create(Some("concurrent-same-id"), Some("A"), None));
        let b = sim.customer(&create(Some("concurrent-same-id"), Some("B"), None));
        assert_eq!(a.customer.internal_id, b.customer.internal_id);
        assert_eq!(b.customer.name.as_deref(), Some("A"), "an existing name is not overwritten");
        assert_eq!(sim.rows_with_id("concurrent-same-id"), 1);
        assert_eq!(attached(&b).len(), 1);
    });
}

#[test]
fn case_05_create_null_id_with_email() {
    for_each_strategy(|strategy| {
        let mut sim = Sim::new(strategy, free_catalog());
        let customer = sim.customer(&create(None, Some("No Id"), Some("null-id@example.com")));
        assert_eq!(customer.customer.id, None);
        assert_eq!(customer.customer.email.as_deref(), Some("null-id@example.com"));
        assert_eq!(attached(&customer), vec![("main".into(), "free".into())]);
    });
}

#[test]
fn case_06_create_null_id_no_email_error() {
    for_each_strategy(|strategy| {
        let mut sim = Sim::new(strategy, free_catalog());
        for request in [create(None, Some("Nobody"), None), create(None, None, Some(""))] {
            let error = sim.run(&request).expect_err("an id-less create needs an email");
            assert_eq!(error.code, ErrorCode::InvalidCustomer);
            assert_eq!(error.message, "Email is required when `id` is null");
            assert_eq!(error.http_status(), 400);
        }
        assert!(sim.world.committed_customers().is_empty());
    });
}

#[test]
fn case_07_create_null_id_idempotent() {
    for_each_strategy(|strategy| {
        let mut sim = Sim::new(strategy, free_catalog());
        let first = sim.customer(&create(None, None, Some("same@example.com")));
        let second = sim.customer(&create(None, None, Some("Same@Example.COM")));
        assert_eq!(
            first.customer.internal_id, second.customer.internal_id,
            "emails match case-insensitively"
        );
        assert_eq!(sim.world.committed_customers().len(), 1);
    });
}

#[test]
fn case_08_create_null_id_then_add_id() {
    for_each_strategy(|strategy| {
        let mut sim = Sim::new(strategy, free_catalog());
        let idless = sim.customer(&create(None, Some("Ann"), Some("ann@example.com")));
        let claimed = sim.customer(&create(Some("ann"), Some("Other Name"), Some("ann@example.com")));
        assert_eq!(claimed.customer.internal_id, idless.customer.internal_id, "the id-less row is claimed");
        assert_eq!(claimed.customer.id.as_deref(), Some("ann"));
        assert_eq!(claimed.customer.name.as_deref(), Some("Ann"), "the claim keeps the name");
        assert_eq!(attached(&claimed), attached(&idless), "the claim keeps the products and adds none");
        assert_eq!(sim.world.committed_customers().len(), 1);
    });
}

#[test]
fn case_09_create_concurrent_null_id_same_email() {
    // Sequential smoke form.
    for_each_strategy(|strategy| {
        let mut sim = Sim::new(strategy, free_catalog());
        let a = sim.customer(&create(None, Some("A"), Some("race@example.com")));
        let b = sim.customer(&create(None, Some("B"), Some("race@example.com")));
        assert_eq!(a.customer.internal_id, b.customer.internal_id);
        assert_eq!(sim.world.committed_customers().len(), 1);
    });
}

#[test]
fn case_10_defaults_single_free_product() {
    for_each_strategy(|strategy| {
        let mut sim = Sim::new(strategy, free_catalog());
        let customer = sim.customer(&create(Some("single-free"), None, None));
        assert_eq!(attached(&customer), vec![("main".into(), "free".into())]);
        assert_eq!(customer.products[0].status, ProductStatus::Active);
        assert_eq!(customer.balances["words"].granted, 1000);
        assert_eq!(customer.balances["words"].usage, 0);
        assert_eq!(customer.customer.processor, None, "a free default needs no Stripe customer");
        assert!(sim.world.stripe_customers().is_empty());
    });
}

#[test]
fn case_11_defaults_multiple_groups() {
    for_each_strategy(|strategy| {
        let catalog = Catalog::new(
            vec![
                product("free_a", "group_a", ProductKind::Free, &[("words", 100)]),
                product("free_b", "group_b", ProductKind::Free, &[("words", 50), ("seats", 3)]),
            ],
            false,
        );
        let mut sim = Sim::new(strategy, catalog);
        let customer = sim.customer(&create(Some("multi-group"), None, None));
        assert_eq!(
            attached(&customer),
            vec![("group_a".into(), "free_a".into()), ("group_b".into(), "free_b".into())]
        );
        assert_eq!(customer.balances["words"].granted, 150, "granted sums over products");
        assert_eq!(customer.balances["seats"].granted, 3);

        // `default_group` limits attachment to one group.
        let mut request = create(Some("one-group"), None, None);
        if let Request::Create { default_group, .. } = &mut request {
            *default_group = Some("group_b".into());
        }
        assert_eq!(attached(&sim.customer(&request)), vec![("group_b".into(), "free_b".into())]);

        // `disable_default` attaches none.
        let mut request = create(Some("no-defaults"), None, None);
        if let Request::Create { disable_default, .. } = &mut request {
            *disable_default = true;
        }
        assert!(sim.customer(&request).products.is_empty());
    });
}

#[test]
fn case_12_defaults_same_group_priority() {
    for_each_strategy(|strategy| {
        let all = vec![
            product("a_free", "main", ProductKind::Free, &[]),
            product("b_paid", "main", ProductKind::Paid, &[]),
            product("c_trial", "main", ProductKind::Trial, &[]),
        ];
        let pick = |products: Vec<_>, force_paid| {
            let mut sim = Sim::new(strategy, Catalog::new(products, force_paid));
            attached(&sim.customer(&create(Some("priority"), None, None)))
        };
        let main = |id: &str| vec![("main".to_string(), id.to_string())];
        assert_eq!(pick(all.clone(), false), main("c_trial"), "trial beats paid and free");
        assert_eq!(pick(all.clone(), true), main("c_trial"));
        assert_eq!(pick(all[..2].to_vec(), true), main("b_paid"), "paid beats free when paid counts");
        assert_eq!(
            pick(all[..2].to_vec(), false),
            main("a_free"),
            "paid counts only with force_paid_default"
        );
        // Ties break by product id, whatever the catalog order.
        let ties = vec![
            product("z_free", "main", ProductKind::Free, &[]),
            product("m_free", "main", ProductKind::Free, &[]),
        ];
        assert_eq!(pick(ties, false), main("m_free"));
    });
}

#[test]
fn case_13_defaults_trial_product() {
    for_each_strategy(|strategy| {
        let catalog =
            Catalog::new(vec![product("pro_trial", "main", ProductKind::Trial, &[("words", 5000)])], false);
        let mut sim = Sim::new(strategy, catalog);
        let customer = sim.customer(&create(Some("trial"), None, Some("trial@example.com")));
        assert_eq!(attached(&customer), vec![("main".into(), "pro_trial".into())]);
        assert_eq!(customer.products[0].status, ProductStatus::Trialing);
        assert_eq!(customer.balances["words"].granted, 5000);
        let stripe = sim.world.stripe_customers();
        assert_eq!(stripe.len(), 1, "a trial needs a Stripe customer");
        assert_eq!(customer.customer.processor.as_deref(), Some(stripe[0].id.as_str()));
    });
}

#[test]
fn case_14_defaults_paid_product_legacy() {
    for_each_strategy(|strategy| {
        let catalog =
            Catalog::new(vec![product("pro", "main", ProductKind::Paid, &[("words", 10_000)])], true);
        let mut sim = Sim::new(strategy, catalog);
        let customer = sim.customer(&create(Some("paid"), None, None));
        assert_eq!(attached(&customer), vec![("main".into(), "pro".into())]);
        assert_eq!(customer.products[0].status, ProductStatus::Active);
        assert_eq!(customer.balances["words"].granted, 10_000);

        // Without force_paid_default a paid product is no default.
        let catalog = Catalog::new(vec![product("pro", "main", ProductKind::Paid, &[])], false);
        let mut sim = Sim::new(strategy, catalog);
        assert!(sim.customer(&create(Some("paid"), None, None)).products.is_empty());
    });
}

#[test]
fn case_15_defaults_paid_requires_stripe_customer() {
    for_each_strategy(|strategy| {
        let catalog = Catalog::new(
            vec![
                product("pro", "main", ProductKind::Paid, &[("words", 10_000)]),
                product("addon", "extras", ProductKind::Paid, &[("seats", 5)]),
            ],
            true,
        );
        let mut sim = Sim::new(strategy, catalog);
        let customer = sim.customer(&create(Some("paid-stripe"), Some("Payer"), Some("payer@example.com")));
        let stripe = sim.world.stripe_customers().to_vec();
        assert_eq!(stripe.len(), 1, "one Stripe customer for both paid groups: {stripe:?}");
        assert_eq!(stripe[0].params.internal_id, customer.customer.internal_id);
        assert_eq!(customer.customer.processor.as_deref(), Some(stripe[0].id.as_str()), "processor names it");
        assert_eq!(attached(&customer).len(), 2);
        // Asking again neither makes another Stripe customer nor changes processor.
        let again = sim.customer(&create(Some("paid-stripe"), None, None));
        assert_eq!(again.customer.processor, customer.customer.processor);
        assert_eq!(sim.world.stripe_customers().len(), 1);
        let _ = Strategy::ALL;
    });
}
