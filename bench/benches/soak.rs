//! The long soak: `cusim serve --strategy safe` (in process, over
//! HTTP/1.1 keep-alive connections) under 32 clients for `SOAK_SECONDS`
//! (600 by default, in whole minutes) over 1,000 customers: checks, unkeyed tracks and
//! gets. Every minute it prints a row: requests per second, p50 and p99
//! latency (to within 4%), 5xx answers, the resident memory of the
//! process (the server and its clients); at the end, the last
//! minute against the first, and whether `/metrics` counted what the
//! clients sent. In memory, and on Postgres + Redis when `DATABASE_URL`
//! and `REDIS_URL` name servers (`cargo xtask bench soak` starts
//! throwaway ones). Not a criterion benchmark: what it measures is how
//! the figures move over minutes, which criterion's samples do not show.
//! Rows are appended to `target/soak.txt`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cusim::model::Catalog;
use cusim::rng::Rng;
use cusim_serve::PgSettings;
#[path = "support/client.rs"]
mod client;
#[path = "support/server.rs"]
mod server;

use client::Connection;
use server::Server;

const KEY: &str = "am_sk_test_soak";
const CLIENTS: usize = 32;
const CUSTOMERS: usize = 1_000;
const MINUTE: Duration = Duration::from_secs(60);

fn catalog() -> Catalog {
    server::free_catalog(1_000_000)
}

fn resident_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    (pages * 4096) as f64 / 1_048_576.0
}

/// One minute's calls: latencies in buckets 4% wide (from 1 µs to about
/// 6 s), so that the soak's own bookkeeping does not grow with its calls.
struct Minute {
    buckets: Vec<u64>,
    calls: u64,
    errors: u64,
}

const BUCKETS: usize = 400;
const BUCKET_GROWTH: f64 = 1.04;

impl Default for Minute {
    fn default() -> Minute {
        Minute { buckets: vec![0; BUCKETS], calls: 0, errors: 0 }
    }
}

impl Minute {
    fn record(&mut self, latency: Duration, error: bool) {
        let micros = latency.as_secs_f64() * 1e6;
        let bucket = (micros.max(1.0).ln() / BUCKET_GROWTH.ln()) as usize;
        self.buckets[bucket.min(BUCKETS - 1)] += 1;
        self.calls += 1;
        self.errors += u64::from(error);
    }

