//! The in-memory model behaves like Postgres (READ COMMITTED), the cache
//! and Stripe where the flows depend on it. Operations are applied
//! directly, two "requests" interleaved by hand.

use cusim::backend::mem::{Blocked, Fault, World, APPLIED_KEY_WINDOW_MS};
use cusim::backend::Constraints;
use cusim::backend::*;
use cusim::model::{Catalog, CustomerRow, DefaultScope, Env, FullCustomer, ProductStatus, Scope};

fn world(constraints: Constraints) -> World {
    World::new(Catalog::default(), constraints, 1)
}

fn all_constraints() -> World {
    world(Constraints { idless_email_unique: true, product_group_unique: true })
}

fn scope() -> Scope {
    Scope::default()
}

fn new_customer(id: Option<&str>, email: Option<&str>) -> NewCustomer {
    NewCustomer {
        scope: scope(),
        id: id.map(str::to_owned),
        name: None,
        email: email.map(str::to_owned),
        fingerprint: None,
        metadata: Default::default(),
        processor: None,
        default_scope: DefaultScope::All,
        stripe_wanted: false,
    }
}

fn insert(id: Option<&str>, email: Option<&str>, on_conflict: OnConflict) -> Op {
    Op::Insert { customer: new_customer(id, email), on_conflict }
}

fn ok(result: Result<Outcome, Blocked>) -> Outcome {
    result.unwrap_or_else(|b| panic!("unexpectedly blocked on txn {}", b.0))
}

fn inserted(outcome: Outcome) -> CustomerRow {
    match outcome {
        Outcome::Insert { outcome: InsertOutcome::Inserted(row) } => row,
        other => panic!("expected an insert, got {other:?}"),
    }
}

fn lookup(w: &mut World, request: usize, id: &str, lock: RowLock) -> Result<Option<CustomerRow>, Blocked> {
    w.apply(request, &Op::LookupId { scope: scope(), id: id.into(), lock }, None).map(|o| match o {
        Outcome::Row { row } => row,
        other => panic!("expected a row, got {other:?}"),
    })
}

#[test]
fn unique_insert_waits_for_an_uncommitted_row_then_fails_with_23505() {
    let mut w = all_constraints();
    ok(w.apply(0, &Op::Begin, None));
    inserted(ok(w.apply(0, &insert(Some("x"), None, OnConflict::Error), None)));
    let holder = w.open_txn(0).unwrap();
    assert_eq!(w.apply(1, &insert(Some("x"), None, OnConflict::Error), None), Err(Blocked(holder)));
    assert_eq!(w.request_of_txn(holder), Some(0));
    ok(w.apply(0, &Op::Commit, None));
    match ok(w.apply(1, &insert(Some("x"), None, OnConflict::Error), None)) {
        Outcome::DbError { error: DbError::UniqueViolation { constraint } } => {
            assert_eq!(constraint, "customers_org_env_id_key")
        }
        other => panic!("expected 23505, got {other:?}"),
    }
    assert!(w.is_quiescent());
}

#[test]
fn unique_insert_succeeds_when_the_holder_rolls_back() {
    let mut w = all_constraints();
    ok(w.apply(0, &Op::Begin, None));
    inserted(ok(w.apply(0, &insert(Some("x"), None, OnConflict::Error), None)));
    assert!(w.apply(1, &insert(Some("x"), None, OnConflict::Error), None).is_err());
    w.crash(0);
    inserted(ok(w.apply(1, &insert(Some("x"), None, OnConflict::Error), None)));
    assert_eq!(w.committed_customers().len(), 1);
}

#[test]
fn on_conflict_waits_then_returns_the_existing_row() {
    let mut w = all_constraints();
    ok(w.apply(0, &Op::Begin, None));
    let first = inserted(ok(w.apply(0, &insert(None, Some("A@x.io"), OnConflict::ReturnExisting), None)));
    let op = insert(None, Some("a@X.io"), OnConflict::ReturnExisting);
    assert!(w.apply(1, &op, None).is_err(), "the id-less email index waits on the uncommitted row");
    ok(w.apply(0, &Op::Commit, None));
    match ok(w.apply(1, &op, None)) {
        Outcome::Insert { outcome: InsertOutcome::Existing(row) } => {
            assert_eq!(row.internal_id, first.internal_id)
        }
        other => panic!("expected the existing row, got {other:?}"),
    }
    // DO NOTHING skips.
    let skipped = ok(w.apply(2, &insert(None, Some("a@x.io"), OnConflict::DoNothing), None));
    assert_eq!(skipped, Outcome::Insert { outcome: InsertOutcome::Skipped });
}

#[test]
fn without_the_email_index_idless_duplicates_are_possible() {
    let mut w = world(Constraints::default());
    inserted(ok(w.apply(0, &insert(None, Some("a@x.io"), OnConflict::Error), None)));
    inserted(ok(w.apply(1, &insert(None, Some("a@x.io"), OnConflict::Error), None)));
    assert_eq!(w.committed_customers().len(), 2);
}

