//! The proxies of `cusim-wire` between real clients (sqlx, redis-rs) and
//! the throwaway Postgres and Redis servers: relayed unchanged, steps
//! framed and shown, held steps reaching the server in the order
//! released, a lock wait seen by its backend PID with its reply held, a
//! reply lost, a connection closed before its step.

use crate::support::{database_url, redis_url};

use std::time::Duration;

use cusim_wire::url::ServerUrl;
use cusim_wire::{Event, Held, Proxy, Release, StepInfo, Store};
use sqlx::{Connection, PgConnection, Row};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// Long enough for any step on loopback: a guard against a hang, not a
/// wait for something to happen.
const WITHIN: Duration = Duration::from_secs(20);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn next_event(events: &mut UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(WITHIN, events.recv())
        .await
        .expect("the proxy reported something in time")
        .expect("the proxy is running")
}

/// The next held step `wanted` picks; every other held step is let go.
async fn held(events: &mut UnboundedReceiver<Event>, wanted: impl Fn(&StepInfo) -> bool) -> Held {
    loop {
        match next_event(events).await {
            Event::Held(step) if wanted(&step.step) => return step,
            Event::Held(other) => other.release(Release::Forward),
            _ => {}
        }
    }
}

/// Waits for the reply to `step`, letting every other held step go.
async fn replied(events: &mut UnboundedReceiver<Event>, step: &StepInfo) -> (String, Option<String>) {
    loop {
        match next_event(events).await {
            Event::Replied { conn, seq, reply, error, .. } if (conn, seq) == (step.conn, step.seq) => {
                return (reply, error)
            }
            Event::Held(other) => other.release(Release::Forward),
            _ => {}
        }
    }
}

fn runs(step: &StepInfo, text: &str) -> bool {
    step.statements.iter().any(|s| s.contains(text))
}

async fn proxied_postgres() -> (Proxy, String, UnboundedReceiver<Event>) {
    let url = ServerUrl::parse(&database_url(), &["postgres", "postgresql"], 5432).unwrap();
    let (events, receiver) = unbounded_channel();
    let proxy = Proxy::start(Store::Postgres, &url.upstream, events).await.unwrap();
    let through = url.through(proxy.addr());
    (proxy, through, receiver)
}

/// A connection straight to Postgres, after it ran `sql` (a table made
/// afresh for one test).
async fn direct_after(sql: &'static str) -> PgConnection {
    let mut conn = PgConnection::connect(&database_url()).await.unwrap();
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    conn
}

#[test]
fn a_client_through_the_open_proxy_is_served_as_directly_and_its_steps_are_shown() {
    runtime().block_on(async {
        let (_proxy, url, mut events) = proxied_postgres().await;
        // sqlx asks for SSL first (`sslmode=prefer`): the proxy answers no.
        let mut conn = PgConnection::connect(&url).await.unwrap();
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut conn).await.unwrap();
        let sum: i64 = sqlx::query_scalar("SELECT $1::int8 + $2::int8")
            .bind(40i64)
            .bind(2i64)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(sum, 42);
        let failed = sqlx::query("SELECT 1/0").execute(&mut conn).await;
        assert!(failed.is_err());
        // sqlx closes as soon as it read the error: its reply is still
        // reported whole.
        conn.close().await.unwrap();
        let (mut opened, mut steps, mut replies) = (None, Vec::new(), Vec::new());
        loop {
            match next_event(&mut events).await {
                Event::Accepted { .. } => {}
                Event::Opened { pid, .. } => opened = pid,
                Event::Passed(step) => steps.push(step),
                Event::Replied { reply, error, .. } => replies.push((reply, error)),
                Event::Closed { .. } => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(opened, Some(pid), "the backend PID comes from BackendKeyData");
        assert!(steps.iter().all(|s| s.pid == Some(pid) && s.store == Store::Postgres));
        let seqs: Vec<u64> = steps.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, (0..steps.len() as u64).collect::<Vec<_>>(), "steps are numbered in order");
        let sum_step = steps.iter().find(|s| runs(s, "$1::int8 + $2::int8")).expect("the sum ran");
        assert!(runs(sum_step, "-- $1 = 40, $2 = 2"), "{:?}", sum_step.statements);
        // Binary columns shown by their type, as SQL would show them.
        assert!(replies.iter().any(|(r, _)| r == &format!("SELECT 1; rows ({pid})")), "{replies:?}");
        assert!(replies.iter().any(|(r, _)| r == "SELECT 1; rows (42)"), "{replies:?}");
        assert!(replies.iter().any(|(_, e)| e.as_deref() == Some("22012")), "division by zero: {replies:?}");
    });
}

