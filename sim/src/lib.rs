//! cusim-sim: the harness.
//!
//! - [`input`]: scenarios (SPEC §7) and schedules (SPEC §5);
//! - [`drive`]: what moves the flows: the stepper, free runs, madsim's
//!   virtual time, and the gated replay on Postgres;
//! - [`judge`]: the observation of a finished run, the oracle (SPEC §6)
//!   and the race classifier (SPEC §8);
//! - [`explore`]: schedulers, the exploration loop and shrinking;
//! - [`corpus`]: the built-in scenarios and the regression corpus;
//! - [`report`]: text traces, HTML pages and `cusim explain`;
//! - `check` (feature `check`): the black-box checker of a live server;
//! - `live` (feature `drive`): `cusim drive`, a real server's statements
//!   held at the wire and let through as a scheduler decides;
//! - [`claims`]: the ledger the claim-bearing tests write.
//!
//! The `cusim` command (`src/cli/`) is built on these.

#[cfg(feature = "check")]
pub mod check;
pub mod claims;
pub mod corpus;
pub mod drive;
pub mod explore;
pub mod input;
pub mod judge;
#[cfg(feature = "drive")]
pub mod live;
pub mod report;
