//! Stores that go away and come back: a Redis server restarted under the
//! running server (one of this test's own, on a free port, so the other
//! tests' Redis stays up), and every Postgres connection of the server's
//! pool terminated, as a restarted Postgres leaves them. While a store is
//! gone, a request gets the documented answer (503 `db_unavailable` with
//! `Retry-After`) or is served; once it is back, the server serves again
//! by itself, and no acknowledged track is lost.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cusim::flow::Strategy as Design;
use cusim_serve::App;
use serde_json::json;

use super::support::{get_text, post, Answer};
use super::{finish, pg_app_on, runtime, schema_name, url};

/// How long a store may take to be served from again once it is back.
const RECOVERY: Duration = Duration::from_secs(10);

/// A `redis-server` of this test's own, on loopback, keeping nothing on disk.
struct OwnRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl OwnRedis {
    /// Starts one on a free port (another, if a port picked free was
    /// taken before the server could bind it).
    fn start() -> OwnRedis {
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let dir = std::env::temp_dir().join(format!("cusim-own-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let mut redis = OwnRedis { port, dir, child: None };
            if redis.try_up() {
                return redis;
            }
        }
        panic!("redis-server did not start on three free ports");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it again on its port (which it held until it was killed).
    fn up(&mut self) {
        for _ in 0..3 {
            if self.try_up() {
                return;
            }
        }
        panic!("redis-server did not start again on port {}", self.port);
    }

    /// Starts the server and waits until it answers `PING`; false if it
    /// exited first (its port taken).
    fn try_up(&mut self) -> bool {
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (cargo xtask test postgres installs it)");
        let deadline = Instant::now() + RECOVERY;
        loop {
            if self.pong() {
                self.child = Some(child);
                return true;
            }
            if child.try_wait().ok().flatten().is_some() {
                return false;
            }
            assert!(Instant::now() < deadline, "redis-server on port {} did not answer", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server answers an inline `PING`.
    fn pong(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let mut answer = [0u8; 7];
        stream.set_read_timeout(Some(Duration::from_secs(1))).is_ok()
            && stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    /// Kills the server (nothing is kept: it comes back empty).
    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the calls of one phase got.
#[derive(Debug, Default)]
struct Tally {
    /// Acknowledged track values.
    acknowledged: i64,
    served: usize,
    /// 503 `db_unavailable` with `Retry-After`, as the contract says for a
    /// store that is gone.
    unavailable: usize,
}

impl Tally {
    /// Tracks `value` for `customer`; whether it was served.
    fn track(&mut self, app: &Arc<App>, rt: &tokio::runtime::Runtime, customer: &str, value: i64) -> bool {
        let body = json!({"customer_id": customer, "feature_id": "words", "value": value});
        self.note(&rt.block_on(post(app, "/v1/balances.track", body, &[])), value)
    }

    /// Counts a track's answer; anything but a 200 or the documented 503
    /// fails the test. Whether it was served.
    fn note(&mut self, answer: &Answer, value: i64) -> bool {
        match answer.status {
            200 => {
                self.acknowledged += value;
                self.served += 1;
                true
            }
            503 => {
                assert_eq!(answer.code(), "db_unavailable", "{answer:?}");
                assert_eq!(answer.retry_after.as_deref(), Some("1"), "{answer:?}");
                self.unavailable += 1;
                false
            }
            _ => panic!("a track answered {answer:?}"),
        }
    }
}

fn ready(app: &Arc<App>, rt: &tokio::runtime::Runtime) -> u16 {
    rt.block_on(get_text(app, "/ready")).0
}

fn usage(app: &Arc<App>, rt: &tokio::runtime::Runtime, customer: &str) -> i64 {
    let answer = rt.block_on(post(app, "/v1/customers.get", json!({"customer_id": customer}), &[]));
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["balances"]["words"]["usage"].as_i64().unwrap_or(0)
}

/// Tracks until one is served; how long that took and the tally.
fn until_served(app: &Arc<App>, rt: &tokio::runtime::Runtime, customer: &str, tally: &mut Tally) -> Duration {
    let start = Instant::now();
    while !tally.track(app, rt, customer, 1) {
        assert!(start.elapsed() < RECOVERY, "not served again within {RECOVERY:?}: {tally:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn a_restarted_redis_is_served_from_again_and_no_acknowledged_track_is_lost() {
    let rt = runtime();
    let mut redis = OwnRedis::start();
    let schema = schema_name("redis_back");
    let app = pg_app_on(&rt, Design::Safe, &schema, Some(redis.url()));
    let created = rt.block_on(post(&app, "/v1/customers.get_or_create", json!({"customer_id": "ann"}), &[]));
    assert_eq!(created.status, 200, "{created:?}");
    let mut before = Tally::default();
    for _ in 0..5 {
        assert!(before.track(&app, &rt, "ann", 2), "served while Redis is up");
    }
    assert_eq!(usage(&app, &rt, "ann"), 10);

    redis.down();
    let mut outage = Tally::default();
    for _ in 0..5 {
        outage.track(&app, &rt, "ann", 3);
    }
    assert_eq!(ready(&app, &rt), 503, "not ready while Redis is gone");
    // `safe` changes nothing it cannot invalidate: every track was refused.
    assert_eq!((outage.served, outage.unavailable), (0, 5), "{outage:?}");

    redis.up();
    let mut after = Tally::default();
    let recovered = until_served(&app, &rt, "ann", &mut after);
    for _ in 0..20 {
        assert!(after.track(&app, &rt, "ann", 1), "served once Redis is back: {after:?}");
    }
    assert_eq!(ready(&app, &rt), 200);
    let acknowledged = before.acknowledged + outage.acknowledged + after.acknowledged;
    assert_eq!(usage(&app, &rt, "ann"), acknowledged, "usage conserved");
    eprintln!(
        "Redis restarted: served again {} ms after it was back ({} refused on the way); {} refused while it was gone; usage {acknowledged} as acknowledged",
        recovered.as_millis(),
        after.unavailable,
        outage.unavailable
    );
    finish(&rt, app, &schema);
}

#[test]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
fn the_pool_replaces_terminated_postgres_connections_and_no_acknowledged_track_is_lost() {
    use sqlx::{Connection, PgConnection};
    let rt = runtime();
    let schema = schema_name("pg_back");
    let app = pg_app_on(&rt, Design::Safe, &schema, None);
    let created = rt.block_on(post(&app, "/v1/customers.get_or_create", json!({"customer_id": "bo"}), &[]));
    assert_eq!(created.status, 200, "{created:?}");
    let mut tally = Tally::default();
    // Enough tracks at once that the pool holds several connections.
    let burst = |tally: &mut Tally| {
        let answers = rt.block_on(async {
            let mut calls = tokio::task::JoinSet::new();
            for _ in 0..8 {
                let app = Arc::clone(&app);
                calls.spawn(async move {
                    let body = json!({"customer_id": "bo", "feature_id": "words", "value": 1});
                    post(&app, "/v1/balances.track", body, &[]).await
                });
            }
            calls.join_all().await
        });
        for answer in answers {
            tally.note(&answer, 1);
        }
    };
    burst(&mut tally);
    assert_eq!(tally.served, 8, "{tally:?}");
    let terminated: i64 = rt.block_on(async {
        let mut admin = PgConnection::connect(&url("DATABASE_URL")).await.unwrap();
        sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()) AS t",
        )
        .bind(format!("cusim:{schema}"))
        .fetch_one(&mut admin)
        .await
        .unwrap()
    });
    assert!(terminated >= 2, "the pool held {terminated} connections");
    let recovered = until_served(&app, &rt, "bo", &mut tally);
    burst(&mut tally);
    burst(&mut tally);
    assert_eq!(ready(&app, &rt), 200);
    assert_eq!(usage(&app, &rt, "bo"), tally.acknowledged, "usage conserved: {tally:?}");
    eprintln!(
        "{terminated} pooled Postgres connections terminated: served again after {} ms; {} of {} tracks refused",
        recovered.as_millis(),
        tally.unavailable,
        tally.served + tally.unavailable
    );
    finish(&rt, app, &schema);
}
