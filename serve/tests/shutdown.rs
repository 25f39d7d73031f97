//! A server stopped while a request is in flight answers that request
//! before it exits, and takes no new connection; a connection that sends
//! no headers is closed after the header timeout, and past the cap on
//! connections a new one waits until another closes.

mod support;

use std::time::Duration;

use cusim::flow::Strategy;
use cusim_serve::{Config, Keys};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// One HTTP/1.1 request on a connection of its own; the raw answer.
async fn raw_post(addr: std::net::SocketAddr, path: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("the server listens");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        support::KEY,
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_requests_in_flight_finish() {
    // Each operation of the request waits 50 ms: it is in flight a while.
    let pacing = cusim_serve::Pacing::fixed(Duration::from_millis(50));
    let Started { addr, app, stop, server } =
        start(pacing, cusim_serve::MAX_CONNECTIONS, cusim_serve::HEADER_TIMEOUT).await;
    let client = tokio::spawn(raw_post(addr, "/v1/customers.get_or_create", r#"{"customer_id": "late"}"#));
    while app.in_flight() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    stop.send(()).unwrap();
    let answer = client.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""id":"late""#), "{answer}");
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap()
        .expect("the server stops cleanly");
    assert!(TcpStream::connect(addr).await.is_err(), "no new connection after shutdown");
}

/// A server running on a thread of its own.
struct Started {
    addr: std::net::SocketAddr,
    app: std::sync::Arc<cusim_serve::App>,
    stop: oneshot::Sender<()>,
    server: std::thread::JoinHandle<Result<(), cusim_serve::ServeError>>,
}

/// A server (in memory, safe) with `pacing`, `max_connections` and
/// `header_timeout`.
async fn start(pacing: cusim_serve::Pacing, max_connections: usize, header_timeout: Duration) -> Started {
    let mut keys = Keys::default();
    keys.add(&format!("{}=org_1", support::KEY)).unwrap();
    let config = Config {
        strategy: Strategy::Safe,
        listen: "127.0.0.1:0".parse().unwrap(),
        catalog: support::free_catalog(),
        keys,
        postgres: None,
        pacing,
        timeout: Duration::from_secs(30),
        generation: cusim::model::Generation::Current,
        max_connections,
        header_timeout,
    };
    let (ready, started) = oneshot::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    // `serve` runs on a runtime of its own (its future is not `Send`:
    // the Postgres engine's start holds sqlx's borrows across awaits).
    let server = std::thread::spawn(move || {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(cusim_serve::serve(
            config,
            move |addr, app| {
                let _ = ready.send((addr, app.clone()));
            },
            async move {
                let _ = stopped.await;
            },
        ))
    });
    let (addr, app) = started.await.expect("the server starts");
    Started { addr, app, stop, server }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_no_headers_is_closed_after_the_header_timeout() {
    let Started { addr, stop, server, .. } =
        start(cusim_serve::Pacing::default(), 16, Duration::from_millis(200)).await;
    // Timed from before the connect: the server's timer starts when it
    // accepts, which may be before the client's connect returns (a loaded
    // machine may run the server first), never before the connect began.
    let opened = std::time::Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut answer = Vec::new();
    // The server closes it (whatever it writes first); the limit here only
    // keeps a broken server from hanging the test.
    tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut answer))
        .await
        .expect("the server closed the silent connection")
        .ok();
    assert!(opened.elapsed() >= Duration::from_millis(200), "closed before its timeout");
    // A connection that sends its request in time is answered.
    let answer = raw_post(addr, "/v1/customers.get_or_create", r#"{"customer_id": "ann"}"#).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stop.send(()).unwrap();
    tokio::task::spawn_blocking(move || server.join().unwrap()).await.unwrap().expect("stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cap_a_new_connection_waits_until_one_closes() {
    let Started { addr, stop, server, .. } =
        start(cusim_serve::Pacing::default(), 2, Duration::from_secs(60)).await;
    // Two connections that send nothing hold both places.
    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    let third = tokio::spawn(raw_post(addr, "/v1/customers.get_or_create", r#"{"customer_id": "bo"}"#));
    // While both are held the third is not served (a bounded look: its
    // answer would come in well under a millisecond).
    let waited = tokio::time::timeout(Duration::from_millis(300), async {
        while !third.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_err(), "a third connection was served past the cap of two");
    // One closes: the third is accepted and answered.
    drop(first);
    let answer = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("served once a place frees")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stop.send(()).unwrap();
    tokio::task::spawn_blocking(move || server.join().unwrap()).await.unwrap().expect("stops cleanly");
}