    /// The latency below which `q` of the calls fell (a bucket's upper end).
    fn quantile(&self, q: f64) -> Duration {
        let wanted = (self.calls as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (bucket, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= wanted.max(1) {
                return Duration::from_secs_f64(BUCKET_GROWTH.powi(bucket as i32 + 1) / 1e6);
            }
        }
        Duration::ZERO
    }
}

/// What the clients sent: (path, status) → calls.
type Sent = std::collections::BTreeMap<(&'static str, u16), u64>;

fn run(label: &str, postgres: Option<PgSettings>, seconds: u64) {
    let mut server = Server::start(KEY, catalog(), postgres);
    let addr = server.addr;
    server.app.take();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let minutes: Arc<Mutex<Vec<Minute>>> = Arc::new(Mutex::new(Vec::new()));
    let sent: Arc<Mutex<Sent>> = Arc::new(Mutex::new(Sent::new()));
    let mut rows = Vec::new();
    runtime.block_on(async {
        let mut setup = Connection::open(addr, KEY).await;
        for n in 0..CUSTOMERS {
            let (status, body) = setup
                .send("POST", "/v1/customers.get_or_create", &format!(r#"{{"customer_id":"k{n}"}}"#))
                .await;
            assert_eq!(status, 200, "{body}");
        }
        sent.lock().unwrap().insert(("/v1/customers.get_or_create", 200), CUSTOMERS as u64);
        let done = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let start = Instant::now();
        // Whole minutes only.
        let deadline = start + MINUTE * (seconds / 60).max(1) as u32;
        for client in 0..CLIENTS {
            let (minutes, sent, done) = (Arc::clone(&minutes), Arc::clone(&sent), Arc::clone(&done));
            tasks.push(tokio::spawn(async move {
                let mut conn = Connection::open(addr, KEY).await;
                let mut rng = Rng::from_state(0x50a4 + client as u64);
                while !done.load(Ordering::Relaxed) {
                    let id = format!("k{}", rng.below(CUSTOMERS));
                    let (path, body) = match rng.below(10) {
                        0..4 => (
                            "/v1/balances.check",
                            format!(r#"{{"customer_id":"{id}","feature_id":"words"}}"#),
                        ),
                        4..7 => (
                            "/v1/balances.track",
                            format!(r#"{{"customer_id":"{id}","feature_id":"words","value":1}}"#),
                        ),
                        _ => ("/v1/customers.get", format!(r#"{{"customer_id":"{id}"}}"#)),
                    };
                    let at = Instant::now();
                    let (status, _) = conn.send("POST", path, &body).await;
                    let minute = (at.duration_since(start).as_secs() / 60) as usize;
                    let mut minutes = minutes.lock().unwrap();
                    while minutes.len() <= minute {
                        minutes.push(Minute::default());
                    }
                    minutes[minute].record(at.elapsed(), status >= 500);
                    *sent.lock().unwrap().entry((path, status)).or_default() += 1;
                }
            }));
        }
        let mut next = start + MINUTE;
        while next <= deadline {
            tokio::time::sleep_until(next.into()).await;
            rows.push(resident_mib());
            next += MINUTE;
        }
        done.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
        let mut conn = Connection::open(addr, KEY).await;
        let (_, metrics) = conn.send("GET", "/metrics", "").await;
        let sent = sent.lock().unwrap();
        let mut agree = true;
        for ((path, status), n) in sent.iter() {
            let series = format!(
                "cusim_http_requests_total{{route=\"{path}\",method=\"POST\",status=\"{status}\"}} {n}"
            );
            if !metrics.lines().any(|l| l == series) {
                agree = false;
                eprintln!("soak: /metrics has no line {series:?}");
            }
        }
        let total: u64 = sent.values().sum();
        let line =
            format!("soak {label}: /metrics agrees with the {total} calls the clients counted: {agree}");
        eprintln!("{line}");
        append(&line);
    });
    let minutes = minutes.lock().unwrap();
    let mut table = vec![format!("soak {label}: minute | requests/s | p50 ms | p99 ms | errors | RSS MiB")];
    let mut rates = Vec::new();
    for (m, minute) in minutes.iter().enumerate().take(rows.len()) {
        let rate = minute.calls as f64 / 60.0;
        rates.push(rate);
        table.push(format!(
            "soak {label}: {} | {rate:.0} | {:.2} | {:.2} | {} | {:.1}",
            m + 1,
            minute.quantile(0.5).as_secs_f64() * 1e3,
            minute.quantile(0.99).as_secs_f64() * 1e3,
            minute.errors,
            rows[m]
        ));
    }
    if let (Some(first), Some(last), Some(rss0), Some(rss1)) =
        (rates.first(), rates.last(), rows.first(), rows.last())
    {
        table.push(format!(
            "soak {label}: last minute / first: requests/s {:.2}×, RSS {:+.1}%",
            last / first,
            (rss1 / rss0 - 1.0) * 100.0
        ));
    }
    for line in &table {
        eprintln!("{line}");
        append(line);
    }
    drop(server);
}

fn append(line: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/soak.txt");
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(file, "{line}");
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter picks a mode.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |mode: &str| filter.as_deref().is_none_or(|f| mode.contains(f));
    let seconds: u64 = std::env::var("SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    if wanted("memory") {
        run("memory", None, seconds);
    }
    if wanted("postgres_redis") {
        let (Ok(database_url), Ok(redis_url)) = (std::env::var("DATABASE_URL"), std::env::var("REDIS_URL"))
        else {
            eprintln!(
                "soak: DATABASE_URL and REDIS_URL are not both set; `cargo xtask bench soak` starts servers"
            );
            return;
        };
        let settings = PgSettings {
            database_url,
            redis_url: Some(redis_url),
            schema: format!("bench_soak_{}", std::process::id()),
            pool_size: 40,
            pacing: cusim_serve::Pacing::default(),
        };
        run("postgres_redis", Some(settings), seconds);
    }
}
