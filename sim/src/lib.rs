//! cusim-sim: the harness. Scenarios, the stepper and its schedulers, the
//! invariant oracle, traces and replay, and the `cusim` command.

pub mod builtin;
pub mod explain;
pub mod explore;
pub mod html;
pub mod oracle;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod races;
pub mod regression;
pub mod scenario;
pub mod schedule;
pub mod shrink;
pub mod stepper;
pub mod trace;
#[cfg(madsim)]
pub mod virtual_time;
