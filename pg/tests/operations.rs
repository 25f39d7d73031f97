//! Operations given as data to the model and to Postgres side by side:
//! the same answers, and the same waits (a wait on Postgres is seen in
//! `pg_locks`, not guessed from time). Those no flow uses yet, and the
//! edges of a window no schedule reaches exactly.

use crate::support;

use std::rc::Rc;
use std::time::Duration;

use cusim::backend::mem::{Blocked, World, APPLIED_KEY_WINDOW_MS};
use cusim::backend::{
    Backend, DeductOutcome, DeductTarget, InsertOutcome, NewCustomer, OnConflict, Op, Outcome,
};
use cusim::flow::Strategy;
use cusim::model::{Catalog, DefaultScope, Scope};
use cusim_pg::{schema, services};
use sqlx::{Connection, PgConnection};
use support::{connect, database_url};

fn advisory(key: &str) -> Op {
    Op::AdvisoryLock { scope: Scope::default(), key: key.into() }
}

/// Whether backend `pid` waits for an advisory lock it has not been granted.
async fn waits_for_advisory_lock(monitor: &mut PgConnection, pid: i32) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND locktype = 'advisory' AND NOT granted)",
    )
    .bind(pid)
    .fetch_one(monitor)
    .await
    .expect("pg_locks reads")
}

#[test]
fn an_advisory_lock_waits_on_postgres_as_in_the_model() {
    // The model: r0 holds the lock in a transaction; r1 waits for it.
    let mut world = World::new(Catalog::default(), Strategy::Safe.constraints(), 0);
    let model: Vec<Outcome> = [(0, Op::Begin), (0, advisory("cus_1"))]
        .into_iter()
        .map(|(r, op)| world.apply(r, &op, None).expect("nothing holds it yet"))
        .collect();
    let holder = world.open_txn(0).unwrap();
    assert_eq!(world.apply(1, &advisory("cus_1"), None), Err(Blocked(holder)));
    let committed = world.apply(0, &Op::Commit, None).unwrap();
    let after = world.apply(1, &advisory("cus_1"), None).expect("released at commit");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let database = schema::create(&database_url(), "ops_advisory", Strategy::Safe, &Catalog::default())
            .await
            .unwrap();
        let shared = services(0, Strategy::Safe.constraints());
        let r0 = connect(&database, &shared, 0).await;
        let r1 = Rc::new(connect(&database, &shared, 1).await);
        let mut monitor = PgConnection::connect_with(&database.options).await.unwrap();
        let pg: Vec<Outcome> = vec![r0.perform(Op::Begin).await, r0.perform(advisory("cus_1")).await];
        assert_eq!(pg, model, "BEGIN and the lock");

        let pid = r1.backend_pid().await.unwrap();
        let waiter = Rc::clone(&r1);
        let task = tokio::task::spawn_local(async move { waiter.perform(advisory("cus_1")).await });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !waits_for_advisory_lock(&mut monitor, pid).await {
            assert!(!task.is_finished(), "r1 took the lock r0 holds");
            assert!(tokio::time::Instant::now() < deadline, "r1 neither waits nor answers");
            tokio::task::yield_now().await;
        }
        assert_eq!(r0.perform(Op::Commit).await, committed);
        assert_eq!(task.await.unwrap(), after, "r1 gets the lock once r0 commits");
        drop(r0);
        schema::drop(&database).await;
    });
}

#[test]
fn advisory_locks_taken_in_opposite_orders_deadlock_on_postgres_as_in_the_model() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let database =
            schema::create(&database_url(), "ops_advisory_deadlock", Strategy::Safe, &Catalog::default())
                .await
                .unwrap();
        let shared = services(0, Strategy::Safe.constraints());
        let r0 = Rc::new(connect(&database, &shared, 0).await);
        let r1 = connect(&database, &shared, 1).await;
        let mut monitor = PgConnection::connect_with(&database.options).await.unwrap();
        for (conn, key) in [(&*r0, "a"), (&r1, "b")] {
            assert_eq!(conn.perform(Op::Begin).await, Outcome::Done);
            assert_eq!(conn.perform(advisory(key)).await, Outcome::Done);
        }
        let pid = r0.backend_pid().await.unwrap();
        let waiter = Rc::clone(&r0);
        let task = tokio::task::spawn_local(async move { waiter.perform(advisory("b")).await });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !waits_for_advisory_lock(&mut monitor, pid).await {
            assert!(tokio::time::Instant::now() < deadline, "r0 does not wait for b");
            tokio::task::yield_now().await;
        }
        // r1 closes the cycle: one of the two is the victim (40P01), and
        // the other gets its lock, as the model has it (the model's victim
        // is the one that closes the cycle).
        let (second, first) = (r1.perform(advisory("a")).await, task.await.unwrap());
        let deadlock = Outcome::DbError { error: cusim::backend::DbError::Deadlock };
        assert!(
            (second == deadlock && first == Outcome::Done) || (first == deadlock && second == Outcome::Done),
            "one victim, one winner: {first:?}, {second:?}"
        );
        drop((r0, r1));
        schema::drop(&database).await;
    });
}

