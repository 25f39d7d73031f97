//! The Redis cache against the in-memory model, operation by operation:
//! generated sequences of reads, writes in every mode, invalidations,
//! evictions, deductions, usage reads, idempotency claims and clock moves
//! (across the guard's second and the entry's three days) answer the same
//! on both, and leave the same slots (live entry, invalidation count, live
//! guard) and claims after every step. Then the faults: a closed
//! connection is a cache that is down, and bad URLs, passwords and
//! servers fail before any work.

use crate::support;

use std::cell::Cell;
use std::collections::BTreeMap;

use cusim::backend::mem::Cache;
use cusim::backend::{CacheKey, CacheStamp, CacheWriteMode};
use cusim::model::{Balance, CustomerRow, DefaultScope, Env, FullCustomer, Scope};
use cusim_pg::cache::{CacheSnapshot, RedisCache};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use support::redis_url;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn scopes() -> [Scope; 2] {
    [Scope::new("org_1", Env::Sandbox), Scope::new("org:%2", Env::Live)]
}

/// Ids that would run into each other unescaped.
const IDS: [&str; 3] = ["cus_1", "a:b", "a%3Ab"];
const INTERNAL_IDS: [&str; 2] = ["in_1", "in_2"];
const FEATURES: [&str; 2] = ["words", "seats"];

fn key(k: usize) -> CacheKey {
    CacheKey { scope: scopes()[k % 2].clone(), id: IDS[k % 3].to_owned() }
}

fn customer(k: usize, internal: usize, usage: i64) -> FullCustomer {
    let key = key(k);
    let mut balances = BTreeMap::new();
    balances.insert("words".to_owned(), Balance { granted: 1000, usage });
    FullCustomer {
        customer: CustomerRow {
            internal_id: INTERNAL_IDS[internal % 2].to_owned(),
            org_id: key.scope.org_id.clone(),
            env: key.scope.env,
            id: Some(key.id.clone()),
            name: Some(format!("Ann \"{usage}\" ü")),
            email: None,
            fingerprint: None,
            metadata: BTreeMap::new(),
            processor: None,
            created_at: 0,
            default_scope: DefaultScope::All,
            stripe_wanted: false,
        },
        products: Vec::new(),
        balances,
    }
}

#[derive(Debug, Clone)]
enum Step {
    Read(usize),
    /// Key, value (internal id, usage), which earlier read's stamp (or a
    /// fresh one), mode.
    Write(usize, usize, i64, usize, CacheWriteMode),
    /// Key, the invalidating clock's skew.
    Invalidate(usize, i64),
    Evict(usize),
    Deduct(usize, usize, usize, i64),
    Usage(usize, usize, usize),
    Claim(usize, usize),
    Release(usize, usize),
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    let mode = prop_oneof![
        Just(CacheWriteMode::Overwrite),
        Just(CacheWriteMode::SetIfAbsent),
        Just(CacheWriteMode::Versioned)
    ];
    prop_oneof![
        3 => (0..6usize).prop_map(Step::Read),
        4 => (0..6usize, 0..2usize, 0..5i64, 0..4usize, mode).prop_map(|(k, i, u, s, m)| Step::Write(k, i, u, s, m)),
        2 => (0..6usize, prop_oneof![Just(0i64), Just(-1), Just(1), Just(-5_000)]).prop_map(|(k, s)| Step::Invalidate(k, s)),
        1 => (0..6usize).prop_map(Step::Evict),
        2 => (0..6usize, 0..2usize, 0..2usize, -2..5i64).prop_map(|(k, i, f, v)| Step::Deduct(k, i, f, v)),
        1 => (0..6usize, 0..2usize, 0..2usize).prop_map(|(k, i, f)| Step::Usage(k, i, f)),
        1 => (0..2usize, 0..2usize).prop_map(|(s, k)| Step::Claim(s, k)),
        1 => (0..2usize, 0..2usize).prop_map(|(s, k)| Step::Release(s, k)),
        2 => prop_oneof![
            Just(0u64),
            Just(1),
            Just(999),
            Just(1_000),
            Just(60_000),
            Just(24 * 60 * 60 * 1_000),
            Just(3 * 24 * 60 * 60 * 1_000 - 1)
        ]
        .prop_map(Step::Advance),
    ]
}

