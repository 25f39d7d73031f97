//! What HTTP costs: creates and checks through `cusim serve --strategy
//! safe` (in process, the same code as the binary) over HTTP/1.1
//! keep-alive connections, beside the same requests handed to the same
//! engine directly, at 1, 8 and 32 concurrent clients; in memory, and on
//! Postgres + Redis when `DATABASE_URL` and `REDIS_URL` name servers
//! (`cargo xtask bench http` starts throwaway ones).
//!
//! A round is every client sending one create of a new id and then one
//! check of it. Criterion times rounds (throughput: requests); each
//! benchmark also prints a line `http: …` with requests per second and
//! per-request p50 and p99, collected in `target/http.txt`.
//!
//! `held_customers_memory/direct/8/HELD`: whether the embedded default's
//! cost per request stays flat as it holds 1,000, 10,000 or 100,000
//! customers.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use cusim::flow::Request;
use cusim::model::{Catalog, CustomerData};
use cusim_serve::{App, PgSettings};
#[path = "support/client.rs"]
mod client;
#[path = "support/server.rs"]
mod server;

use client::Connection;
use server::Server;

const CLIENTS: [usize; 3] = [1, 8, 32];
const KEY: &str = "am_sk_test_bench";

fn catalog() -> Catalog {
    server::free_catalog(1000)
}

/// Latencies and errors of one benchmark.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: u64,
    wall: Duration,
}

