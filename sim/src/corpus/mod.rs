//! The scenarios and cases the project ships: the built-in scenarios with
//! what SPEC §8 expects of each, and the regression corpus's file format.

pub mod builtin;
pub mod regression;
