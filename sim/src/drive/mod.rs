//! The drivers: what moves the flows. The [`stepper`] decides every
//! interleaving on the in-memory world; [`free`] judges runs that moved
//! on their own (loom's threads, madsim's tasks); [`virtual_time`] runs
//! the flows in madsim's virtual time; [`postgres`] follows a stepper
//! schedule on a real server in lockstep. Each hands what it saw to
//! [`crate::judge`] as an [`Observation`](crate::judge::Observation).

pub mod free;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod stepper;
#[cfg(madsim)]
pub mod virtual_time;
