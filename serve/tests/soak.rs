//! A bounded soak: two orgs holding the same 1,500 customer ids each, 16
//! clients sending checks, tracks (unkeyed, and keyed from a fixed pool
//! of keys, so that repeats are refused as the contract says) and gets,
//! 128,000 calls in memory and 12,000 on Postgres + Redis. No 5xx; every customer's usage is what its org's
//! acknowledged tracks add up to (so nothing was lost and no org saw the
//! other's); `/metrics` counts what the clients sent, route by route and
//! status by status; and between the second fifth of the calls (the first
//! warms threads and allocator arenas) and the last, the process's
//! resident memory grows by at most a tenth (or 4 MiB, if more) and its
//! CPU time per call at most doubles (calls per second are printed, not
//! judged: other jobs share the cores). In memory, and on Postgres +
//! Redis.
//! The ten-minute soak is a benchmark (`cargo xtask bench soak`).

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cusim::flow::Strategy;
use cusim::rng::Rng;
use cusim_serve::{App, Engine, Keys, MemoryEngine};
use serde_json::{json, Value};
use support::*;

/// The two orgs' keys.
const ORG_KEYS: [(&str, &str); 2] = [("am_sk_test_soak_one", "org_1"), ("am_sk_test_soak_two", "org_2")];
const CUSTOMERS: usize = 1_500;
const CLIENTS: usize = 16;
/// Idempotency keys per org: a keyed track draws one, so most are repeats.
const KEY_POOL: usize = 200;

/// The resident memory of this process, in bytes (Linux: /proc/self/statm).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// The CPU time this process has used, in clock ticks (user + system,
/// Linux: /proc/self/stat): what a call costs, whatever else shares the
/// machine's cores.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime
    // are the 14th and 15th of the line.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)
}

/// One point of the soak: when, resident bytes, CPU ticks.
type Mark = (Instant, u64, u64);

/// `POST path` with `body` as org `org` (with an `Idempotency-Key`, if
/// given): the status and the body.
async fn call(app: &Arc<App>, org: usize, path: &str, body: Value, key: Option<&str>) -> (u16, Value) {
    let extra: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
    let answer = post_as(app, ORG_KEYS[org].0, path, body, &extra).await;
    (answer.status, answer.body)
}

