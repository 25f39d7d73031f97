//! The model's locking against Postgres's, statement by statement:
//! scripts of statements from three sessions, interleaved as the model
//! allows (who waits for whom, what a statement that waited does when it
//! runs on, deadlocks and their victims), run on the model and on
//! Postgres in lockstep. Three pinned scripts are the divergences the
//! model once had (an `UPDATE` that changed only the first matching row,
//! one that waited on a unique index without holding the row's old keys,
//! a foreign-key check made before the row was in its index); the
//! generated ones look for the next.

use crate::support;

use cusim::backend::{ClaimTarget, Constraints, NewCustomer, NewCustomerProduct, OnConflict, Op, RowLock};
use cusim::flow::Strategy;
use cusim::model::{Catalog, CustomerRow, DefaultScope, Product, ProductKind, ProductStatus, Scope};
use cusim_sim::drive::postgres::{script_on_postgres, ScriptModel, ScriptReport, ScriptStep};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use support::database_url;

const SESSIONS: usize = 3;
/// Generated scripts per strategy.
const SCRIPTS: u32 = 150;

fn catalog() -> Catalog {
    let product = Product {
        id: "free".into(),
        group: "main".into(),
        is_default: true,
        kind: ProductKind::Free,
        features: Default::default(),
    };
    Catalog::new(vec![product], false)
}

fn insert(id: Option<&str>, email: Option<&str>, on_conflict: OnConflict) -> Op {
    let customer = NewCustomer {
        scope: Scope::default(),
        id: id.map(str::to_owned),
        name: None,
        email: email.map(str::to_owned),
        fingerprint: None,
        metadata: Default::default(),
        processor: None,
        default_scope: DefaultScope::All,
        stripe_wanted: false,
    };
    Op::Insert { customer, on_conflict }
}

fn claim_by_email(email: &str, new_id: &str) -> Op {
    let target = ClaimTarget::IdlessEmail { email: email.into() };
    Op::Claim { scope: Scope::default(), target, new_id: new_id.into() }
}

fn lookup(id: &str, lock: RowLock) -> Op {
    Op::LookupId { scope: Scope::default(), id: id.into(), lock }
}

fn attach(internal_id: &str) -> Op {
    let product = NewCustomerProduct {
        internal_customer_id: internal_id.into(),
        product_id: "free".into(),
        group: "main".into(),
        status: ProductStatus::Active,
    };
    Op::AttachDefault { scope: Scope::default(), product, on_conflict: OnConflict::DoNothing }
}

fn advisory(key: &str) -> Op {
    Op::AdvisoryLock { scope: Scope::default(), key: key.into() }
}

fn send(request: usize, op: Op) -> ScriptStep {
    ScriptStep::Send { request, op }
}

fn resume(request: usize) -> ScriptStep {
    ScriptStep::Resume { request }
}

fn run(strategy: Strategy, steps: &[ScriptStep], schema: &str) -> ScriptReport {
    script_on_postgres(&database_url(), schema, strategy, &catalog(), steps)
        .unwrap_or_else(|e| panic!("the script could not run: {e}"))
}

fn assert_agrees(report: &ScriptReport, strategy: Strategy, steps: &[ScriptStep]) {
    assert!(
        report.agrees(),
        "{strategy}: Postgres disagrees with the model: {:?} ({:?}; breaches {:?}, agree: {})\nscript: {}",
        report.divergence,
        report.state_difference,
        report.breaches,
        report.breaches_agree,
        serde_json::to_string(steps).unwrap()
    );
}

/// The internal id the model gives the first customer a script inserts.
fn first_internal_id(strategy: Strategy, steps: &[ScriptStep]) -> String {
    let mut model = ScriptModel::new(strategy, &catalog());
    for step in steps {
        model.take(step, None).unwrap();
    }
    model.world.committed_customers()[0].internal_id.clone()
}

