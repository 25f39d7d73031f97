//! Every Postgres test of the flows, in one test binary: one link and one
//! set of sqlx and tokio instantiations instead of one per file. Each file
//! is a module, so a test is named `differential::…`; `cargo xtask test`
//! runs them in several jobs by those names (`pg/tests/concurrent.rs`, the
//! free-running rounds, with only its kind). They need `DATABASE_URL` and
//! `REDIS_URL` (`cargo xtask test postgres` starts throwaway servers).

#[path = "../../sim/tests/support/generate.rs"]
#[allow(dead_code)]
mod generate;
mod support;

mod concurrent;
mod differential;
mod operations;
mod redis_cache;
mod replay;
mod scripts;
mod sequential;
mod wire;
