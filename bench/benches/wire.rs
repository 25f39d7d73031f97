//! The cost of the wire proxies `cusim drive` puts between a server and
//! its stores: one statement (`SELECT $1::int4`, extended protocol, over
//! sqlx) and one Redis `GET`, each sent straight to the server, through a
//! proxy whose gate is open, and through a proxy that holds every step
//! until a controller task lets it go (what a drive's decision costs at
//! the wire, quiet period aside). Needs `DATABASE_URL` and `REDIS_URL`:
//! `cargo xtask bench wire` starts throwaway servers.

#[cfg(madsim)]
fn main() {}

#[cfg(not(madsim))]
criterion::criterion_main!(real::benches);

#[cfg(not(madsim))]
mod real {
    use criterion::{criterion_group, Criterion};
    use cusim_wire::url::ServerUrl;
    use cusim_wire::{Event, Proxy, Release, Store};
    use sqlx::{Connection, PgConnection};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::runtime::Runtime;
    use tokio::sync::mpsc;

    /// How the client reaches the server.
    #[derive(Clone, Copy)]
    enum Path {
        Direct,
        Open,
        Held,
    }

    impl Path {
        const ALL: [Path; 3] = [Path::Direct, Path::Open, Path::Held];

        fn name(self) -> &'static str {
            match self {
                Path::Direct => "direct",
                Path::Open => "proxy-open",
                Path::Held => "proxy-held-and-released",
            }
        }
    }

    /// A proxy for `path` in front of `upstream`, with a controller that
    /// lets every held step go at once; `None` for a direct path.
    async fn proxy(store: Store, upstream: &str, path: Path) -> Option<Proxy> {
        if let Path::Direct = path {
            return None;
        }
        let (tx, mut events) = mpsc::unbounded_channel();
        let proxy = Proxy::start(store, upstream, tx).await.expect("a proxy listens");
        proxy.set_gated(matches!(path, Path::Held));
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let Event::Held(held) = event {
                    held.release(Release::Forward);
                }
            }
        });
        Some(proxy)
    }

    fn statement(c: &mut Criterion) {
        let url =
            std::env::var("DATABASE_URL").expect("DATABASE_URL: cargo xtask bench wire starts a server");
        let server = ServerUrl::parse(&url, &["postgres", "postgresql"], 5432).expect("a Postgres URL");
        let runtime = Runtime::new().expect("a runtime");
        let mut group = c.benchmark_group("wire_statement");
        for path in Path::ALL {
            let (_proxy, mut conn) = runtime.block_on(async {
                let proxy = proxy(Store::Postgres, &server.upstream, path).await;
                let through = proxy.as_ref().map_or(url.clone(), |p| server.through(p.addr()));
                let conn = PgConnection::connect(&through).await.expect("connects");
                (proxy, conn)
            });
            group.bench_function(path.name(), |b| {
                b.iter(|| {
                    runtime.block_on(async {
                        let n: i32 =
                            sqlx::query_scalar("SELECT $1::int4").bind(7).fetch_one(&mut conn).await.unwrap();
                        assert_eq!(n, 7);
                    })
                })
            });
        }
        group.finish();
    }

    fn command(c: &mut Criterion) {
        let url = std::env::var("REDIS_URL").expect("REDIS_URL: cargo xtask bench wire starts a server");
        let server = ServerUrl::parse(&url, &["redis"], 6379).expect("a Redis URL");
        let password = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@'))
            .map(|(auth, _)| auth.trim_start_matches(':').to_owned());
        let runtime = Runtime::new().expect("a runtime");
        let mut group = c.benchmark_group("wire_redis_command");
        for path in Path::ALL {
            let (_proxy, mut stream) = runtime.block_on(async {
                let proxy = proxy(Store::Redis, &server.upstream, path).await;
                let addr = proxy.as_ref().map_or(server.upstream.clone(), |p| p.addr().to_string());
                let mut stream = TcpStream::connect(addr).await.expect("connects");
                if let Some(password) = &password {
                    let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n", password.len());
                    stream.write_all(auth.as_bytes()).await.unwrap();
                    let mut ok = [0u8; 5];
                    stream.read_exact(&mut ok).await.unwrap();
                    assert_eq!(&ok, b"+OK\r\n");
                }
                (proxy, stream)
            });
            group.bench_function(path.name(), |b| {
                b.iter(|| {
                    runtime.block_on(async {
                        stream.write_all(b"*2\r\n$3\r\nGET\r\n$12\r\ncusim:absent\r\n").await.unwrap();
                        let mut nil = [0u8; 5];
                        stream.read_exact(&mut nil).await.unwrap();
                        assert_eq!(&nil, b"$-1\r\n");
                    })
                })
            });
        }
        group.finish();
    }

    criterion_group!(benches, statement, command);
}