/// A keyed deduction of 3 of `internal_id`'s words with `key`.
fn keyed_deduct(internal_id: &str, key: &str) -> Op {
    Op::Deduct {
        scope: Scope::default(),
        internal_id: internal_id.into(),
        feature_id: "words".into(),
        value: 3,
        target: DeductTarget::Db,
        key: Some(key.into()),
    }
}

#[test]
fn a_counted_key_lasts_the_idempotency_window_on_postgres_as_in_the_model() {
    let window = APPLIED_KEY_WINDOW_MS;
    let customer = NewCustomer {
        scope: Scope::default(),
        id: Some("cus_1".into()),
        name: None,
        email: None,
        fingerprint: None,
        metadata: Default::default(),
        processor: None,
        default_scope: DefaultScope::All,
        stripe_wanted: false,
    };
    let insert = Op::Insert { customer, on_conflict: OnConflict::Error };
    // (clock move before it, request, key): a day less a millisecond, the
    // last millisecond, and another day.
    let steps = [(0, 0, "a"), (window - 1, 1, "a"), (0, 1, "b"), (1, 2, "a"), (window, 3, "c")];
    let mut world = World::new(Catalog::default(), Strategy::Safe.constraints(), 0);
    let Ok(Outcome::Insert { outcome: InsertOutcome::Inserted(row) }) = world.apply(0, &insert, None) else {
        panic!("the model inserts the customer")
    };
    let internal_id = row.internal_id.clone();
    let model: Vec<Outcome> = steps
        .iter()
        .map(|&(moved, request, key)| {
            world.advance_clock(moved);
            world.apply(request, &keyed_deduct(&internal_id, key), None).expect("nothing waits")
        })
        .collect();
    let deducted = |usage| Outcome::Deduct { outcome: DeductOutcome::Applied { usage } };
    let duplicate = Outcome::Deduct { outcome: DeductOutcome::Duplicate { usage: 3 } };
    assert_eq!(model, [deducted(3), duplicate, deducted(6), deducted(9), deducted(12)]);
    let model_keys: Vec<(String, i64)> =
        world.applied_keys(&internal_id, "words").into_iter().map(|(k, t)| (k, t as i64)).collect();
    assert_eq!(model_keys, [("c".to_owned(), 2 * window as i64)], "only the last day's key is held");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let database = schema::create(&database_url(), "ops_key_window", Strategy::Safe, &Catalog::default())
            .await
            .unwrap();
        let shared = services(0, Strategy::Safe.constraints());
        let mut pg = Vec::new();
        for (n, &(moved, request, key)) in steps.iter().enumerate() {
            let conn = connect(&database, &shared, request).await;
            if n == 0 {
                let inserted = conn.perform(insert.clone()).await;
                assert!(
                    matches!(&inserted, Outcome::Insert { outcome: InsertOutcome::Inserted(r) } if *r == row)
                );
            }
            shared.borrow_mut().clock_ms += moved;
            pg.push(conn.perform(keyed_deduct(&internal_id, key)).await);
        }
        assert_eq!(pg, model, "the same answers at the window's edges");
        let mut monitor = PgConnection::connect_with(&database.options).await.unwrap();
        let held: Vec<(String, i64)> = sqlx::query_as(
            "SELECT k, t::bigint FROM balances, jsonb_each_text(applied_keys) AS kept(k, t) ORDER BY k",
        )
        .fetch_all(&mut monitor)
        .await
        .unwrap();
        assert_eq!(held, model_keys, "Postgres holds the keys the model holds");
        drop(monitor);
        schema::drop(&database).await;
    });
}