#[test]
fn reads_see_only_committed_rows_and_their_own_writes() {
    let mut w = all_constraints();
    ok(w.apply(0, &Op::Begin, None));
    inserted(ok(w.apply(0, &insert(Some("x"), None, OnConflict::Error), None)));
    assert!(lookup(&mut w, 0, "x", RowLock::None).unwrap().is_some(), "own write visible");
    assert!(lookup(&mut w, 1, "x", RowLock::None).unwrap().is_none(), "uncommitted invisible to others");
    ok(w.apply(0, &Op::Commit, None));
    assert!(lookup(&mut w, 1, "x", RowLock::None).unwrap().is_some());
}

fn claim(target: ClaimTarget, new_id: &str) -> Op {
    Op::Claim { scope: scope(), target, new_id: new_id.into() }
}

#[test]
fn a_claim_that_waited_rechecks_its_where_on_the_committed_row() {
    let mut w = all_constraints();
    let row = inserted(ok(w.apply(9, &insert(None, Some("e@x.io"), OnConflict::Error), None)));
    let by_email = ClaimTarget::IdlessEmail { email: "E@x.io".into() };
    ok(w.apply(0, &Op::Begin, None));
    match ok(w.apply(0, &claim(by_email.clone(), "x"), None)) {
        Outcome::Row { row: Some(claimed) } => assert_eq!(claimed.id.as_deref(), Some("x")),
        other => panic!("expected the claim, got {other:?}"),
    }
    assert!(w.apply(1, &claim(by_email.clone(), "y"), None).is_err(), "waits for the first claim");
    ok(w.apply(0, &Op::Commit, None));
    assert_eq!(ok(w.apply(1, &claim(by_email, "y"), None)), Outcome::Row { row: None }, "no longer id-less");

    // Targeting the row by internal id does not re-check: the second claim overwrites (R5).
    let by_row = ClaimTarget::Row { internal_id: row.internal_id.clone() };
    match ok(w.apply(2, &claim(by_row, "y"), None)) {
        Outcome::Row { row: Some(claimed) } => assert_eq!(claimed.id.as_deref(), Some("y")),
        other => panic!("expected the overwrite, got {other:?}"),
    }
}

#[test]
fn row_locks_conflict_as_in_postgres() {
    let mut w = all_constraints();
    let row = inserted(ok(w.apply(9, &insert(Some("x"), None, OnConflict::Error), None)));
    ok(w.apply(0, &Op::Begin, None));
    lookup(&mut w, 0, "x", RowLock::ForShare).unwrap();
    ok(w.apply(1, &Op::Begin, None));
    lookup(&mut w, 1, "x", RowLock::ForShare).expect("share does not conflict with share");
    let t0 = w.open_txn(0).unwrap();
    assert_eq!(lookup(&mut w, 2, "x", RowLock::ForUpdate), Err(Blocked(t0)), "update waits for share");
    let set_processor = Op::SetProcessor {
        scope: scope(),
        internal_id: row.internal_id.clone(),
        stripe_id: "s".into(),
        only_if_null: true,
    };
    assert!(w.apply(2, &set_processor, None).is_err(), "an UPDATE waits for FOR SHARE");
    for request in 0..3 {
        w.crash(request);
    }

    // A foreign-key insert (key share) waits only for FOR UPDATE.
    ok(w.apply(0, &Op::Begin, None));
    lookup(&mut w, 0, "x", RowLock::ForUpdate).unwrap();
    let attach = Op::AttachDefault {
        scope: scope(),
        product: NewCustomerProduct {
            internal_customer_id: row.internal_id.clone(),
            product_id: "free".into(),
            group: "main".into(),
            status: ProductStatus::Active,
        },
        on_conflict: OnConflict::DoNothing,
    };
    assert!(w.apply(1, &attach, None).is_err());
    ok(w.apply(0, &Op::Commit, None));
    ok(w.apply(0, &Op::Begin, None));
    ok(w.apply(0, &set_processor, None));
    ok(w.apply(1, &attach, None));
    ok(w.apply(0, &Op::Commit, None));
    assert!(w.is_quiescent());
}

#[test]
fn a_failed_statement_rolls_its_transaction_back() {
    let mut w = all_constraints();
    inserted(ok(w.apply(9, &insert(Some("taken"), None, OnConflict::Error), None)));
    ok(w.apply(0, &Op::Begin, None));
    inserted(ok(w.apply(0, &insert(Some("mine"), None, OnConflict::Error), None)));
    let failed = ok(w.apply(0, &insert(Some("taken"), None, OnConflict::Error), None));
    assert!(matches!(failed, Outcome::DbError { error: DbError::UniqueViolation { .. } }));
    assert_eq!(w.open_txn(0), None);
    assert!(lookup(&mut w, 1, "mine", RowLock::None).unwrap().is_none(), "the earlier insert rolled back");

    ok(w.apply(0, &Op::Begin, None));
    inserted(ok(w.apply(0, &insert(Some("mine"), None, OnConflict::Error), None)));
    let faulted = ok(w.apply(0, &Op::Commit, Some(Fault::DbError)));
    assert_eq!(faulted, Outcome::DbError { error: DbError::Unavailable });
    assert!(lookup(&mut w, 1, "mine", RowLock::None).unwrap().is_none(), "a failed commit commits nothing");
    assert_eq!(w.deadlock_victim(1), Outcome::DbError { error: DbError::Deadlock });
}

