//! The cost of correctness under contention: creates per second and
//! per-request latency (p50, p99) for legacy, transactional and safe at 1,
//! 8 and 32 concurrent clients, every client creating the same id or each
//! its own; beside them the floor, a bare single-row `INSERT … ON CONFLICT`
//! per client on the same server. The same on the in-memory model (threads
//! over one shared world). Postgres needs `DATABASE_URL`, and the rows with
//! the cache on Redis (`create_postgres_redis`) `REDIS_URL`: `cargo xtask
//! bench contention` starts throwaway servers.
//!
//! Criterion times rounds (every client's request at once); the latency
//! percentiles and error counts are printed per benchmark (lines starting
//! `contention:`) and written to `target/contention.txt`.

#[cfg(madsim)]
fn main() {}

#[cfg(not(madsim))]
criterion::criterion_main!(real::benches);

#[cfg(not(madsim))]
mod real {
    use std::cell::RefCell;
    use std::io::Write;
    use std::rc::Rc;
    use std::sync::{Arc, Barrier, Mutex};
    use std::time::{Duration, Instant};

    use criterion::{criterion_group, Criterion, Throughput};
    use cusim::backend::mem::{poll_once, SharedWorld};
    use cusim::flow::{execute, Request, Strategy};
    use cusim::model::CustomerData;
    use cusim_pg::cache::{CacheStore, RedisCache};
    use cusim_pg::{schema, services_with, PgConn};
    use cusim_sim::corpus::builtin;
    use cusim_sim::drive::stepper::Prepared;
    use sqlx::{Connection, PgConnection};

    const CLIENTS: [usize; 3] = [1, 8, 32];

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Ids {
        Same,
        Distinct,
    }

    impl Ids {
        fn name(self) -> &'static str {
            match self {
                Ids::Same => "same-id",
                Ids::Distinct => "distinct-ids",
            }
        }