#[test]
fn held_steps_reach_postgres_in_the_order_released() {
    runtime().block_on(async {
        let mut setup = direct_after(
            "DROP TABLE IF EXISTS wire_order; CREATE TABLE wire_order (n serial PRIMARY KEY, who text)",
        )
        .await;
        let (proxy, url, mut events) = proxied_postgres().await;
        for order in [["b", "a"], ["a", "b"]] {
            let mut tasks = Vec::new();
            for who in ["a", "b"] {
                let mut conn = PgConnection::connect(&url).await.unwrap();
                proxy.set_gated(true);
                tasks.push(tokio::spawn(async move {
                    sqlx::query("INSERT INTO wire_order (who) VALUES ($1)")
                        .bind(who)
                        .execute(&mut conn)
                        .await
                        .unwrap();
                }));
            }
            let mut inserts = Vec::new();
            while inserts.len() < 2 {
                inserts.push(held(&mut events, |s| runs(s, "INSERT INTO wire_order")).await);
            }
            for who in order {
                let at = inserts.iter().position(|h| runs(&h.step, &format!("$1 = '{who}'"))).unwrap();
                let insert = inserts.remove(at);
                let step = insert.step.clone();
                insert.release(Release::Forward);
                let (reply, error) = replied(&mut events, &step).await;
                assert_eq!((reply.as_str(), error), ("INSERT 0 1", None));
            }
            proxy.set_gated(false);
            for task in tasks {
                task.await.unwrap();
            }
        }
        let order: Vec<String> =
            sqlx::query_scalar("SELECT who FROM wire_order ORDER BY n").fetch_all(&mut setup).await.unwrap();
        assert_eq!(order, ["b", "a", "a", "b"]);
    });
}

#[test]
fn a_lock_wait_is_seen_by_its_backend_pid_and_its_reply_is_held_until_released() {
    runtime().block_on(async {
        let mut monitor = direct_after("DROP TABLE IF EXISTS wire_lock; CREATE TABLE wire_lock (id int PRIMARY KEY, v int); INSERT INTO wire_lock VALUES (1, 0)").await;
        let (proxy, url, mut events) = proxied_postgres().await;
        let mut a = PgConnection::connect(&url).await.unwrap();
        let mut b = PgConnection::connect(&url).await.unwrap();
        proxy.set_gated(true);
        let (commit, committing) = tokio::sync::oneshot::channel::<()>();
        let holder = tokio::spawn(async move {
            let mut tx = a.begin().await.unwrap();
            sqlx::query("UPDATE wire_lock SET v = v + 1 WHERE id = 1").execute(&mut *tx).await.unwrap();
            committing.await.unwrap();
            tx.commit().await.unwrap();
        });
        let update = held(&mut events, |s| runs(s, "SET v = v + 1")).await;
        let step = update.step.clone();
        update.release(Release::Forward);
        replied(&mut events, &step).await;
        let waiter = tokio::spawn(async move {
            sqlx::query("UPDATE wire_lock SET v = v * 10 WHERE id = 1").execute(&mut b).await.unwrap();
        });
        let blocked = held(&mut events, |s| runs(s, "SET v = v * 10")).await;
        let pid = blocked.step.pid.expect("a Postgres step knows its backend");
        let conn = blocked.step.conn;
        blocked.release(Release::Forward);
        // Postgres shows the backend waiting for a lock.
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            let waiting: Option<String> =
                sqlx::query("SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1")
                    .bind(pid)
                    .fetch_one(&mut monitor)
                    .await
                    .unwrap()
                    .get(0);
            if waiting.as_deref() == Some("Lock") {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "backend {pid} never waited");
            tokio::task::yield_now().await;
        }
        proxy.hold_replies(conn, true);
        commit.send(()).unwrap();
        let reply = loop {
            match next_event(&mut events).await {
                Event::ReplyHeld(reply) => break reply,
                Event::Held(other) => other.release(Release::Forward),
                _ => {}
            }
        };
        assert_eq!((reply.conn, reply.reply.as_str()), (conn, "UPDATE 1"));
        holder.await.unwrap();
        // The lock was let go and the statement ran, but its client has no
        // answer until the reply is released.
        let v: i32 = sqlx::query_scalar("SELECT v FROM wire_lock WHERE id = 1").fetch_one(&mut monitor).await.unwrap();
        assert_eq!(v, 10);
        assert!(!waiter.is_finished(), "the reply was held");
        proxy.hold_replies(conn, false);
        reply.release();
        tokio::time::timeout(WITHIN, waiter).await.unwrap().unwrap();
    });
}