fn key() -> CacheKey {
    CacheKey { scope: scope(), id: "x".into() }
}

fn cached_customer(w: &mut World) -> FullCustomer {
    inserted(ok(w.apply(9, &insert(Some("x"), None, OnConflict::Error), None)));
    let op = Op::DbRead { scope: scope(), key: CustomerKey::Id("x".into()), lock: RowLock::None };
    match ok(w.apply(9, &op, None)) {
        Outcome::Full { customer: Some(full) } => *full,
        other => panic!("expected the customer, got {other:?}"),
    }
}

fn cache_read(w: &mut World) -> CacheRead {
    match ok(w.apply(0, &Op::CacheRead { key: key() }, None)) {
        Outcome::Cache { read } => *read,
        other => panic!("expected a cache read, got {other:?}"),
    }
}

fn cache_write(
    w: &mut World,
    full: &FullCustomer,
    stamp: CacheStamp,
    mode: CacheWriteMode,
) -> CacheWriteOutcome {
    let op = Op::CacheWrite { key: key(), value: Box::new(full.clone()), stamp, mode };
    match ok(w.apply(0, &op, None)) {
        Outcome::CacheWrite { outcome } => outcome,
        other => panic!("expected a cache write, got {other:?}"),
    }
}

#[test]
fn cache_set_if_absent_and_the_stale_write_guard() {
    let mut w = all_constraints();
    let full = cached_customer(&mut w);
    let before = cache_read(&mut w).stamp;
    assert_eq!(cache_write(&mut w, &full, before, CacheWriteMode::SetIfAbsent), CacheWriteOutcome::Written);
    assert_eq!(cache_write(&mut w, &full, before, CacheWriteMode::SetIfAbsent), CacheWriteOutcome::Exists);
    assert_eq!(cache_write(&mut w, &full, before, CacheWriteMode::Overwrite), CacheWriteOutcome::Written);

    ok(w.apply(1, &Op::CacheInvalidate { key: key(), at_ms: w.now_ms() }, None));
    assert_eq!(w.cache_entries().count(), 0);
    assert_eq!(cache_write(&mut w, &full, before, CacheWriteMode::Overwrite), CacheWriteOutcome::Stale);
    let after = cache_read(&mut w).stamp;
    assert_eq!(after.epoch, before.epoch + 1);
    assert_eq!(cache_write(&mut w, &full, after, CacheWriteMode::SetIfAbsent), CacheWriteOutcome::Written);

    // The guard lives 1 s; the invalidation counter forever.
    ok(w.apply(1, &Op::CacheInvalidate { key: key(), at_ms: w.now_ms() }, None));
    w.advance_clock(1_000);
    assert_eq!(cache_write(&mut w, &full, before, CacheWriteMode::SetIfAbsent), CacheWriteOutcome::Written);
    ok(w.apply(1, &Op::CacheInvalidate { key: key(), at_ms: w.now_ms() }, None));
    w.advance_clock(10_000_000);
    assert_eq!(cache_write(&mut w, &full, after, CacheWriteMode::Versioned), CacheWriteOutcome::Stale);
}

#[test]
fn usage_deducted_in_the_cache_is_lost_if_invalidated_before_sync() {
    let mut w = all_constraints();
    let full = cached_customer(&mut w);
    let internal_id = full.customer.internal_id.clone();
    let stamp = cache_read(&mut w).stamp;
    cache_write(&mut w, &full, stamp, CacheWriteMode::SetIfAbsent);
    let deduct = |target| Op::Deduct {
        scope: scope(),
        internal_id: internal_id.clone(),
        feature_id: "words".into(),
        value: 3,
        target,
        key: None,
    };
    let sync = Op::SyncUsage { key: key(), internal_id: internal_id.clone(), feature_id: "words".into() };
    ok(w.apply(0, &deduct(DeductTarget::Cache(key())), None));
    assert_eq!(ok(w.apply(0, &sync, None)), Outcome::Sync { outcome: SyncOutcome::Written { usage: 3 } });
    ok(w.apply(0, &deduct(DeductTarget::Cache(key())), None));
    ok(w.apply(1, &Op::CacheInvalidate { key: key(), at_ms: w.now_ms() }, None));
    assert_eq!(ok(w.apply(0, &sync, None)), Outcome::Sync { outcome: SyncOutcome::CacheMissing });
    assert_eq!(w.committed_full(&internal_id).unwrap().balances["words"].usage, 3, "the second 3 is lost");
    assert_eq!(
        ok(w.apply(0, &deduct(DeductTarget::Db), None)),
        Outcome::Deduct { outcome: DeductOutcome::Applied { usage: 6 } }
    );
}

