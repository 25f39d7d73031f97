//! The two services beside the database, modelled in memory: the
//! full-customer cache and Stripe. The `mem` world and the Postgres
//! backend both use these (there is no Redis or Stripe here: the races are
//! in how the flows use them, and these models keep their semantics).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::backend::{
    CacheKey, CacheRead, CacheStamp, CacheWriteMode, CacheWriteOutcome, DeductOutcome, KeyClaim, StripeError,
    StripeParams,
};
use crate::model::{FullCustomer, Scope};

use super::ids::IdGen;

/// The modelled server's stale-write guard lives 1 s.
pub const GUARD_TTL_MS: u64 = 1_000;
/// The modelled server keeps a full customer cached for 3 days.
pub const CACHE_TTL_MS: u64 = 3 * 24 * 60 * 60 * 1_000;
/// Stripe's search finds a customer this long after its creation (its
/// documented freshness: "typically within a minute").
pub const STRIPE_SEARCH_LAG_MS: u64 = 60 * 1_000;
/// Stripe remembers an idempotency key for 24 h.
pub const STRIPE_IDEMPOTENCY_WINDOW_MS: u64 = 24 * 60 * 60 * 1_000;

/// One cache key: its entry, its invalidation count and the stale-write guard.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CacheSlot {
    pub entry: Option<FullCustomer>,
    /// When the entry's TTL runs out (it is gone from then on).
    pub expires_at_ms: u64,
    /// Invalidations so far; never expires (a deployment must keep it:
    /// no TTL, and an eviction policy that spares keys without one).
    pub epoch: u64,
    pub guard: Option<Guard>,
}

/// Set by an invalidation at logical time `seq`, stamped `set_at_ms` by
/// the invalidating instance's clock: until `expires_at_ms` (true time),
/// a write whose read was stamped `(time_ms, seq)` at or before
/// `(set_at_ms, seq)` is stale. With every clock right this is "the read
/// came before the invalidation"; a skewed clock can make a stale read
/// look newer, as in the modelled server, which compares hosts' clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Guard {
    pub seq: u64,
    pub set_at_ms: u64,
    pub expires_at_ms: u64,
}

/// The idempotency middleware keeps a key 24 h.
pub const IDEMPOTENCY_KEY_TTL_MS: u64 = 24 * 60 * 60 * 1_000;

/// The full-customer cache, keyed by `(org, env, id)`, and the idempotency
/// middleware's keys, which live in the same store.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cache {
    slots: BTreeMap<CacheKey, CacheSlot>,
    /// Claimed idempotency keys, per `(org, env, key)`: when each expires.
    keys: BTreeMap<(Scope, String), u64>,
}

impl CacheSlot {
    /// The entry, unless its TTL has run out by `now_ms`.
    pub fn live(&self, now_ms: u64) -> Option<&FullCustomer> {
        self.entry.as_ref().filter(|_| now_ms < self.expires_at_ms)
    }

    fn live_mut(&mut self, now_ms: u64) -> Option<&mut FullCustomer> {
        self.entry.as_mut().filter(|_| now_ms < self.expires_at_ms)
    }
}

impl Cache {
    /// A read at logical time `seq` and virtual time `now_ms`.
    pub fn read(&self, key: &CacheKey, seq: u64, now_ms: u64) -> CacheRead {
        let slot = self.slots.get(key);
        CacheRead {
            entry: slot.and_then(|s| s.live(now_ms).cloned()),
            stamp: CacheStamp { seq, epoch: slot.map_or(0, |s| s.epoch), time_ms: now_ms },
        }
    }

    /// `SET key NX PX 24h`: claims `key` unless a live claim holds it.
    pub fn claim_key(&mut self, scope: &Scope, key: &str, now_ms: u64) -> KeyClaim {
        let entry = (scope.clone(), key.to_owned());
        if self.keys.get(&entry).is_some_and(|expires| now_ms < *expires) {
            return KeyClaim::Taken;
        }
        self.keys.insert(entry, now_ms.saturating_add(IDEMPOTENCY_KEY_TTL_MS));
        KeyClaim::Claimed
    }

    /// `DEL key`: the key is free again.
    pub fn release_key(&mut self, scope: &Scope, key: &str) {
        self.keys.remove(&(scope.clone(), key.to_owned()));
    }

    /// The key vanishes (evicted, or expired early): no invalidation is
    /// counted and no guard is set.
    pub fn evict(&mut self, key: &CacheKey) {
        if let Some(slot) = self.slots.get_mut(key) {
            slot.entry = None;
        }
    }

    /// `CACHE_EXISTS` unless overwriting; `STALE_WRITE` when an invalidation
    /// came after the stamp's read (by the guard, or for versioned writes by
    /// the invalidation counter).
    pub fn write(
        &mut self,
        key: &CacheKey,
        value: &FullCustomer,
        stamp: CacheStamp,
        mode: CacheWriteMode,
        now_ms: u64,
    ) -> CacheWriteOutcome {
        let slot = self.slots.entry(key.clone()).or_default();
        let stale = match mode {
            CacheWriteMode::Versioned => slot.epoch != stamp.epoch,
            CacheWriteMode::Overwrite | CacheWriteMode::SetIfAbsent => slot.guard.is_some_and(|g| {
                now_ms < g.expires_at_ms && (g.set_at_ms, g.seq) >= (stamp.time_ms, stamp.seq)
            }),
        };
        if stale {
            return CacheWriteOutcome::Stale;
        }
        if mode != CacheWriteMode::Overwrite && slot.live(now_ms).is_some() {
            return CacheWriteOutcome::Exists;
        }
        slot.entry = Some(value.clone());
        slot.expires_at_ms = now_ms.saturating_add(CACHE_TTL_MS);
        CacheWriteOutcome::Written
    }