#[test]
fn a_step_released_to_lose_its_reply_runs_and_one_closed_before_does_not() {
    runtime().block_on(async {
        let mut check =
            direct_after("DROP TABLE IF EXISTS wire_lost; CREATE TABLE wire_lost (who text)").await;
        let (proxy, url, mut events) = proxied_postgres().await;
        for (who, how) in [("lost", Release::LoseReply), ("never", Release::CloseBefore)] {
            let mut conn = PgConnection::connect(&url).await.unwrap();
            proxy.set_gated(true);
            let task = tokio::spawn(async move {
                sqlx::query("INSERT INTO wire_lost VALUES ($1)")
                    .bind(who)
                    .execute(&mut conn)
                    .await
                    .map(|_| ())
            });
            held(&mut events, |s| runs(s, "INSERT INTO wire_lost")).await.release(how);
            let answer = tokio::time::timeout(WITHIN, task).await.unwrap().unwrap();
            assert!(answer.is_err(), "{who}: the client got no answer");
            proxy.set_gated(false);
        }
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT who FROM wire_lost").fetch_all(&mut check).await.unwrap();
        assert_eq!(rows, ["lost"]);
    });
}

#[test]
fn redis_commands_are_steps_in_their_order_and_scripts_pass_through() {
    runtime().block_on(async {
        let url = ServerUrl::parse(&redis_url(), &["redis"], 6379).unwrap();
        let (events, mut receiver) = unbounded_channel();
        let proxy = Proxy::start(Store::Redis, &url.upstream, events).await.unwrap();
        let client = redis::Client::open(url.through(proxy.addr())).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let key = format!("cusim-wire-test:{}", std::process::id());
        proxy.set_gated(true);
        let pipeline = {
            let (mut con, key) = (con.clone(), key.clone());
            tokio::spawn(async move {
                let (_, n, got): ((), i64, String) = redis::pipe()
                    .cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .cmd("INCR")
                    .arg(&key)
                    .cmd("GET")
                    .arg(&key)
                    .query_async(&mut con)
                    .await
                    .unwrap();
                (n, got)
            })
        };
        // One command at a time: the next is framed only once the one
        // before is released.
        let mut seen = Vec::new();
        for _ in 0..3 {
            let step = held(&mut receiver, |s| runs(s, &key)).await;
            seen.push(step.step.statements[0].split(' ').next().unwrap().to_string());
            step.release(Release::Forward);
        }
        assert_eq!(seen, ["SET", "INCR", "GET"]);
        assert_eq!(tokio::time::timeout(WITHIN, pipeline).await.unwrap().unwrap(), (2, "2".to_string()));
        proxy.set_gated(false);
        let script = redis::Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
        let n: i64 = script.key(&key).arg(5).invoke_async(&mut con).await.unwrap();
        assert_eq!(n, 7);
        let _: () = redis::cmd("DEL").arg(&key).query_async(&mut con).await.unwrap();
        let mut scripts = Vec::new();
        while let Ok(event) = receiver.try_recv() {
            if let Event::Passed(step) = event {
                scripts.extend(step.statements.into_iter().filter(|s| s.starts_with("EVAL")));
            }
        }
        assert!(!scripts.is_empty(), "the script ran as a command of its own");
    });
}

#[test]
fn an_unreachable_server_is_reported_and_the_client_closed() {
    runtime().block_on(async {
        // A port nothing listens on: bound, then let go.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let (events, mut receiver) = unbounded_channel();
        let proxy = Proxy::start(Store::Postgres, &free.to_string(), events).await.unwrap();
        let url = format!("postgres://postgres@{}/postgres?sslmode=disable", proxy.addr());
        assert!(PgConnection::connect(&url).await.is_err());
        loop {
            match next_event(&mut receiver).await {
                Event::Failed { error, .. } => {
                    assert!(error.contains(&format!("cannot reach Postgres at {free}")), "{error}");
                    break;
                }
                Event::Closed { .. } => panic!("closed without saying why"),
                _ => {}
            }
        }
    });
}
