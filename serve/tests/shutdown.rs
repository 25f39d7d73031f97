//! A server stopped while a request is in flight answers that request
//! before it exits, and takes no new connection.

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
    let mut keys = Keys::default();
    keys.add(&format!("{}=org_1", support::KEY)).unwrap();
    let config = Config {
        strategy: Strategy::Safe,
        listen: "127.0.0.1:0".parse().unwrap(),
        catalog: support::free_catalog(),
        keys,
        postgres: None,
        // Each operation of the request waits 50 ms: it is in flight a while.
        pacing: cusim_serve::Pacing::fixed(Duration::from_millis(50)),
        timeout: Duration::from_secs(30),
        generation: cusim::model::Generation::Current,
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