/// What the clients sent and heard.
#[derive(Debug, Default)]
struct Heard {
    /// (route, status) → calls.
    calls: BTreeMap<(&'static str, u16), u64>,
    /// (org, customer) → acknowledged usage.
    usage: BTreeMap<(usize, usize), i64>,
    /// Calls done, and when each fifth ended.
    done: usize,
    fifths: Vec<Mark>,
}

/// The soak on `app`; what it measured (printed by the caller).
pub async fn soak(app: Arc<App>, label: &str, calls_per_client: usize) {
    // Every customer, in both orgs, sixteen at a time; then read once, so
    // that the cache holds each before the soak starts.
    let mut setup = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let app = Arc::clone(&app);
        setup.spawn(async move {
            for n in (client..CUSTOMERS).step_by(CLIENTS) {
                for org in 0..2 {
                    let body = json!({"customer_id": format!("s{n}")});
                    let (status, body) = call(&app, org, "/v1/customers.get_or_create", body, None).await;
                    assert_eq!(status, 200, "{body}");
                    let body = json!({"customer_id": format!("s{n}")});
                    let (status, body) = call(&app, org, "/v1/customers.get", body, None).await;
                    assert_eq!(status, 200, "{body}");
                }
            }
        });
    }
    setup.join_all().await;
    let total = CLIENTS * calls_per_client;
    let heard = Arc::new(Mutex::new(Heard::default()));
    heard.lock().unwrap().fifths.push((Instant::now(), resident_bytes(), cpu_ticks()));
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let (app, heard) = (Arc::clone(&app), Arc::clone(&heard));
        clients.spawn(async move {
            let mut rng = Rng::from_state(0x50a4 + client as u64);
            for _ in 0..calls_per_client {
                let org = rng.below(2);
                let customer = rng.below(CUSTOMERS);
                let id = format!("s{customer}");
                let choice = rng.below(100);
                let (route, value, body) = match choice {
                    0..35 => ("/v1/balances.check", 0, json!({"customer_id": id, "feature_id": "words"})),
                    35..65 => {
                        let value = 1 + rng.below(3) as i64;
                        let body = json!({"customer_id": id, "feature_id": "words", "value": value});
                        ("/v1/balances.track", value, body)
                    }
                    65..80 => {
                        // A pooled key always names the same track.
                        let k = rng.below(KEY_POOL);
                        let (customer, value) = (k % CUSTOMERS, 1 + (k % 3) as i64);
                        let body = json!({"customer_id": format!("s{customer}"), "feature_id": "words", "value": value});
                        let key = format!("soak-{k}");
                        let (status, body) = call(&app, org, "/v1/balances.track", body, Some(&key)).await;
                        let mut heard = heard.lock().unwrap();
                        match status {
                            200 => *heard.usage.entry((org, customer)).or_default() += value,
                            409 => assert_eq!(body["code"], "duplicate_idempotency_key", "{body}"),
                            _ => panic!("a keyed track answered {status}: {body}"),
                        }
                        *heard.calls.entry(("/v1/balances.track", status)).or_default() += 1;
                        note_done(&mut heard, total);
                        continue;
                    }
                    _ => ("/v1/customers.get", 0, json!({"customer_id": id})),
                };
                let (status, body) = call(&app, org, route, body, None).await;
                assert_eq!(status, 200, "{route}: {body}");
                let mut heard = heard.lock().unwrap();
                if route == "/v1/balances.track" {
                    *heard.usage.entry((org, customer)).or_default() += value;
                }
                *heard.calls.entry((route, status)).or_default() += 1;
                note_done(&mut heard, total);
            }
        });
    }
    clients.join_all().await;
    let heard = Arc::try_unwrap(heard).unwrap().into_inner().unwrap();

    // Usage: every customer of both orgs, as acknowledged.
    let mut mismatched = Vec::new();
    for org in 0..2 {
        for customer in 0..CUSTOMERS {
            let body = json!({"customer_id": format!("s{customer}")});
            let (status, body) = call(&app, org, "/v1/customers.get", body, None).await;
            assert_eq!(status, 200, "{body}");
            let usage = body["balances"]["words"]["usage"].as_i64().unwrap_or(0);
            let acknowledged = heard.usage.get(&(org, customer)).copied().unwrap_or(0);
            if usage != acknowledged {
                mismatched.push(format!("org {org} s{customer}: {usage}, acknowledged {acknowledged}"));
            }
        }
    }
    assert!(
        mismatched.is_empty(),
        "{} customers off: {:?}",
        mismatched.len(),
        &mismatched[..mismatched.len().min(5)]
    );

    // The metrics agree with the clients.
    let (status, _, text) = get_text(&app, "/metrics").await;
    assert_eq!(status, 200);
    let setup_creates = (2 * CUSTOMERS) as u64;
    // The reads after the creates, and the reads of the check below.
    let gets_after = (4 * CUSTOMERS) as u64;
    for ((route, status), n) in &heard.calls {
        let series =
            format!("cusim_http_requests_total{{route=\"{route}\",method=\"POST\",status=\"{status}\"}}");
        let expected = n + if (*route, *status) == ("/v1/customers.get", 200) { gets_after } else { 0 };
        assert_eq!(sample(&text, &series), Some(expected as f64), "{series}");
    }
    let creates =
        "cusim_http_requests_total{route=\"/v1/customers.get_or_create\",method=\"POST\",status=\"200\"}";
    assert_eq!(sample(&text, creates), Some(setup_creates as f64), "{text}");
    assert!(!text.contains("status=\"5"), "no 5xx: {text}");

    // The second fifth (the first warms threads and allocator arenas)
    // against the last: memory, and CPU per call (which, unlike calls per
    // second, other jobs on the machine do not move), both printed with
    // the calls per second.
    let f = &heard.fifths;
    assert_eq!(f.len(), 6, "{f:?}");
    let rate = |i: usize| (total / 5) as f64 / f[i + 1].0.duration_since(f[i].0).as_secs_f64();
    let ticks = |i: usize| f[i + 1].2.saturating_sub(f[i].2).max(1);
    let (early_rss, last_rss) = (f[2].1, f[5].1);
    eprintln!(
        "soak {label}: {total} calls by {CLIENTS} clients over 2 × {CUSTOMERS} customers in {:.1} s; second fifth against the last: {:.0} → {:.0} calls/s, {} → {} CPU ticks, resident {:.1} → {:.1} MiB ({:+.1}%)",
        f[5].0.duration_since(f[0].0).as_secs_f64(),
        rate(1),
        rate(4),
        ticks(1),
        ticks(4),
        early_rss as f64 / 1048576.0,
        last_rss as f64 / 1048576.0,
        (last_rss as f64 / early_rss as f64 - 1.0) * 100.0
    );
    let allowed = (early_rss / 10).max(4 << 20);
    assert!(last_rss <= early_rss + allowed, "memory grew from {early_rss} to {last_rss} bytes");
    // Clock ticks are 10 ms: the bound leaves room for their grain.
    assert!(ticks(4) <= 2 * ticks(1) + 20, "CPU per call grew: {} ticks, then {}", ticks(1), ticks(4));
}

