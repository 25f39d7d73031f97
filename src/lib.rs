//! cusim's reference implementation of a usage-billing server's
//! "create customer" flow: the domain ([`model`]), the flows for each
//! strategy ([`flow`]), and the backends they run on ([`backend`]).

pub mod backend;
pub mod fingerprint;
pub mod flow;
pub mod model;
pub mod rng;
pub mod sync;
