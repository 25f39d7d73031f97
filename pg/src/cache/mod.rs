//! The cache beside Postgres: the in-memory model (`mem::Cache`), or a real
//! Redis server running the same operations as Lua scripts. Both answer
//! every operation alike (`tests/redis_cache.rs` checks it, operation by
//! operation and key by key); the flows cannot tell them apart.

mod redis_cache;

pub use redis_cache::{CacheSnapshot, RedisCache, RedisError, SlotState, GARBAGE_SLACK_MS};

use cusim::backend::mem::Cache;

/// Where a run's cache lives. (One per run: its size does not matter.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum CacheStore {
    Memory(Cache),
    Redis(RedisCache),
}

impl Default for CacheStore {
    fn default() -> CacheStore {
        CacheStore::Memory(Cache::default())
    }
}

impl CacheStore {
    /// The Redis cache, if the cache is on Redis (a handle: clones share
    /// the connection).
    pub fn redis(&self) -> Option<RedisCache> {
        match self {
            CacheStore::Memory(_) => None,
            CacheStore::Redis(redis) => Some(redis.clone()),
        }
    }
}
