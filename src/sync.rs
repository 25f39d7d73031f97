//! The synchronisation the free-running in-memory world uses: `std`'s
//! normally, loom's under `--cfg cusim_loom` (a cfg of this project's own,
//! so that tokio's loom code paths stay off). The loom models then explore
//! every interleaving of the threads that share a world.

#[cfg(cusim_loom)]
pub use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(cusim_loom))]
pub use std::sync::{Arc, Condvar, Mutex, MutexGuard};