fn stripe(w: &mut World, key: &str, name: Option<&str>, fault: Option<Fault>) -> Outcome {
    let params = StripeParams { internal_id: "cus_1".into(), name: name.map(str::to_owned), email: None };
    ok(w.apply(0, &Op::StripeCreate { idempotency_key: key.into(), params }, fault))
}

#[test]
fn stripe_idempotency_keys_last_24_hours_and_compare_parameters() {
    let mut w = all_constraints();
    let first = stripe(&mut w, "k", None, None);
    assert_eq!(stripe(&mut w, "k", None, None), first, "same key, same parameters: same customer");
    assert!(matches!(
        stripe(&mut w, "k", Some("other"), None),
        Outcome::StripeError { error: StripeError::IdempotencyMismatch { .. } }
    ));
    assert_eq!(w.stripe_customers().len(), 1);
    w.advance_clock(24 * 60 * 60 * 1_000);
    assert_ne!(stripe(&mut w, "k", None, None), first, "the key has expired");
    assert_eq!(w.stripe_customers().len(), 2);

    let timed_out = stripe(&mut w, "t", None, Some(Fault::LostResponse));
    assert_eq!(timed_out, Outcome::StripeError { error: StripeError::Timeout });
    assert_eq!(w.stripe_customers().len(), 3, "the timed-out call succeeded");
    assert!(matches!(stripe(&mut w, "t", None, None), Outcome::StripeCustomer { .. }));
    assert_eq!(w.stripe_customers().len(), 3, "its retry returns the same customer");
}

#[test]
fn touching_another_tenants_row_is_recorded() {
    let mut w = all_constraints();
    let row = inserted(ok(w.apply(9, &insert(Some("x"), None, OnConflict::Error), None)));
    let elsewhere = Scope::new("org_2", Env::Live);
    let attach = Op::AttachDefault {
        scope: elsewhere.clone(),
        product: NewCustomerProduct {
            internal_customer_id: row.internal_id,
            product_id: "free".into(),
            group: "main".into(),
            status: ProductStatus::Active,
        },
        on_conflict: OnConflict::Error,
    };
    ok(w.apply(3, &attach, None));
    let breaches = w.isolation_breaches();
    assert_eq!(breaches.len(), 1);
    assert_eq!((breaches[0].request, &breaches[0].request_scope), (3, &elsewhere));
}

#[test]
fn a_cloned_world_keeps_its_own_clocks() {
    let mut original = all_constraints();
    let copy = original.clone();
    original.advance_clock(5_000);
    inserted(ok(original.apply(0, &insert(Some("x"), None, OnConflict::Error), None)));
    assert_eq!((copy.now_ms(), copy.seq()), (0, 0));
    assert_eq!((original.now_ms(), original.seq()), (5_000, 1));
}

fn advisory(key: &str) -> Op {
    Op::AdvisoryLock { scope: scope(), key: key.into() }
}

#[test]
fn an_advisory_lock_is_held_until_the_transaction_ends() {
    let mut w = all_constraints();
    ok(w.apply(0, &Op::Begin, None));
    assert_eq!(ok(w.apply(0, &advisory("cus_1"), None)), Outcome::Done);
    // Taking it again in the same transaction is a no-op.
    assert_eq!(ok(w.apply(0, &advisory("cus_1"), None)), Outcome::Done);
    let holder = w.open_txn(0).unwrap();
    // Another transaction, or a statement of its own, waits for it.
    assert_eq!(w.apply(1, &advisory("cus_1"), None), Err(Blocked(holder)));
    assert_eq!(w.waiting_for(1), Some(holder));
    ok(w.apply(2, &Op::Begin, None));
    assert_eq!(w.apply(2, &advisory("cus_1"), None), Err(Blocked(holder)));
    // Another key, or the same key in another tenant, is another lock.
    assert_eq!(ok(w.apply(1, &advisory("cus_2"), None)), Outcome::Done);
    let other_org = Op::AdvisoryLock { scope: Scope::new("org_2", Env::Sandbox), key: "cus_1".into() };
    assert_eq!(ok(w.apply(1, &other_org, None)), Outcome::Done);
    assert!(!w.is_quiescent());
    ok(w.apply(0, &Op::Commit, None));
    // Released: the waiters get it, one after the other.
    assert_eq!(ok(w.apply(2, &advisory("cus_1"), None)), Outcome::Done);
    assert_eq!(w.apply(1, &advisory("cus_1"), None), Err(Blocked(w.open_txn(2).unwrap())));
    ok(w.apply(2, &Op::Rollback, None));
    assert_eq!(ok(w.apply(1, &advisory("cus_1"), None)), Outcome::Done);
    assert!(w.is_quiescent(), "a statement's own lock ends with it");
}

