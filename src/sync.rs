//! The synchronisation the free-running in-memory world uses: `std`'s
//! normally, loom's with the `loom` feature (not `--cfg loom`,
//! so that tokio's loom code paths stay off). The loom models then explore
//! every interleaving of the threads that share a world.

#[cfg(feature = "loom")]
pub use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(feature = "loom"))]
pub use std::sync::{Arc, Condvar, Mutex, MutexGuard};
