//! The `mem` backend: an in-memory model of Postgres, the full-customer
//! cache and Stripe ([`World`]), and the connections requests use to reach
//! it ([`MemConn`]).

pub mod conn;
pub mod ids;
pub mod services;
pub mod shared;
pub mod store;
pub mod world;

pub use conn::{poll_once, run_alone, FaultAction, Finished, MemConn};
pub use services::{Cache, Stripe, StripeCustomer};
pub use shared::SharedWorld;
pub use store::{Blocked, LockMode, TxnId};
pub use world::{Constraints, Fault, IsolationBreach, RequestId, SharedClock, World};