#[test]
fn advisory_locks_taken_in_opposite_orders_deadlock() {
    let mut w = all_constraints();
    for request in [0, 1] {
        ok(w.apply(request, &Op::Begin, None));
    }
    ok(w.apply(0, &advisory("a"), None));
    ok(w.apply(1, &advisory("b"), None));
    assert!(w.apply(0, &advisory("b"), None).is_err());
    assert!(!w.in_cycle(0));
    assert!(w.apply(1, &advisory("a"), None).is_err());
    assert!(w.in_cycle(1), "r1 waits for r0, which waits for r1");
    assert_eq!(w.deadlock_victim(1), Outcome::DbError { error: DbError::Deadlock });
    // The victim's locks are gone: r0 gets b.
    assert_eq!(ok(w.apply(0, &advisory("b"), None)), Outcome::Done);
}

#[test]
fn a_lost_response_takes_effect_and_answers_a_timeout() {
    let mut w = all_constraints();
    // A commit whose answer is lost has committed.
    ok(w.apply(0, &Op::Begin, None));
    inserted(ok(w.apply(0, &insert(Some("kept"), None, OnConflict::Error), None)));
    let lost = ok(w.apply(0, &Op::Commit, Some(Fault::LostResponse)));
    assert_eq!(lost, Outcome::DbError { error: DbError::Timeout });
    assert!(lookup(&mut w, 1, "kept", RowLock::None).unwrap().is_some(), "it committed");
    // A statement inside a transaction took effect there, and the
    // transaction, its connection gone, rolls back.
    ok(w.apply(0, &Op::Begin, None));
    let lost = ok(w.apply(0, &insert(Some("gone"), None, OnConflict::Error), Some(Fault::LostResponse)));
    assert_eq!(lost, Outcome::DbError { error: DbError::Timeout });
    assert_eq!(w.open_txn(0), None);
    assert!(lookup(&mut w, 1, "gone", RowLock::None).unwrap().is_none());
    // One outside any transaction stays.
    ok(w.apply(0, &insert(Some("alone"), None, OnConflict::Error), Some(Fault::LostResponse)));
    assert!(lookup(&mut w, 1, "alone", RowLock::None).unwrap().is_some());
    // A cache write is written; the caller hears the cache time out.
    let full = cached_customer(&mut w);
    let stamp = cache_read(&mut w).stamp;
    let write =
        Op::CacheWrite { key: key(), value: Box::new(full), stamp, mode: CacheWriteMode::SetIfAbsent };
    assert_eq!(
        ok(w.apply(0, &write, Some(Fault::LostResponse))),
        Outcome::CacheError { error: CacheError::Timeout }
    );
    assert_eq!(w.cache_entries().count(), 1);
}

#[test]
fn cache_entries_live_three_days_and_an_eviction_counts_no_invalidation() {
    let mut w = all_constraints();
    let full = cached_customer(&mut w);
    let stamp = cache_read(&mut w).stamp;
    cache_write(&mut w, &full, stamp, CacheWriteMode::SetIfAbsent);
    w.advance_clock(3 * 24 * 60 * 60 * 1_000 - 1);
    assert!(cache_read(&mut w).entry.is_some(), "a millisecond before its TTL");
    w.advance_clock(1);
    assert!(cache_read(&mut w).entry.is_none(), "gone at its TTL");
    assert_eq!(w.cache_entries().count(), 0);

    let stamp = cache_read(&mut w).stamp;
    cache_write(&mut w, &full, stamp, CacheWriteMode::Versioned);
    w.evict(&key());
    let after = cache_read(&mut w);
    assert!(after.entry.is_none());
    assert_eq!(after.stamp.epoch, stamp.epoch, "an eviction is not an invalidation");
    assert_eq!(cache_write(&mut w, &full, stamp, CacheWriteMode::Versioned), CacheWriteOutcome::Written);
}

#[test]
fn the_guard_compares_the_invalidating_and_the_reading_instances_clocks() {
    let mut w = all_constraints();
    let full = cached_customer(&mut w);
    let read = cache_read(&mut w).stamp;
    // The reader's clock ran 250 ms fast: its read looks newer than the
    // invalidation that came after it.
    let fast = CacheStamp { time_ms: read.time_ms + 250, ..read };
    ok(w.apply(1, &Op::CacheInvalidate { key: key(), at_ms: w.now_ms() }, None));
    assert_eq!(cache_write(&mut w, &full, read, CacheWriteMode::SetIfAbsent), CacheWriteOutcome::Stale);
    assert_eq!(cache_write(&mut w, &full, fast, CacheWriteMode::SetIfAbsent), CacheWriteOutcome::Written);
}

#[test]
fn idempotency_keys_are_claimed_once_per_scope_for_a_day() {
    let mut w = all_constraints();
    let claim = |scope: Scope| Op::IdempotencyClaim { scope, key: "k".into() };
    let claimed = Outcome::KeyClaim { outcome: KeyClaim::Claimed };
    let taken = Outcome::KeyClaim { outcome: KeyClaim::Taken };
    assert_eq!(ok(w.apply(0, &claim(scope()), None)), claimed);
    assert_eq!(ok(w.apply(1, &claim(scope()), None)), taken);
    assert_eq!(ok(w.apply(1, &claim(Scope::new("org_2", Env::Live)), None)), claimed, "per org and env");
    ok(w.apply(0, &Op::IdempotencyRelease { scope: scope(), key: "k".into() }, None));
    assert_eq!(ok(w.apply(1, &claim(scope()), None)), claimed, "released");
    w.advance_clock(24 * 60 * 60 * 1_000);
    assert_eq!(ok(w.apply(2, &claim(scope()), None)), claimed, "expired");
}

