//! The `mem` backend: an in-memory model of Postgres ([`database`]), the
//! full-customer cache and Stripe ([`services`]) and the clocks, together
//! the [`World`]; and the connections requests use to reach it
//! ([`MemConn`]).

pub mod clock;
pub mod conn;
pub mod database;
pub mod ids;
pub mod services;
pub mod shared;
pub mod world;

pub use clock::SharedClock;
pub use conn::{poll_once, run_alone, FaultAction, Finished, MemConn, Tape};
pub use database::store::{Blocked, LockMode, TxnId};
pub use database::{
    key_applied, Access, DbKey, Deducted, Deductions, IsolationBreach, Name, RequestId, UsageRow,
    APPLIED_KEY_WINDOW_MS,
};
pub use services::{Cache, Stripe, StripeCustomer};
pub use shared::SharedWorld;
pub use world::{Fault, World};