        /// The id client `client` of `clients` creates in round `round`:
        /// never one an earlier benchmark on the same schema made.
        fn id(self, clients: usize, round: u64, client: usize) -> String {
            match self {
                Ids::Same => format!("cus_c{clients}_s_{round}"),
                Ids::Distinct => format!("cus_c{clients}_d_{round}_{client}"),
            }
        }
    }

    fn create(id: &str) -> Request {
        let data = CustomerData {
            name: Some("Ann".into()),
            email: Some(format!("{id}@example.com")),
            ..Default::default()
        };
        Request::create(Some(id), data)
    }

    /// Latencies and errors of one benchmark, summarised once it ends.
    #[derive(Default)]
    struct Tally {
        latencies: Vec<Duration>,
        requests: u64,
        errors: u64,
        wall: Duration,
    }

    impl Tally {
        fn report(&self, name: &str) {
            let mut sorted = self.latencies.clone();
            sorted.sort();
            let at = |q: f64| {
                sorted.get(((sorted.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or_default()
            };
            let line = format!(
                "contention: {name}: {} requests, {:.0} creates/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
                self.requests,
                self.requests as f64 / self.wall.as_secs_f64().max(1e-9),
                at(0.50).as_secs_f64() * 1e3,
                at(0.99).as_secs_f64() * 1e3,
                self.errors
            );
            eprintln!("{line}");
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/contention.txt");
            if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
                let _ = writeln!(file, "{line}");
            }
        }
    }

    fn catalog_scenario() -> cusim_sim::input::scenario::Scenario {
        builtin::find("r1-same-id-create").unwrap().scenario().unwrap()
    }

    /// `clients` tasks on one Postgres schema, each with its connection,
    /// all creating at once, round after round; the cache in memory.
    fn postgres(c: &mut Criterion) {
        postgres_with(c, None);
    }

    /// The same with the cache on Redis.
    fn postgres_redis(c: &mut Criterion) {
        let Ok(redis_url) = std::env::var("REDIS_URL") else {
            eprintln!("contention: REDIS_URL is not set; `cargo xtask bench contention` starts a server");
            return;
        };
        postgres_with(c, Some(redis_url));
    }

    fn postgres_with(c: &mut Criterion, redis_url: Option<String>) {
        let Ok(url) = std::env::var("DATABASE_URL") else {
            eprintln!("contention: DATABASE_URL is not set; `cargo xtask bench contention` starts a server");
            return;
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        let scenario = catalog_scenario();
        let (group_name, label) = match redis_url {
            None => ("create_postgres", "postgres"),
            Some(_) => ("create_postgres_redis", "postgres+redis"),
        };
        let mut group = c.benchmark_group(group_name);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        for strategy in Strategy::ALL {
            let database = local
                .block_on(
                    &runtime,
                    schema::create(&url, &format!("bench_{strategy}"), strategy, &scenario.catalog()),
                )
                .unwrap();
            let redis = redis_url.as_ref().map(|redis_url| {
                let namespace = format!("bench_{strategy}");
                let redis = local.block_on(&runtime, RedisCache::connect(redis_url, &namespace)).unwrap();
                local.block_on(&runtime, redis.clear()).unwrap();
                redis
            });
            let cache = redis.clone().map_or_else(CacheStore::default, CacheStore::Redis);
            let shared = services_with(0, strategy.constraints(), cache);
            for clients in CLIENTS {
                let conns: Vec<Rc<PgConn>> = (0..clients)
                    .map(|i| {
                        Rc::new(
                            local
                                .block_on(&runtime, PgConn::connect(&database.options, Rc::clone(&shared), i))
                                .unwrap(),
                        )
                    })
                    .collect();
                for ids in [Ids::Same, Ids::Distinct] {
                    let tally = RefCell::new(Tally::default());
                    let round = RefCell::new(0u64);
                    group.throughput(Throughput::Elements(clients as u64));
                    group.bench_function(format!("{strategy}/{clients}/{}", ids.name()), |b| {
                        b.iter_custom(|iters| {
                            let mut total = Duration::ZERO;
                            for _ in 0..iters {
                                *round.borrow_mut() += 1;
                                let r = *round.borrow();
                                let started = Instant::now();
                                let results = local.block_on(&runtime, async {
                                    let tasks: Vec<_> = conns
                                        .iter()
                                        .enumerate()
                                        .map(|(i, conn)| {
                                            let (conn, request) =
                                                (Rc::clone(conn), create(&ids.id(clients, r, i)));
                                            tokio::task::spawn_local(async move {
                                                let t0 = Instant::now();
                                                let ok = execute(&*conn, strategy, &request).await.is_ok();
                                                (t0.elapsed(), ok)
                                            })
                                        })
                                        .collect();
                                    let mut results = Vec::new();
                                    for task in tasks {
                                        results.push(task.await.unwrap());
                                    }
                                    results
                                });
                                let wall = started.elapsed();
                                total += wall;
                                let mut t = tally.borrow_mut();
                                t.wall += wall;
                                for (latency, ok) in results {
                                    t.latencies.push(latency);
                                    t.requests += 1;
                                    t.errors += u64::from(!ok);
                                }
                            }
                            total
                        })
                    });
                    tally.borrow().report(&format!("{label} {strategy} {clients} clients {}", ids.name()));
                }
            }
            local.block_on(&runtime, schema::drop(&database));
            if let Some(redis) = redis {
                local.block_on(&runtime, redis.clear()).unwrap();
            }
            assert!(shared.borrow().cache_failure.is_none(), "{:?}", shared.borrow().cache_failure);
        }
        group.finish();
    }

    /// The floor: each client a bare `INSERT … ON CONFLICT DO NOTHING` of one row, autocommitted.
    fn postgres_floor(c: &mut Criterion) {
        let Ok(url) = std::env::var("DATABASE_URL") else { return };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        let database = local
            .block_on(
                &runtime,
                schema::create(&url, "bench_floor", Strategy::Safe, &catalog_scenario().catalog()),
            )
            .unwrap();
        local.block_on(&runtime, async {
            let mut conn = PgConnection::connect_with(&database.options).await.unwrap();
            sqlx::query("CREATE TABLE floor (id text PRIMARY KEY)").execute(&mut conn).await.unwrap();
        });
        let mut group = c.benchmark_group("insert_floor_postgres");
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        for clients in CLIENTS {
            let conns: Vec<Rc<tokio::sync::Mutex<PgConnection>>> = (0..clients)
                .map(|_| {
                    let conn =
                        local.block_on(&runtime, PgConnection::connect_with(&database.options)).unwrap();
                    Rc::new(tokio::sync::Mutex::new(conn))
                })
                .collect();
            for ids in [Ids::Same, Ids::Distinct] {
                let tally = RefCell::new(Tally::default());
                let round = RefCell::new(0u64);
                group.throughput(Throughput::Elements(clients as u64));
                group.bench_function(format!("{clients}/{}", ids.name()), |b| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            *round.borrow_mut() += 1;
                            let r = *round.borrow();
                            let started = Instant::now();
                            let latencies = local.block_on(&runtime, async {
                                let tasks: Vec<_> = conns
                                    .iter()
                                    .enumerate()
                                    .map(|(i, conn)| {
                                        let (conn, id) = (Rc::clone(conn), ids.id(clients, r, i));
                                        tokio::task::spawn_local(async move {
                                            let t0 = Instant::now();
                                            sqlx::query(
                                                "INSERT INTO floor (id) VALUES ($1) ON CONFLICT DO NOTHING",
                                            )
                                            .bind(id)
                                            .execute(&mut *conn.lock().await)
                                            .await
                                            .unwrap();
                                            t0.elapsed()
                                        })
                                    })
                                    .collect();
                                let mut latencies = Vec::new();
                                for task in tasks {
                                    latencies.push(task.await.unwrap());
                                }
                                latencies
                            });
                            let wall = started.elapsed();
                            total += wall;
                            let mut t = tally.borrow_mut();
                            t.wall += wall;
                            t.requests += latencies.len() as u64;
                            t.latencies.extend(latencies);
                        }
                        total
                    })
                });
                tally.borrow().report(&format!("postgres floor {clients} clients {}", ids.name()));
            }
        }
        group.finish();
        local.block_on(&runtime, schema::drop(&database));
    }

    /// The same creates on the in-memory model: `clients` threads over one
    /// shared world, released together each round.
    fn mem(c: &mut Criterion) {
        let mut group = c.benchmark_group("create_mem");
        group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
        for strategy in Strategy::ALL {
            let prepared = Prepared::new(&catalog_scenario(), strategy).unwrap();
            for clients in CLIENTS {
                for ids in [Ids::Same, Ids::Distinct] {
                    // Each round on a fresh world (the model scans its tables).
                    let world: Arc<Mutex<Option<Arc<SharedWorld>>>> = Arc::default();
                    let start = Arc::new(Barrier::new(clients + 1));
                    let done = Arc::new(Barrier::new(clients + 1));
                    let round = Arc::new(Mutex::new((0u64, false)));
                    let results = Arc::new(Mutex::new(Vec::new()));
                    let workers: Vec<_> = (0..clients)
                        .map(|i| {
                            let (world, start, done, round, results) = (
                                Arc::clone(&world),
                                Arc::clone(&start),
                                Arc::clone(&done),
                                Arc::clone(&round),
                                Arc::clone(&results),
                            );
                            std::thread::spawn(move || loop {
                                start.wait();
                                let (r, stop) = *round.lock().unwrap();
                                if stop {
                                    return;
                                }
                                let shared = world.lock().unwrap().clone().expect("a world for the round");
                                let conn = SharedWorld::connect(&shared, i);
                                let request = create(&ids.id(clients, r, i));
                                let t0 = Instant::now();
                                let mut future = std::pin::pin!(execute(&conn, strategy, &request));
                                let ok = loop {
                                    if let std::task::Poll::Ready(result) = poll_once(future.as_mut()) {
                                        break result.is_ok();
                                    }
                                };
                                results.lock().unwrap().push((t0.elapsed(), ok));
                                done.wait();
                            })
                        })
                        .collect();
                    let mut tally = Tally::default();
                    group.throughput(Throughput::Elements(clients as u64));
                    group.bench_function(format!("{strategy}/{clients}/{}", ids.name()), |b| {
                        b.iter_custom(|iters| {
                            let mut total = Duration::ZERO;
                            for _ in 0..iters {
                                round.lock().unwrap().0 += 1;
                                *world.lock().unwrap() = Some(SharedWorld::new(prepared.world()));
                                let started = Instant::now();
                                start.wait();
                                done.wait();
                                let wall = started.elapsed();
                                total += wall;
                                tally.wall += wall;
                                for (latency, ok) in results.lock().unwrap().drain(..) {
                                    tally.latencies.push(latency);
                                    tally.requests += 1;
                                    tally.errors += u64::from(!ok);
                                }
                            }
                            total
                        })
                    });
                    round.lock().unwrap().1 = true;
                    start.wait();
                    for worker in workers {
                        worker.join().unwrap();
                    }
                    tally.report(&format!("mem {strategy} {clients} clients {}", ids.name()));
                }
            }
        }
        group.finish();
    }

    criterion_group!(benches, postgres_floor, postgres, postgres_redis, mem);
}