#[test]
fn a_keyed_deduction_counts_once() {
    let mut w = all_constraints();
    let full = cached_customer(&mut w);
    let deduct = |key: Option<&str>| Op::Deduct {
        scope: scope(),
        internal_id: full.customer.internal_id.clone(),
        feature_id: "words".into(),
        value: 3,
        target: DeductTarget::Db,
        key: key.map(str::to_owned),
    };
    assert_eq!(
        ok(w.apply(0, &deduct(Some("a")), None)),
        Outcome::Deduct { outcome: DeductOutcome::Applied { usage: 3 } }
    );
    assert_eq!(
        ok(w.apply(0, &deduct(Some("a")), None)),
        Outcome::Deduct { outcome: DeductOutcome::Duplicate { usage: 3 } }
    );
    assert_eq!(
        ok(w.apply(0, &deduct(Some("b")), None)),
        Outcome::Deduct { outcome: DeductOutcome::Applied { usage: 6 } }
    );
    assert_eq!(
        ok(w.apply(0, &deduct(None), None)),
        Outcome::Deduct { outcome: DeductOutcome::Applied { usage: 9 } }
    );
}

#[test]
fn a_counted_key_lasts_the_idempotency_window_and_is_then_forgotten() {
    let mut w = all_constraints();
    let full = cached_customer(&mut w);
    let internal_id = full.customer.internal_id.clone();
    let deduct = |key: &str| Op::Deduct {
        scope: scope(),
        internal_id: internal_id.clone(),
        feature_id: "words".into(),
        value: 3,
        target: DeductTarget::Db,
        key: Some(key.to_owned()),
    };
    let applied = |usage| Outcome::Deduct { outcome: DeductOutcome::Applied { usage } };
    let duplicate = |usage| Outcome::Deduct { outcome: DeductOutcome::Duplicate { usage } };
    let t0 = w.now_ms();
    assert_eq!(ok(w.apply(0, &deduct("a"), None)), applied(3));
    w.advance_clock(APPLIED_KEY_WINDOW_MS - 1);
    assert_eq!(ok(w.apply(1, &deduct("a"), None)), duplicate(3), "a millisecond before the window ends");
    assert_eq!(ok(w.apply(1, &deduct("b"), None)), applied(6));
    let keys = |w: &World| w.applied_keys(&internal_id, "words").into_iter().collect::<Vec<_>>();
    let b_at = t0 + APPLIED_KEY_WINDOW_MS - 1;
    assert_eq!(keys(&w), [("a".to_owned(), t0), ("b".to_owned(), b_at)]);
    w.advance_clock(1);
    assert_eq!(ok(w.apply(2, &deduct("a"), None)), applied(9), "the window has passed: a new track");
    assert_eq!(keys(&w), [("a".to_owned(), t0 + APPLIED_KEY_WINDOW_MS), ("b".to_owned(), b_at)]);
    w.advance_clock(APPLIED_KEY_WINDOW_MS);
    assert_eq!(ok(w.apply(3, &deduct("c"), None)), applied(12));
    assert_eq!(
        keys(&w),
        [("c".to_owned(), t0 + 2 * APPLIED_KEY_WINDOW_MS)],
        "a count forgets the keys whose window has passed"
    );
}

#[test]
fn stripe_search_finds_customers_a_minute_old() {
    let mut w = all_constraints();
    let search = Op::StripeSearch { internal_id: "cus_1".into() };
    let Outcome::StripeCustomer { stripe_id } = stripe(&mut w, "k", None, None) else { panic!("created") };
    assert_eq!(ok(w.apply(0, &search, None)), Outcome::StripeFound { stripe_id: None }, "not indexed yet");
    w.advance_clock(60_000);
    assert_eq!(ok(w.apply(0, &search, None)), Outcome::StripeFound { stripe_id: Some(stripe_id) });
}

#[test]
fn the_waiters_on_a_key_all_wake_and_any_may_go_first() {
    let mut w = all_constraints();
    ok(w.apply(0, &Op::Begin, None));
    inserted(ok(w.apply(0, &insert(Some("x"), None, OnConflict::Error), None)));
    let t0 = w.open_txn(0).unwrap();
    assert_eq!(w.apply(1, &insert(Some("x"), None, OnConflict::Error), None), Err(Blocked(t0)));
    ok(w.apply(2, &Op::Begin, None));
    assert_eq!(w.apply(2, &insert(Some("x"), None, OnConflict::Error), None), Err(Blocked(t0)));
    assert_eq!((w.edges(1), w.woken(1), w.woken(2)), (vec![t0], false, false));
    ok(w.apply(0, &Op::Rollback, None));
    assert!(w.woken(1) && w.woken(2), "a unique key's waiters all wake");
    // The later waiter goes first: the earlier one now waits for it.
    inserted(ok(w.apply(2, &insert(Some("x"), None, OnConflict::Error), None)));
    let t2 = w.open_txn(2).unwrap();
    assert_eq!(w.apply(1, &insert(Some("x"), None, OnConflict::Error), None), Err(Blocked(t2)));
    assert!(!w.woken(1));
}