#[test]
fn an_update_changes_every_matching_row_on_postgres_as_in_the_model() {
    // Legacy has no id-less email index: two id-less rows share an email,
    // and an update of both to one id fails on the id index.
    let strategy = Strategy::Legacy;
    assert!(!strategy.constraints().idless_email_unique);
    let steps = vec![
        send(0, insert(None, Some("e@x.com"), OnConflict::Error)),
        send(1, insert(None, Some("E@x.com"), OnConflict::Error)),
        send(2, claim_by_email("e@x.com", "a")),
        send(2, lookup("a", RowLock::None)),
    ];
    let report = run(strategy, &steps, "script_update_all");
    assert_agrees(&report, strategy, &steps);
    assert_eq!(report.compared, steps.len());
}

#[test]
fn an_update_waiting_on_a_unique_index_holds_the_old_keys_on_postgres_as_in_the_model() {
    let strategy = Strategy::Safe;
    let steps = vec![
        send(2, insert(None, Some("e@x.com"), OnConflict::Error)),
        send(0, Op::Begin),
        send(0, insert(Some("a"), None, OnConflict::Error)),
        send(1, Op::Begin),
        send(1, claim_by_email("e@x.com", "a")),
        // The old key (id-less, e@x.com): Postgres makes this insert wait
        // for r1, whose update may yet free it or keep it.
        send(2, insert(None, Some("E@X.com"), OnConflict::Error)),
        send(0, Op::Rollback),
        resume(1),
        send(1, Op::Commit),
        resume(2),
    ];
    let report = run(strategy, &steps, "script_update_waits");
    assert_agrees(&report, strategy, &steps);
    assert_eq!((report.compared, report.waits), (steps.len(), 2));
}

#[test]
fn the_foreign_key_check_runs_after_the_insert_on_postgres_as_in_the_model() {
    let strategy = Strategy::Safe;
    assert!(strategy.constraints().product_group_unique);
    let seed = vec![send(2, insert(Some("c"), None, OnConflict::Error))];
    let customer = first_internal_id(strategy, &seed);
    let mut steps = seed;
    steps.extend([
        send(0, Op::Begin),
        send(0, lookup("c", RowLock::ForUpdate)),
        // r1's row is in the (customer, group) index; its foreign-key
        // check waits for r0's FOR UPDATE.
        send(1, attach(&customer)),
        // r2 meets r1's row in the index: it waits for r1, not for r0.
        send(2, attach(&customer)),
        send(0, Op::Commit),
        resume(1),
        resume(2),
    ]);
    let report = run(strategy, &steps, "script_fk_after_insert");
    assert_agrees(&report, strategy, &steps);
    assert_eq!((report.compared, report.waits), (steps.len(), 2));
}

#[test]
fn a_statement_on_another_tenants_customer_is_seen_on_postgres_as_in_the_model() {
    let strategy = Strategy::Safe;
    let elsewhere = Scope::new("org_2", cusim::model::Env::Sandbox);
    let mut seed = insert(Some("c"), None, OnConflict::Error);
    if let Op::Insert { customer, .. } = &mut seed {
        customer.scope = elsewhere.clone();
    }
    let seed = vec![send(2, seed)];
    let customer = first_internal_id(strategy, &seed);
    let mut steps = seed;
    steps.extend([
        send(
            0,
            Op::Claim {
                scope: Scope::default(),
                target: ClaimTarget::Row { internal_id: customer.clone() },
                new_id: "mine".into(),
            },
        ),
        send(1, attach(&customer)),
    ]);
    let report = run(strategy, &steps, "script_tenants");
    assert_agrees(&report, strategy, &steps);
    let breached: Vec<(usize, Scope)> =
        report.breaches.iter().map(|b| (b.request, b.touched_scope.clone())).collect();
    assert_eq!(
        breached,
        vec![(0, elsewhere.clone()), (1, elsewhere)],
        "both statements are seen on Postgres"
    );
}

#[test]
fn any_member_of_a_deadlock_may_be_its_victim_on_postgres_as_in_the_model() {
    for victim in [0, 1] {
        let steps = vec![
            send(0, Op::Begin),
            send(1, Op::Begin),
            send(0, advisory("a")),
            send(1, advisory("b")),
            send(0, advisory("b")),
            send(1, advisory("a")),
            resume(victim),
            resume(1 - victim),
            send(1 - victim, Op::Commit),
        ];
        let report = run(Strategy::Safe, &steps, "script_victim");
        assert_agrees(&report, Strategy::Safe, &steps);
        assert_eq!(
            (report.compared, report.waits, report.deadlocks),
            (steps.len(), 2, 1),
            "victim r{victim}"
        );
    }
}