    /// Deletes the entry, counts the invalidation and sets the guard,
    /// stamped `at_ms` by the invalidating instance's clock.
    pub fn invalidate(&mut self, key: &CacheKey, seq: u64, at_ms: u64, now_ms: u64) {
        let slot = self.slots.entry(key.clone()).or_default();
        slot.entry = None;
        slot.epoch += 1;
        slot.guard =
            Some(Guard { seq, set_at_ms: at_ms, expires_at_ms: now_ms.saturating_add(GUARD_TTL_MS) });
    }

    /// Adds `value` to the cached usage of the customer `internal_id` (the
    /// entry keeps its TTL).
    pub fn deduct(
        &mut self,
        key: &CacheKey,
        internal_id: &str,
        feature_id: &str,
        value: i64,
        now_ms: u64,
    ) -> DeductOutcome {
        match self.slots.get_mut(key).and_then(|s| s.live_mut(now_ms)) {
            Some(full) if full.customer.internal_id == internal_id => {
                let balance = full.balances.entry(feature_id.to_owned()).or_default();
                balance.usage += value;
                DeductOutcome::Applied { usage: balance.usage }
            }
            _ => DeductOutcome::CacheMissing,
        }
    }

    /// The cached absolute usage of one feature of customer `internal_id`.
    pub fn usage(&self, key: &CacheKey, internal_id: &str, feature_id: &str, now_ms: u64) -> Option<i64> {
        self.slots
            .get(key)
            .and_then(|s| s.live(now_ms))
            .filter(|full| full.customer.internal_id == internal_id)
            .map(|full| full.balances.get(feature_id).map_or(0, |b| b.usage))
    }

    /// The live entries at `now_ms`.
    pub fn entries(&self, now_ms: u64) -> impl Iterator<Item = (&CacheKey, &FullCustomer)> {
        self.slots.iter().filter_map(move |(k, s)| s.live(now_ms).map(|e| (k, e)))
    }

    pub fn slot(&self, key: &CacheKey) -> Option<&CacheSlot> {
        self.slots.get(key)
    }

    /// Every slot, live or not, by key.
    pub fn slots(&self) -> impl Iterator<Item = (&CacheKey, &CacheSlot)> {
        self.slots.iter()
    }

    /// Every idempotency claim, live or not: when each expires.
    pub fn claims(&self) -> impl Iterator<Item = (&(Scope, String), &u64)> {
        self.keys.iter()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StripeCustomer {
    pub id: String,
    pub params: StripeParams,
    pub idempotency_key: String,
    pub created_at_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
struct IdempotencyEntry {
    params: StripeParams,
    stripe_id: String,
    created_at_ms: u64,
}

/// Simulated Stripe: customers, and idempotency keys remembered 24 h.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stripe {
    customers: Vec<StripeCustomer>,
    idempotency: BTreeMap<String, IdempotencyEntry>,
}

impl Stripe {
    /// Creates a customer, unless `key` was used within 24 h: then the same
    /// customer for the same parameters, `stripe_error` for other ones.
    pub fn create_customer(
        &mut self,
        key: &str,
        params: &StripeParams,
        now_ms: u64,
        ids: &mut IdGen,
        request: usize,
    ) -> Result<String, StripeError> {
        if let Some(entry) = self.idempotency.get(key) {
            if now_ms < entry.created_at_ms.saturating_add(STRIPE_IDEMPOTENCY_WINDOW_MS) {
                return if entry.params == *params {
                    Ok(entry.stripe_id.clone())
                } else {
                    Err(StripeError::IdempotencyMismatch { key: key.to_owned() })
                };
            }
        }
        let stripe_id = ids.next_id(request, "stripe_cus");
        self.customers.push(StripeCustomer {
            id: stripe_id.clone(),
            params: params.clone(),
            idempotency_key: key.to_owned(),
            created_at_ms: now_ms,
        });
        self.idempotency.insert(
            key.to_owned(),
            IdempotencyEntry { params: params.clone(), stripe_id: stripe_id.clone(), created_at_ms: now_ms },
        );
        Ok(stripe_id)
    }

    pub fn customers(&self) -> &[StripeCustomer] {
        &self.customers
    }

    /// Search by the `internal_id` metadata: the oldest customer of
    /// `internal_id` created at least [`STRIPE_SEARCH_LAG_MS`] before `now_ms`
    /// (a newer one may not be indexed yet).
    pub fn search(&self, internal_id: &str, now_ms: u64) -> Option<String> {
        self.customers
            .iter()
            .filter(|c| c.params.internal_id == internal_id)
            .find(|c| c.created_at_ms.saturating_add(STRIPE_SEARCH_LAG_MS) <= now_ms)
            .map(|c| c.id.clone())
    }
}