/// Runs `steps` on both caches; the first disagreement, if any.
async fn compare(redis: &RedisCache, steps: &[Step]) -> Result<usize, String> {
    let mut model = Cache::default();
    let mut now_ms = 0u64;
    let mut stamps: Vec<CacheStamp> = Vec::new();
    for (seq, step) in steps.iter().enumerate() {
        let seq = seq as u64;
        let (expected, actual) = match step {
            Step::Read(k) => {
                let expected = model.read(&key(*k), seq, now_ms);
                let actual = redis.read(&key(*k), seq, now_ms).await.map_err(|e| e.to_string())?;
                stamps.push(expected.stamp);
                (format!("{expected:?}"), format!("{actual:?}"))
            }
            Step::Write(k, internal, usage, stamp, mode) => {
                let stamp =
                    stamps.get(*stamp).copied().unwrap_or(CacheStamp { seq, epoch: 0, time_ms: now_ms });
                let value = customer(*k, *internal, *usage);
                let expected = model.write(&key(*k), &value, stamp, *mode, now_ms);
                let actual =
                    redis.write(&key(*k), &value, stamp, *mode, now_ms).await.map_err(|e| e.to_string())?;
                (format!("{expected:?}"), format!("{actual:?}"))
            }
            Step::Invalidate(k, skew) => {
                let at_ms = now_ms.saturating_add_signed(*skew);
                model.invalidate(&key(*k), seq, at_ms, now_ms);
                redis.invalidate(&key(*k), seq, at_ms, now_ms).await.map_err(|e| e.to_string())?;
                (String::new(), String::new())
            }
            Step::Evict(k) => {
                model.evict(&key(*k));
                redis.evict(&key(*k)).await.map_err(|e| e.to_string())?;
                (String::new(), String::new())
            }
            Step::Deduct(k, internal, feature, value) => {
                let (iid, feature) = (INTERNAL_IDS[*internal], FEATURES[*feature]);
                let expected = model.deduct(&key(*k), iid, feature, *value, now_ms);
                let actual =
                    redis.deduct(&key(*k), iid, feature, *value, now_ms).await.map_err(|e| e.to_string())?;
                (format!("{expected:?}"), format!("{actual:?}"))
            }
            Step::Usage(k, internal, feature) => {
                let (iid, feature) = (INTERNAL_IDS[*internal], FEATURES[*feature]);
                let expected = model.usage(&key(*k), iid, feature, now_ms);
                let actual = redis.usage(&key(*k), iid, feature, now_ms).await.map_err(|e| e.to_string())?;
                (format!("{expected:?}"), format!("{actual:?}"))
            }
            Step::Claim(scope, k) => {
                let (scope, name) = (&scopes()[*scope], IDS[*k]);
                let expected = model.claim_key(scope, name, now_ms);
                let actual = redis.claim_key(scope, name, now_ms).await.map_err(|e| e.to_string())?;
                (format!("{expected:?}"), format!("{actual:?}"))
            }
            Step::Release(scope, k) => {
                let (scope, name) = (&scopes()[*scope], IDS[*k]);
                model.release_key(scope, name);
                redis.release_key(scope, name).await.map_err(|e| e.to_string())?;
                (String::new(), String::new())
            }
            Step::Advance(ms) => {
                now_ms += ms;
                (String::new(), String::new())
            }
        };
        if expected != actual {
            return Err(format!("step {seq} ({step:?}): the model answered {expected}, Redis {actual}"));
        }
        let expected = CacheSnapshot::of(&model, now_ms);
        let actual = redis.snapshot(now_ms).await.map_err(|e| e.to_string())?;
        if expected != actual {
            return Err(format!(
                "after step {seq} ({step:?}): the model holds {expected:?}, Redis {actual:?}"
            ));
        }
    }
    Ok(steps.len())
}