/// A statement a session may send now, from `choice`.
fn statement(choice: u32, in_txn: bool, customers: &[CustomerRow]) -> Op {
    let ids = ["a", "b"];
    let id = ids[(choice / 16) as usize % 2];
    let internal =
        customers.get((choice / 32) as usize % customers.len().max(1)).map(|c| c.internal_id.clone());
    match choice % 16 {
        0 | 1 if !in_txn => Op::Begin,
        0 => Op::Commit,
        1 => Op::Rollback,
        2 => insert(Some(id), None, OnConflict::Error),
        3 => insert(Some(id), Some("e@x.com"), OnConflict::ReturnExisting),
        4 => insert(None, Some("e@x.com"), OnConflict::Error),
        5 => insert(None, Some("E@X.com"), OnConflict::DoNothing),
        6 => claim_by_email("e@x.com", id),
        7 => lookup(id, RowLock::ForUpdate),
        8 => lookup(id, RowLock::ForShare),
        9 => lookup(id, RowLock::None),
        10 | 11 => match internal {
            Some(internal) => attach(&internal),
            None => insert(Some(id), None, OnConflict::DoNothing),
        },
        12 => advisory(id),
        13 if in_txn => Op::Commit,
        _ => Op::Begin,
    }
}

/// A script from `choices`: each names a session and what it does, taken
/// only where the model allows it (a waiting session can only move on, a
/// session can only begin outside a transaction).
fn script(strategy: Strategy, choices: &[u32]) -> Vec<ScriptStep> {
    let mut model = ScriptModel::new(strategy, &catalog());
    let mut steps = Vec::new();
    for &choice in choices {
        let request = choice as usize % SESSIONS;
        let choice = choice / SESSIONS as u32;
        let step = if model.world.is_waiting(request) {
            resume(request)
        } else {
            let in_txn = model.world.open_txn(request).is_some();
            let op = statement(choice, in_txn, &model.world.committed_customers());
            if matches!(op, Op::Begin) && in_txn {
                continue;
            }
            send(request, op)
        };
        if model.may_take(&step) {
            model.take(&step, None).unwrap();
            steps.push(step);
        }
    }
    steps
}

#[test]
fn generated_scripts_agree_on_the_model_and_on_postgres() {
    let (mut scripts, mut waits, mut deadlocks) = (0u32, 0usize, 0usize);
    for strategy in [Strategy::Legacy, Strategy::Safe] {
        let constraints: Constraints = strategy.constraints();
        let config = Config { cases: SCRIPTS, failure_persistence: None, ..Config::default() };
        let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
        let schema = format!("script_generated_{strategy}");
        let tally = std::cell::RefCell::new((0u32, 0usize, 0usize));
        let result = runner.run(&proptest::collection::vec(any::<u32>(), 10..40), |choices| {
            let steps = script(strategy, &choices);
            let report = run(strategy, &steps, &schema);
            prop_assert!(
                report.agrees(),
                "{strategy} ({constraints:?}): {:?} ({:?})\nscript: {}",
                report.divergence,
                report.state_difference,
                serde_json::to_string(&steps).unwrap()
            );
            let mut tally = tally.borrow_mut();
            tally.0 += 1;
            tally.1 += report.waits;
            tally.2 += report.deadlocks;
            Ok(())
        });
        if let Err(failure) = result {
            panic!("{strategy}: {failure}");
        }
        let (n, w, d) = tally.into_inner();
        eprintln!("{strategy}: {n} generated scripts agree ({w} lock waits held, {d} deadlocks)");
        scripts += n;
        waits += w;
        deadlocks += d;
    }
    assert_eq!(scripts, 2 * SCRIPTS);
    assert!(waits > 0, "some generated statements wait for a lock");
    eprintln!("scripts: {scripts} agree; {waits} lock waits, {deadlocks} deadlocks");
}
