//! What a run is given: a scenario (SPEC §7) and a schedule (SPEC §5).

pub mod scenario;
pub mod schedule;
