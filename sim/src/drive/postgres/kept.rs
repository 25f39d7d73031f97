//! What replays on one schema in a row keep from run to run, on each
//! thread: the async runtime, and the connections of a run that settled,
//! idle. Opening a connection starts a server process, which costs the
//! server more than a whole replay's statements; a run on a schema it
//! empties ([`super::Target::reuse_schema`]) takes these first.
//!
//! A kept connection holds nothing: it comes from a run that settled (no
//! statement in flight) and has no transaction open, and the flows take
//! their advisory locks for a transaction only. What else a session keeps
//! is the same for every run: its schema (search path and application
//! name, by the key it is kept under), its `deadlock_timeout`, and the
//! statements it has prepared.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use sqlx::PgConnection;
use tokio::runtime::Runtime;

use super::PgReplayError;

/// Idle connections by (server URL, schema). The connections are tied to
/// the runtime's I/O driver: both live as long as the thread.
#[derive(Default)]
struct Kept {
    // Before the runtime: dropped first.
    idle: BTreeMap<(String, String), Vec<PgConnection>>,
    runtime: Option<Rc<Runtime>>,
}

thread_local! {
    static KEPT: RefCell<Kept> = RefCell::new(Kept::default());
}

/// A current-thread runtime with every driver.
pub(super) fn new_runtime() -> Result<Runtime, PgReplayError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PgReplayError::Server(format!("cannot start the async runtime: {e}")))
}

/// This thread's runtime for replays that keep their connections.
pub(super) fn runtime() -> Result<Rc<Runtime>, PgReplayError> {
    KEPT.with(|kept| {
        let mut kept = kept.borrow_mut();
        if let Some(runtime) = &kept.runtime {
            return Ok(Rc::clone(runtime));
        }
        let runtime = Rc::new(new_runtime()?);
        kept.runtime = Some(Rc::clone(&runtime));
        Ok(runtime)
    })
}

/// The idle connections kept for `schema` on `url` (taken: a run owns them).
pub(super) fn take(url: &str, schema: &str) -> Vec<PgConnection> {
    KEPT.with(|kept| kept.borrow_mut().idle.remove(&(url.to_owned(), schema.to_owned())).unwrap_or_default())
}

/// Keeps `connections` for the next run on `schema` on `url`.
pub(super) fn put(url: &str, schema: &str, connections: Vec<PgConnection>) {
    KEPT.with(|kept| {
        kept.borrow_mut().idle.entry((url.to_owned(), schema.to_owned())).or_default().extend(connections);
    });
}