fn note_done(heard: &mut Heard, total: usize) {
    heard.done += 1;
    if heard.done % (total / 5) == 0 {
        heard.fifths.push((Instant::now(), resident_bytes(), cpu_ticks()));
    }
}

fn two_org_keys() -> Keys {
    let mut keys = Keys::default();
    for (key, org) in ORG_KEYS {
        keys.add(&format!("{key}={org}")).unwrap();
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_the_server_holds_steady_under_a_bounded_soak() {
    let catalog = free_catalog();
    let engine =
        Engine::Memory(MemoryEngine::new(Strategy::Safe, catalog.clone(), 7, cusim_serve::Pacing::default()));
    let app = Arc::new(App::new(engine, two_org_keys(), catalog, Strategy::Safe, Duration::from_secs(10)));
    soak(app, "in memory", 8_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Postgres and Redis: cargo xtask test postgres"]
async fn on_postgres_and_redis_the_server_holds_steady_under_a_bounded_soak() {
    let url = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} must name a server"));
    let schema = format!("serve_soak_{}", std::process::id());
    let settings = cusim_serve::PgSettings {
        database_url: url("DATABASE_URL"),
        redis_url: Some(url("REDIS_URL")),
        schema: schema.clone(),
        pool_size: 16,
        pacing: cusim_serve::Pacing::default(),
    };
    let catalog = free_catalog();
    cusim_pg::schema::create(&settings.database_url, &schema, Strategy::Safe, &catalog).await.unwrap();
    let engine = cusim_serve::PgEngine::start(Strategy::Safe, &catalog, &settings, 11).await.unwrap();
    let app = Arc::new(App::new(
        Engine::Postgres(engine),
        two_org_keys(),
        catalog,
        Strategy::Safe,
        Duration::from_secs(10),
    ));
    soak(Arc::clone(&app), "on Postgres and Redis", 750).await;
    let app = Arc::try_unwrap(app).unwrap_or_else(|_| panic!("no request holds the app"));
    app.engine.shut_down().await;
    if let Ok(redis) = cusim_pg::cache::RedisCache::connect(&url("REDIS_URL"), &schema).await {
        let _ = redis.clear().await;
    }
    cusim_pg::schema::drop(&cusim_pg::schema::Database::named(&url("DATABASE_URL"), &schema).unwrap()).await;
}
