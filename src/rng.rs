//! The one seeded generator of the project, for ids (the model's
//! `IdGen`) and for the harness's schedulers.
//!
//! It is `rand_xoshiro`'s SplitMix64: a published algorithm, whose output
//! the crate keeps the same on every platform and across its releases (a
//! change of output is a breaking release), so a seed names the same ids
//! and the same schedules on every machine, for good. Ranges are reduced
//! here ([`Rng::below`]) rather than by a `rand` distribution, whose
//! algorithm may change between releases.

use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::SplitMix64;
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct Rng(SplitMix64);

/// A generator is written as the next number it gives: SplitMix64's
/// output is a bijection of its state (a step adds a constant, then a
/// mix that can be undone), so two generators that would give the same
/// next number are in the same state.
impl Serialize for Rng {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.clone().next_u64().serialize(serializer)
    }
}

impl Rng {
    /// A generator whose state starts at `state`.
    pub fn from_state(state: u64) -> Rng {
        Rng(SplitMix64::from_seed(state.to_le_bytes()))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (n > 0), up to the modulo's bias (below 2^-50 for
    /// the few choices a decision has).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published SplitMix64 sequence (Vigna's reference code) from
    /// state 0: the crate's generator is the algorithm, not a look-alike.
    #[test]
    fn it_is_splitmix64() {
        let mut rng = Rng::from_state(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(rng.next_u64(), 0x06c4_5d18_8009_454f);
    }
}