#[test]
fn generated_operation_sequences_agree_on_redis_and_on_the_model() {
    let runtime = runtime();
    let redis = runtime.block_on(RedisCache::connect(&redis_url(), "cache_ops")).unwrap();
    let config = Config { cases: 400, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let steps_run = Cell::new(0usize);
    let sequence = Cell::new(0usize);
    let result = runner.run(&proptest::collection::vec(step(), 1..40), |steps| {
        sequence.set(sequence.get() + 1);
        let redis = redis.with_namespace(&format!("cache_ops_{}", sequence.get()));
        let outcome = runtime.block_on(compare(&redis, &steps));
        runtime.block_on(redis.clear()).unwrap();
        match outcome {
            Ok(n) => {
                steps_run.set(steps_run.get() + n);
                Ok(())
            }
            Err(e) => Err(TestCaseError::fail(e)),
        }
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let (sequences, steps_run) = (sequence.get(), steps_run.get());
    eprintln!(
        "{sequences} sequences, {steps_run} operations: Redis and the model agree on every answer and key"
    );
    assert!(steps_run > 4_000, "only {steps_run} operations compared");
}

/// The guard's boundaries, by hand: a write stamped at the invalidation's
/// own (time, seq) is stale, one stamped after it is not; the guard is
/// gone after its second (virtual), while the counter stays.
#[test]
fn the_guard_and_the_counter_decide_as_the_model_does_at_their_boundaries() {
    use cusim::backend::CacheWriteOutcome::{Stale, Written};
    let runtime = runtime();
    let redis = runtime.block_on(RedisCache::connect(&redis_url(), "cache_edges")).unwrap();
    runtime.block_on(redis.clear()).unwrap();
    let mut model = Cache::default();
    let (k, value) = (key(1), customer(1, 0, 0));
    let stamp = |seq, epoch, time_ms| CacheStamp { seq, epoch, time_ms };
    // An invalidation at seq 5, clock 100 (the guard lives until 1100).
    model.invalidate(&k, 5, 100, 100);
    runtime.block_on(redis.invalidate(&k, 5, 100, 100)).unwrap();
    let mut both = |stamp: CacheStamp, mode, now_ms| {
        let expected = model.write(&k, &value, stamp, mode, now_ms);
        let actual = runtime.block_on(redis.write(&k, &value, stamp, mode, now_ms)).unwrap();
        assert_eq!(actual, expected, "{stamp:?} {mode:?} at {now_ms}");
        actual
    };
    let cases = [
        (stamp(5, 1, 100), CacheWriteMode::Overwrite, 100, Stale, "read at the invalidation itself"),
        (stamp(4, 1, 100), CacheWriteMode::SetIfAbsent, 1_099, Stale, "read before it, guard alive"),
        (stamp(0, 0, 0), CacheWriteMode::Versioned, 50_000, Stale, "the counter outlives the guard"),
        (stamp(4, 1, 100), CacheWriteMode::Overwrite, 1_100, Written, "the guard is gone at 1100"),
    ];
    for (stamp, mode, now_ms, outcome, why) in cases {
        assert_eq!(both(stamp, mode, now_ms), outcome, "{why}");
    }
    let read = runtime.block_on(redis.read(&k, 9, 1_100)).unwrap();
    assert_eq!(read.stamp.epoch, 1);
    assert_eq!(read.entry.as_ref(), Some(&value));
    runtime.block_on(redis.clear()).unwrap();
}

#[test]
fn a_closed_connection_is_a_cache_that_is_down() {
    let runtime = runtime();
    let redis = runtime.block_on(RedisCache::connect(&redis_url(), "cache_cut")).unwrap();
    let cut = runtime.block_on(redis.cut()).unwrap();
    let failed = runtime.block_on(cut.read(&key(0), 0, 0));
    assert!(failed.is_err(), "a read on a killed connection answered {failed:?}");
    // The run's own connection is untouched.
    assert!(runtime.block_on(redis.read(&key(0), 0, 0)).is_ok());
}

#[test]
fn bad_urls_passwords_and_servers_fail_before_any_work() {
    let runtime = runtime();
    let url = redis_url();
    let wrong_password = url.replacen("redis://:", "redis://:wrong", 1);
    assert_ne!(wrong_password, url, "the test server's URL has a password: {url}");
    let free_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for (bad, says) in [
        ("http://127.0.0.1:1".to_owned(), "not a Redis URL"),
        (wrong_password, "password"),
        (format!("redis://127.0.0.1:{free_port}"), "cannot connect"),
    ] {
        let error = runtime.block_on(RedisCache::connect(&bad, "bad")).unwrap_err();
        assert!(error.to_string().contains(says), "{bad}: {error}");
    }
}