fn seeded_row(w: &mut World, id: &str) {
    inserted(ok(w.apply(9, &insert(Some(id), None, OnConflict::Error), None)));
}

#[test]
fn a_rows_waiters_queue_behind_the_first_and_a_newcomer_may_overtake() {
    let mut w = all_constraints();
    seeded_row(&mut w, "c");
    for request in 0..4 {
        ok(w.apply(request, &Op::Begin, None));
    }
    let txn = |w: &World, r: usize| w.open_txn(r).unwrap();
    lookup(&mut w, 0, "c", RowLock::ForUpdate).unwrap();
    assert_eq!(lookup(&mut w, 1, "c", RowLock::ForUpdate), Err(Blocked(txn(&w, 0))));
    assert!(lookup(&mut w, 2, "c", RowLock::ForUpdate).is_err());
    assert_eq!(w.edges(2), vec![txn(&w, 1)], "the second waiter waits behind the first (its tuple lock)");
    ok(w.apply(0, &Op::Commit, None));
    assert!(w.woken(1), "the first waiter wakes");
    assert!(!w.woken(2), "the second stays behind it");
    // A request that was not waiting takes the row first.
    lookup(&mut w, 3, "c", RowLock::ForUpdate).unwrap();
    assert_eq!(lookup(&mut w, 1, "c", RowLock::ForUpdate), Err(Blocked(txn(&w, 3))));
    assert_eq!(w.edges(2), vec![txn(&w, 1)], "still behind the first, which keeps its place");
    ok(w.apply(3, &Op::Commit, None));
    assert!(w.woken(1) && !w.woken(2));
    lookup(&mut w, 1, "c", RowLock::ForUpdate).unwrap();
    assert!(w.woken(2), "the first waiter has the row: the second may try again");
    assert_eq!(lookup(&mut w, 2, "c", RowLock::ForUpdate), Err(Blocked(txn(&w, 1))));
}

#[test]
fn a_waiter_on_a_share_locked_row_waits_for_every_holder_and_any_cycle_member_may_be_the_victim() {
    let mut w = all_constraints();
    seeded_row(&mut w, "c");
    for request in 0..3 {
        ok(w.apply(request, &Op::Begin, None));
    }
    let txn = |w: &World, r: usize| w.open_txn(r).unwrap();
    lookup(&mut w, 0, "c", RowLock::ForShare).unwrap();
    lookup(&mut w, 1, "c", RowLock::ForShare).unwrap();
    assert!(lookup(&mut w, 2, "c", RowLock::ForUpdate).is_err());
    assert_eq!(w.edges(2), vec![txn(&w, 0), txn(&w, 1)], "both share holders");
    ok(w.apply(2, &Op::Rollback, None));
    w.crash(2);
    // r0 and r1 each want the row for update: each waits for the other.
    assert!(lookup(&mut w, 0, "c", RowLock::ForUpdate).is_err());
    assert!(!w.in_cycle(0));
    assert!(lookup(&mut w, 1, "c", RowLock::ForUpdate).is_err());
    assert!(w.in_cycle(0) && w.in_cycle(1), "either may be the victim");
    // The one that waited first is the victim: the other goes on.
    assert_eq!(w.deadlock_victim(0), Outcome::DbError { error: DbError::Deadlock });
    assert!(w.woken(1) && !w.in_cycle(1));
    lookup(&mut w, 1, "c", RowLock::ForUpdate).unwrap();
}

fn claim_by_email(email: &str, new_id: &str) -> Op {
    Op::Claim {
        scope: scope(),
        target: ClaimTarget::IdlessEmail { email: email.into() },
        new_id: new_id.into(),
    }
}

#[test]
fn an_update_changes_every_row_it_matches() {
    // Without the id-less email index, two id-less rows may share an email.
    let mut w = world(Constraints { idless_email_unique: false, product_group_unique: false });
    let first = inserted(ok(w.apply(9, &insert(None, Some("e@x.com"), OnConflict::Error), None)));
    inserted(ok(w.apply(9, &insert(None, Some("E@x.com"), OnConflict::Error), None)));
    // Both rows get id a: the second breaks the id index, and the whole
    // statement fails (it had no transaction of its own: nothing stays).
    let failed = ok(w.apply(0, &claim_by_email("e@x.com", "a"), None));
    assert!(matches!(failed, Outcome::DbError { error: DbError::UniqueViolation { .. } }), "{failed:?}");
    assert!(w.committed_customers().iter().all(|r| r.id.is_none()), "the first row's change rolled back too");
    // Two distinct ids on the two rows are two statements, each on one row.
    ok(w.apply(0, &Op::Begin, None));
    let claim_first = Op::Claim {
        scope: scope(),
        target: ClaimTarget::Row { internal_id: first.internal_id.clone() },
        new_id: "a".into(),
    };
    assert!(matches!(ok(w.apply(0, &claim_first, None)), Outcome::Row { row: Some(_) }));
    // Now one row matches the email: the update takes it.
    assert!(matches!(ok(w.apply(0, &claim_by_email("e@x.com", "b"), None)), Outcome::Row { row: Some(_) }));
    ok(w.apply(0, &Op::Commit, None));
    let ids: Vec<Option<String>> = w.committed_customers().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![Some("a".into()), Some("b".into())]);
}

