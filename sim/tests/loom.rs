//! loom models of the in-memory world's shared structures: threads share a
//! [`SharedWorld`] (a lock and a condition variable, from `cusim::sync`)
//! and loom runs every interleaving of them. Built only with
//! `--features loom` (`cargo xtask test loom`).
#![cfg(feature = "loom")]

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use cusim::backend::mem::SharedWorld;
use cusim::backend::{
    CacheKey, CacheRead, CacheWriteMode, DbError, InsertOutcome, NewCustomer, OnConflict, Op, Outcome,
};
use cusim::flow::{execute, Strategy};
use cusim::model::{Env, FullCustomer, Scope};
use cusim_sim::claims::{Bound, Claim};
use cusim_sim::corpus::builtin;
use cusim_sim::drive::free::judge_free_run;
use cusim_sim::drive::stepper::Prepared;
use cusim_sim::judge::Invariant;
use cusim_sim::judge::RequestOutcome;
use loom::sync::atomic::AtomicU64;
use loom::sync::Arc;
use loom::thread;

fn scope() -> Scope {
    Scope { org_id: "org_1".into(), env: Env::Sandbox }
}

fn prepared(name: &str, strategy: Strategy) -> std::sync::Arc<Prepared> {
    let scenario = builtin::find(name).unwrap().scenario().unwrap();
    std::sync::Arc::new(Prepared::new(&scenario, strategy).unwrap())
}

/// Runs `check` under loom with `bound` preemptions at most (`None`: every
/// interleaving); returns how many interleavings it ran.
fn model(bound: Option<usize>, check: impl Fn() + Sync + Send + 'static) -> usize {
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&runs);
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = bound;
    builder.max_branches = 100_000;
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        check();
    });
    runs.load(Ordering::Relaxed)
}

fn insert_of(id: &str) -> Op {
    Op::Insert {
        customer: NewCustomer {
            scope: scope(),
            id: Some(id.into()),
            name: None,
            email: None,
            fingerprint: None,
            metadata: Default::default(),
            processor: None,
            default_scope: cusim::model::DefaultScope::None,
            stripe_wanted: false,
        },
        on_conflict: OnConflict::Error,
    }
}

const THREE_THREAD_PREEMPTIONS: usize = 3;

#[test]
fn unique_index_one_insert_wins_the_rest_see_23505_after_its_commit_2_threads_all_3_within_3_preemptions() {
    // Two threads: every interleaving. Three: every one with at most
    // `THREE_THREAD_PREEMPTIONS` preemptions (the whole space is too big).
    for (threads, bound) in [(2usize, None), (3, Some(THREE_THREAD_PREEMPTIONS))] {
        let prepared = prepared("clean-distinct-ids", Strategy::Safe);
        let runs = model(bound, move || {
            let shared = SharedWorld::new(prepared.world());
            let handles: Vec<_> = (0..threads)
                .map(|i| {
                    let shared = Arc::clone(&shared);
                    thread::spawn(move || {
                        shared.apply(i, &Op::Begin);
                        let inserted = shared.apply(i, &insert_of("cus_same"));
                        shared.apply(i, &Op::Commit);
                        inserted
                    })
                })
                .collect();
            let outcomes: Vec<Outcome> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            let winners: Vec<usize> = (0..threads)
                .filter(|&i| matches!(outcomes[i], Outcome::Insert { outcome: InsertOutcome::Inserted(_) }))
                .collect();
            assert_eq!(winners.len(), 1, "exactly one insert wins: {outcomes:?}");
            let log = shared.log();
            let winner_commit = log
                .iter()
                .position(|(r, op, _)| *r == winners[0] && matches!(op, Op::Commit))
                .expect("the winner commits");
            for loser in (0..threads).filter(|i| *i != winners[0]) {
                assert!(
                    matches!(&outcomes[loser], Outcome::DbError { error: DbError::UniqueViolation { .. } }),
                    "request {loser}: {:?}",
                    outcomes[loser]
                );
                let seen = log
                    .iter()
                    .position(|(r, op, _)| *r == loser && matches!(op, Op::Insert { .. }))
                    .expect("the loser's insert answered");
                assert!(
                    seen > winner_commit,
                    "request {loser} saw 23505 before the winner committed: {log:?}"
                );
            }
        });
        eprintln!("unique index, {threads} threads (preemption bound {bound:?}): {runs} interleavings");
        assert!(runs > 1);
    }
}

fn key() -> CacheKey {
    CacheKey { scope: scope(), id: "cus_1".into() }
}

/// A cache value that carries the DB version it was read at (as its name).
fn value(prepared: &Prepared, version: u64) -> FullCustomer {
    let world = prepared.world();
    let mut customer = world.committed_full(&world.committed_customers()[0].internal_id).unwrap();
    customer.customer.name = Some(format!("v{version}"));
    customer
}

