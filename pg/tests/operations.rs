//! Operations no flow uses yet, given as data to the model and to
//! Postgres side by side: the same answers, and the same waits (a wait
//! on Postgres is seen in `pg_locks`, not guessed from time).

use crate::support;

use std::rc::Rc;
use std::time::Duration;

use cusim::backend::mem::{Blocked, World};
use cusim::backend::{Backend, Op, Outcome};
use cusim::flow::Strategy;
use cusim::model::{Catalog, Scope};
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
