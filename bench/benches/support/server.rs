//! `cusim serve --strategy safe` in process, on a runtime of its own, as
//! the benchmarks run it; stopped when dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cusim::flow::Strategy;
use cusim::model::{Catalog, Product, ProductKind};
use cusim_serve::{App, Config, Keys, PgSettings};

pub struct Server {
    pub addr: SocketAddr,
    pub app: Option<Arc<App>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Serves `catalog` to org_1 with the secret key `key`, in memory or
    /// on `postgres`.
    pub fn start(key: &str, catalog: Catalog, postgres: Option<PgSettings>) -> Server {
        let mut keys = Keys::default();
        keys.add(&format!("{key}=org_1")).unwrap();
        let config = Config {
            strategy: Strategy::Safe,
            listen: "127.0.0.1:0".parse().unwrap(),
            catalog,
            keys,
            postgres,
            pacing: cusim_serve::Pacing::default(),
            timeout: Duration::from_secs(30),
            generation: cusim::model::Generation::Current,
            max_connections: cusim_serve::MAX_CONNECTIONS,
            header_timeout: cusim_serve::HEADER_TIMEOUT,
        };
        let (ready, started) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
            let served = runtime.block_on(cusim_serve::serve(
                config,
                move |addr, app| {
                    let _ = ready.send((addr, Arc::clone(app)));
                },
                async move {
                    let _ = stopped.await;
                },
            ));
            if let Err(error) = served {
                eprintln!("bench: the server failed: {error}");
            }
        });
        let (addr, app) = started.recv().expect("the server starts");
        Server { addr, app: Some(app), stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The server shuts its engine down once it holds the only handle.
        self.app.take();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One free default product granting `words`.
pub fn free_catalog(words: i64) -> Catalog {
    let free = Product {
        id: "free".into(),
        group: "main".into(),
        is_default: true,
        kind: ProductKind::Free,
        features: [("words".to_owned(), words)].into_iter().collect(),
    };
    Catalog::new(vec![free], false)
}