/// A filler (cache read, DB read, cache write in `mode`) against a writer
/// (DB write, then invalidate): in how many interleavings the cache ends
/// up holding the older version, of how many. A `slow` filler takes 1.5 s
/// between its DB read and its cache write: longer than the stale-write
/// guard lives.
fn stale_cache_interleavings(mode: CacheWriteMode, slow: bool) -> (usize, usize) {
    let prepared = prepared("r8-lost-usage-overwrite", Strategy::Safe);
    let stale = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&stale);
    let runs = model(None, move || {
        let shared = SharedWorld::new(prepared.world());
        // The DB's version of the customer: the writer moves it to 2.
        let version = Arc::new(AtomicU64::new(1));
        let filler = {
            let (shared, version, prepared) = (Arc::clone(&shared), Arc::clone(&version), prepared.clone());
            thread::spawn(move || {
                let Outcome::Cache { read } = shared.apply(0, &Op::CacheRead { key: key() }) else {
                    panic!()
                };
                let CacheRead { stamp, .. } = *read;
                let seen = version.load(Ordering::SeqCst);
                if slow {
                    shared.with(|world| world.advance_clock(1_500));
                }
                let write =
                    Op::CacheWrite { key: key(), value: Box::new(value(&prepared, seen)), stamp, mode };
                shared.apply(0, &write);
            })
        };
        let writer = {
            let (shared, version) = (Arc::clone(&shared), Arc::clone(&version));
            thread::spawn(move || {
                version.store(2, Ordering::SeqCst);
                shared.apply(1, &Op::CacheInvalidate { key: key(), at_ms: 0 });
            })
        };
        filler.join().unwrap();
        writer.join().unwrap();
        let (world, _) = shared.finish();
        let cached = world.cache_entries().find(|(k, _)| **k == key()).map(|(_, v)| v.customer.name.clone());
        if cached == Some(Some("v1".into())) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    (stale.load(Ordering::Relaxed), runs)
}

#[test]
fn versioned_and_guarded_cache_writes_never_overwrite_newer() {
    // Versioned writes hold even for a slow filler; set-if-absent holds
    // while the guard lives.
    for (mode, slow) in [(CacheWriteMode::Versioned, true), (CacheWriteMode::SetIfAbsent, false)] {
        let (stale, runs) = stale_cache_interleavings(mode, slow);
        eprintln!("cache writes ({mode:?}, slow filler {slow}): {runs} interleavings, {stale} left the older version");
        assert_eq!(stale, 0, "{mode:?}: the cache kept version 1 after the DB moved to 2");
    }
    // The check has teeth: once the guard has expired, set-if-absent
    // writes the older version back.
    let (stale, runs) = stale_cache_interleavings(CacheWriteMode::SetIfAbsent, true);
    eprintln!(
        "cache writes (SetIfAbsent, slow filler): {runs} interleavings, {stale} left the older version"
    );
    assert!(stale > 0, "loom must find the stale write after the guard expired");
}

/// Two threads run `scenario`'s first two requests through `strategy`;
/// the invariants each interleaving breaks (all of them, merged).
fn create_path(name: &str, strategy: Strategy, bound: Option<usize>) -> (usize, BTreeSet<Invariant>) {
    let prepared = prepared(name, strategy);
    let broken = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let seen = std::sync::Arc::clone(&broken);
    let runs = model(bound, move || {
        let shared = SharedWorld::new(prepared.world());
        let handles: Vec<_> = prepared.scenario.requests[..2]
            .iter()
            .enumerate()
            .map(|(i, request)| {
                let (shared, request) = (Arc::clone(&shared), request.clone());
                thread::spawn(move || {
                    let conn = SharedWorld::connect(&shared, i);
                    // On the heap: a loom thread's stack is small.
                    loom::future::block_on(Box::pin(execute(&conn, strategy, &request)))
                })
            })
            .collect();
        let outcomes: Vec<RequestOutcome> =
            handles.into_iter().map(|h| RequestOutcome::Responded(Box::new(h.join().unwrap()))).collect();
        let (world, inserted) = shared.finish();
        // One attempt each: what it deducted is what its request did.
        let nothing = Default::default();
        let deducted = (0..outcomes.len()).map(|i| vec![world.deductions(i).since(nothing)]).collect();
        let judged = judge_free_run(&prepared, world, (&outcomes, Vec::new()), deducted, &inserted);
        seen.lock().unwrap().extend(judged.violations.iter().map(|v| v.invariant));
    });
    let broken = broken.lock().unwrap().clone();
    (runs, broken)
}

/// The safe create path has about twice legacy's operations; every
/// interleaving of it is out of reach, every one with at most this many
/// preemptions is not. (Legacy's whole space is covered, unbounded.)
const SAFE_PREEMPTIONS: usize = 4;

#[test]
fn the_safe_create_path_holds_every_invariant_within_4_preemptions() {
    let started = std::time::Instant::now();
    let (runs, broken) = create_path("r1-same-id-create", Strategy::Safe, Some(SAFE_PREEMPTIONS));
    eprintln!("safe create path, 2 threads: {runs} interleavings within {SAFE_PREEMPTIONS} preemptions, broken {broken:?}");
    assert!(broken.is_empty(), "safe broke {broken:?} within {SAFE_PREEMPTIONS} preemptions");
    Claim::new(
        "loom/safe-create-path",
        "under loom's thread interleavings, safe's create path holds every invariant",
        "r1-same-id-create's two creates, safe, 2 threads over the shared in-memory world",
        Bound::WithinPreemptions(SAFE_PREEMPTIONS),
    )
    .figure("interleavings", runs as u64)
    .record(started);
}

#[test]
fn loom_runs_every_interleaving_of_the_legacy_create_path_and_one_breaks_responses_see_defaults() {
    let (runs, broken) = create_path("r1-same-id-create", Strategy::Legacy, None);
    eprintln!("legacy create path, 2 threads: {runs} interleavings (all of them), broken {broken:?}");
    assert!(
        broken.contains(&Invariant::ResponsesSeeDefaults),
        "loom must find a response without the customer's defaults: {broken:?}"
    );
}
