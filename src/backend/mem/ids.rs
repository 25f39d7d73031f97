//! Seeded id generation: the same seed yields the same ids in the same
//! order, on every machine ([`Rng`]).
//!
//! Each request draws from a stream of its own (its start is drawn from
//! the seed and the request's number), so the ids a request gets do not
//! depend on how its steps interleave with other requests': two inserts
//! of different requests commute, which the exhaustive scheduler's
//! reduction relies on.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::rng::Rng;

#[derive(Debug, Clone, Serialize)]
pub struct IdGen {
    seed: u64,
    /// Each request's stream, once it has drawn.
    streams: BTreeMap<usize, Rng>,
}

/// Crockford's base32 alphabet (no i, l, o, u).
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

impl IdGen {
    pub fn new(seed: u64) -> IdGen {
        IdGen { seed, streams: BTreeMap::new() }
    }

    /// The next number of `request`'s stream.
    pub fn next_u64(&mut self, request: usize) -> u64 {
        let seed = self.seed;
        self.streams
            .entry(request)
            .or_insert_with(|| {
                let start = Rng::from_state(seed ^ 0x5eed_c051_0000_0000 ^ request as u64).next_u64();
                Rng::from_state(start)
            })
            .next_u64()
    }

    /// Drops `request`'s stream: it has ended and draws no more (a
    /// long-running server keeps only the streams of requests in flight).
    pub fn forget(&mut self, request: usize) {
        self.streams.remove(&request);
    }

    /// `prefix_` followed by 10 characters of Crockford base32, from
    /// `request`'s stream.
    pub fn next_id(&mut self, request: usize, prefix: &str) -> String {
        let mut bits = self.next_u64(request);
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
            (0..5).map(|n| g.next_id(n % 2, "cus")).collect::<Vec<_>>()
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

    #[test]
    fn a_request_draws_the_same_ids_whatever_the_others_draw() {
        let mut alone = IdGen::new(7);
        let mut mixed = IdGen::new(7);
        mixed.next_id(0, "cus");
        mixed.next_id(2, "cus");
        assert_eq!(alone.next_id(1, "cus"), mixed.next_id(1, "cus"));
        assert_eq!(alone.next_id(1, "cus"), mixed.next_id(1, "cus"));
        assert_ne!(alone.next_id(3, "cus"), alone.next_id(4, "cus"));
    }
}