impl Tally {
    fn report(&self, name: &str) {
        if self.latencies.is_empty() {
            return; // Filtered out.
        }
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let at = |q: f64| {
            sorted.get(((sorted.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or_default()
        };
        let line = format!(
            "http: {name}: {} requests, {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
            sorted.len(),
            sorted.len() as f64 / self.wall.as_secs_f64().max(1e-9),
            at(0.50).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            self.errors
        );
        eprintln!("{line}");
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/http.txt");
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(file, "{line}");
        }
    }
}

/// The create and the check of round `round`'s client `client`.
fn requests(label: &str, clients: usize, round: u64, client: usize) -> (String, String) {
    let id = format!("{label}_c{clients}_r{round}_{client}");
    (id.clone(), format!(r#"{{"customer_id":"{id}","feature_id":"words"}}"#))
}

/// Benchmarks `label`'s server; `postgres(name)` gives the settings of a
/// fresh server (a schema of its own), `None` for memory. Each benchmark
/// has a fresh server, so that none inherits another's customers.
fn bench_mode(c: &mut Criterion, label: &str, postgres: impl Fn(&str) -> Option<PgSettings>) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let round = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group(format!("create_check_{label}"));
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    for clients in CLIENTS {
        group.throughput(Throughput::Elements(2 * clients as u64));
        // Over HTTP: each client its own keep-alive connection.
        let server = Server::start(KEY, catalog(), postgres(&format!("http_{clients}")));
        let addr = server.addr;
        let connections: Vec<Arc<tokio::sync::Mutex<Connection>>> = runtime
            .block_on(async {
                futures_join((0..clients).map(|_| Connection::open(addr, KEY)).collect()).await
            })
            .into_iter()
            .map(|c| Arc::new(tokio::sync::Mutex::new(c)))
            .collect();
        let tally = Arc::new(Mutex::new(Tally::default()));
        group.bench_function(format!("http/{clients}"), |b| {
            b.iter_custom(|rounds| {
                run_rounds(&runtime, &round, clients, rounds, &tally, |client, n| {
                    let conn = Arc::clone(&connections[client]);
                    let (id, check) = requests(label, clients, n, client);
                    async move {
                        let mut conn = conn.lock().await;
                        let create = format!(r#"{{"customer_id":"{id}"}}"#);
                        let mut timed = Vec::new();
                        for (path, body) in
                            [("/v1/customers.get_or_create", create), ("/v1/balances.check", check)]
                        {
                            let at = Instant::now();
                            let (status, _) = conn.send("POST", path, &body).await;
                            timed.push((at.elapsed(), status != 200));
                        }
                        timed
                    }
                })
            })
        });
        tally.lock().unwrap().report(&format!("{label} http {clients} clients"));
        drop(connections);
        drop(server);
        // Directly: the same requests handed to the same engine.
        let server = Server::start(KEY, catalog(), postgres(&format!("direct_{clients}")));
        let app = Arc::clone(server.app.as_ref().expect("a running server"));
        let tally = Arc::new(Mutex::new(Tally::default()));
        group.bench_function(format!("direct/{clients}"), |b| {
            b.iter_custom(|rounds| {
                run_rounds(&runtime, &round, clients, rounds, &tally, |client, n| {
                    let app = Arc::clone(&app);
                    let (id, _) = requests(label, clients, n, client);
                    async move { execute_timed(&app, direct_requests(&id)).await }
                })
            })
        });
        tally.lock().unwrap().report(&format!("{label} direct {clients} clients"));
        drop(app);
        drop(server);
    }
    group.finish();
}

/// The create and the check of customer `id`, as the HTTP layer reads them
/// (org_1, sandbox, API version 2.4.0: no auto-create).
fn direct_requests(id: &str) -> [Request; 2] {
    let scope = cusim::model::Scope::new("org_1", cusim::model::Env::Sandbox);
    let scoped = |request: Request| cusim_serve::wire::in_scope(request, &scope);
    let mut check = Request::check(id, "words");
    if let Request::Check { auto_create, .. } = &mut check {
        *auto_create = false;
    }
    [scoped(Request::create(Some(id), CustomerData::default())), scoped(check)]
}

/// Runs `rounds` rounds of `clients` tasks at once, client `c` of round
/// `n` doing `work(c, n)`, whose (latency, failed) pairs go to `tally`;
/// the time the rounds took.
/// Each request handed to the engine in turn: how long it took, and
/// whether it failed.
async fn execute_timed(app: &App, requests: impl IntoIterator<Item = Request>) -> Vec<(Duration, bool)> {
    let mut timed = Vec::new();
    for request in requests {
        let at = Instant::now();
        let result = app.engine.execute(request, None, cusim::model::FailedKey::GivenBack).await;
        timed.push((at.elapsed(), result.is_err()));
    }
    timed
}

fn run_rounds<W, F>(
    runtime: &tokio::runtime::Runtime,
    round: &AtomicU64,
    clients: usize,
    rounds: u64,
    tally: &Mutex<Tally>,
    work: W,
) -> Duration
where
    W: Fn(usize, u64) -> F,
    F: std::future::Future<Output = Vec<(Duration, bool)>> + Send + 'static,
{
    let started = Instant::now();
    for _ in 0..rounds {
        let n = round.fetch_add(1, Ordering::Relaxed);
        let timed = runtime.block_on(async {
            let tasks: Vec<_> = (0..clients).map(|client| tokio::spawn(work(client, n))).collect();
            let mut timed = Vec::new();
            for task in tasks {
                timed.extend(task.await.unwrap());
            }
            timed
        });
        let mut tally = tally.lock().unwrap();
        for (latency, failed) in timed {
            tally.latencies.push(latency);
            tally.errors += u64::from(failed);
        }
    }
    let elapsed = started.elapsed();
    tally.lock().unwrap().wall += elapsed;
    elapsed
}

/// Awaits every future, in order.
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::with_capacity(futures.len());
    for future in futures {
        out.push(future.await);
    }
    out
}

fn memory(c: &mut Criterion) {
    bench_mode(c, "memory", |_| None);
}

/// Customers the embedded default holds before [`held`] measures it.
const HELD: [usize; 3] = [1_000, 10_000, 100_000];
/// Clients of [`held`].
const HELD_CLIENTS: usize = 8;

/// Whether the embedded default's cost per request stays flat as it holds
/// more customers: 8 clients, each round a check of a customer it holds
/// (a different one each round) and a create of a new one, handed to the
/// engine directly, after `HELD` customers were created one by one (that
/// time is printed too: `held: …`).
fn held(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let round = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group("held_customers_memory");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(2 * HELD_CLIENTS as u64));
    for held in HELD {
        let mut loaded: Option<(Server, Arc<App>)> = None;
        let tally = Arc::new(Mutex::new(Tally::default()));
        group.bench_function(format!("direct/{HELD_CLIENTS}/{held}"), |b| {
            let (_, app) = loaded.get_or_insert_with(|| {
                let server = Server::start(KEY, catalog(), None);
                let app = Arc::clone(server.app.as_ref().expect("a running server"));
                let started = Instant::now();
                runtime.block_on(async {
                    for n in 0..held {
                        let [create, _] = direct_requests(&format!("held_{n}"));
                        let created =
                            app.engine.execute(create, None, cusim::model::FailedKey::GivenBack).await;
                        assert!(created.is_ok(), "{created:?}");
                    }
                });
                eprintln!(
                    "held: {held} customers created one by one in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                (server, app)
            });
            b.iter_custom(|rounds| {
                run_rounds(&runtime, &round, HELD_CLIENTS, rounds, &tally, |client, n| {
                    let app = Arc::clone(app);
                    let (id, _) = requests("held", HELD_CLIENTS, n, client);
                    let known = (n as usize * HELD_CLIENTS + client) % held;
                    async move {
                        let [create, _] = direct_requests(&id);
                        let [_, check] = direct_requests(&format!("held_{known}"));
                        execute_timed(&app, [check, create]).await
                    }
                })
            })
        });
        tally.lock().unwrap().report(&format!("memory holding {held} customers, {HELD_CLIENTS} clients"));
    }
    group.finish();
}

fn postgres_redis(c: &mut Criterion) {
    let (Ok(database_url), Ok(redis_url)) = (std::env::var("DATABASE_URL"), std::env::var("REDIS_URL"))
    else {
        eprintln!(
            "http: DATABASE_URL and REDIS_URL are not both set; `cargo xtask bench http` starts servers"
        );
        return;
    };
    let settings = |name: &str| {
        Some(PgSettings {
            database_url: database_url.clone(),
            redis_url: Some(redis_url.clone()),
            schema: format!("bench_http_{name}_{}", std::process::id()),
            pool_size: 40,
            pacing: cusim_serve::Pacing::default(),
        })
    };
    bench_mode(c, "postgres_redis", settings);
}

criterion_group!(benches, memory, held, postgres_redis);
criterion_main!(benches);
