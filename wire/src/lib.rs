//! cusim on the wire: proxies on loopback in front of a real Postgres and
//! a real Redis, which frame a server's traffic into **steps** (a
//! Postgres `Query`, or an extended-protocol batch up to its `Sync` or
//! `Flush`; a Redis command) and either relay each at once (an open gate:
//! every step is reported) or hold each until a controller releases it
//! (a held gate: the controller decides which connection moves next).
//!
//! Within a connection nothing is ever reordered: a connection's next step
//! is not even framed until its step before was released. The startup and
//! authentication of a Postgres connection are relayed unchanged (an
//! `SSLRequest` is answered `N`: the proxy speaks plain TCP on loopback),
//! and the backend's PID is learnt from its `BackendKeyData`, so a
//! controller can ask Postgres whether the connection waits for a lock.
//! A Redis connection's setup commands (`HELLO`, `AUTH`, `SELECT`,
//! `CLIENT`, before any other) are relayed as they come, as a Postgres
//! startup is.

pub mod pg;
mod proxy;
pub mod resp;
pub mod url;

pub use proxy::{Event, Held, HeldReply, Proxy, Release, StepInfo, Store};
