//! Seeded id generation: the same seed yields the same ids in the same
//! order, on every machine ([`Rng`]).

use crate::rng::Rng;

#[derive(Debug, Clone)]
pub struct IdGen {
    rng: Rng,
}

/// Crockford's base32 alphabet (no i, l, o, u).
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

impl IdGen {
    pub fn new(seed: u64) -> IdGen {
        IdGen { rng: Rng::from_state(seed ^ 0x5eed_c051_0000_0000) }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// `prefix_` followed by 10 characters of Crockford base32.
    pub fn next_id(&mut self, prefix: &str) -> String {
        let mut bits = self.next_u64();
        let mut id = String::with_capacity(prefix.len() + 11);
        id.push_str(prefix);
        id.push('_');
        for _ in 0..10 {
            id.push(ALPHABET[(bits & 31) as usize] as char);
            bits >>= 5;
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_ids_and_different_seeds_differ() {
        let take = |seed| {
            let mut g = IdGen::new(seed);
            (0..5).map(|_| g.next_id("cus")).collect::<Vec<_>>()
        };
        assert_eq!(take(7), take(7));
        assert_ne!(take(7), take(8));
        let ids = take(7);
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
        assert!(ids.iter().all(|id| id.starts_with("cus_") && id.len() == 14));
    }
}