#[test]
fn an_update_waiting_on_a_unique_index_holds_the_old_keys() {
    let mut w = all_constraints();
    inserted(ok(w.apply(9, &insert(None, Some("e@x.com"), OnConflict::Error), None)));
    ok(w.apply(0, &Op::Begin, None));
    inserted(ok(w.apply(0, &insert(Some("a"), None, OnConflict::Error), None)));
    let t0 = w.open_txn(0).unwrap();
    ok(w.apply(1, &Op::Begin, None));
    // r1's claim has written the row's new version (id a) and waits on the id index.
    assert_eq!(w.apply(1, &claim_by_email("e@x.com", "a"), None), Err(Blocked(t0)));
    let t1 = w.open_txn(1).unwrap();
    // An insert of the row's old key (id-less, that email) waits for r1:
    // the key is free only if r1's update commits.
    assert_eq!(w.apply(2, &insert(None, Some("E@X.com"), OnConflict::Error), None), Err(Blocked(t1)));
    ok(w.apply(0, &Op::Rollback, None));
    assert!(w.woken(1) && !w.woken(2));
    assert!(matches!(ok(w.apply(1, &claim_by_email("e@x.com", "a"), None)), Outcome::Row { row: Some(_) }));
    ok(w.apply(1, &Op::Commit, None));
    // The old key is free now.
    inserted(ok(w.apply(2, &insert(None, Some("E@X.com"), OnConflict::Error), None)));
}

#[test]
fn the_foreign_key_check_runs_after_the_row_is_in_its_index() {
    let mut w = all_constraints();
    let customer = inserted(ok(w.apply(9, &insert(Some("c"), None, OnConflict::Error), None)));
    let attach = Op::AttachDefault {
        scope: scope(),
        product: NewCustomerProduct {
            internal_customer_id: customer.internal_id.clone(),
            product_id: "free".into(),
            group: "main".into(),
            status: ProductStatus::Active,
        },
        on_conflict: OnConflict::DoNothing,
    };
    ok(w.apply(0, &Op::Begin, None));
    lookup(&mut w, 0, "c", RowLock::ForUpdate).unwrap();
    let t0 = w.open_txn(0).unwrap();
    // r1's row is in the (customer, group) index; its key-share check of
    // the customer waits for r0's FOR UPDATE.
    assert_eq!(w.apply(1, &attach, None), Err(Blocked(t0)));
    let t1 = w.open_txn(1).expect("a waiting statement keeps its own transaction");
    // r2's attach of the same group meets r1's row first: it waits for r1.
    assert_eq!(w.apply(2, &attach, None), Err(Blocked(t1)));
    ok(w.apply(0, &Op::Commit, None));
    assert!(w.woken(1) && !w.woken(2));
    assert!(matches!(ok(w.apply(1, &attach, None)), Outcome::Attach { outcome: AttachOutcome::Attached(_) }));
    assert!(w.woken(2));
    assert_eq!(ok(w.apply(2, &attach, None)), Outcome::Attach { outcome: AttachOutcome::Skipped });
    assert!(w.is_quiescent());
}

#[test]
fn a_released_advisory_lock_goes_to_the_first_waiter_at_once() {
    let mut w = all_constraints();
    ok(w.apply(0, &Op::Begin, None));
    ok(w.apply(0, &advisory("k"), None));
    assert!(w.apply(1, &advisory("k"), None).is_err());
    ok(w.apply(2, &Op::Begin, None));
    assert!(w.apply(2, &advisory("k"), None).is_err());
    ok(w.apply(0, &Op::Commit, None));
    // Granted to r1 as r0 let go: r2, and anyone new, now wait for r1.
    let t1 = w.open_txn(1).expect("r1's statement holds the lock in its own transaction");
    assert!(w.woken(1) && !w.woken(2));
    assert_eq!(w.edges(2), vec![t1]);
    assert_eq!(w.apply(3, &advisory("k"), None), Err(Blocked(t1)));
    assert_eq!(ok(w.apply(1, &advisory("k"), None)), Outcome::Done);
    // r1's statement ended, and its lock with it: r2 has it now.
    assert!(w.woken(2));
    assert_eq!(ok(w.apply(2, &advisory("k"), None)), Outcome::Done);
}
