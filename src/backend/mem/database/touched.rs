//! What each statement touched, by key, for a scheduler that reduces by
//! independence (the exhaustive scheduler's partial-order reduction): the
//! database records it as it runs, when asked ([`Database::record_touches`]).
//!
//! The keys:
//! - a customer row is its internal id, its `(org, env, id)` key and its
//!   id-less email key: reading a row (any version of it) reads all three,
//!   and locking or writing it writes all three, for its old and new
//!   versions, so a lookup by any key conflicts with every change of a row
//!   that has or had it;
//! - a lookup reads the key it looks up, whether or not it finds a row (an
//!   insert of that key changes its answer), and a unique-index probe the
//!   keys it probes;
//! - a customer's products are one key and its usage rows another, each
//!   named by the customer's internal id;
//! - an advisory lock is its key;
//! - `COMMIT` and `ROLLBACK` (and a statement's own transaction ending)
//!   write every key their transaction wrote or locked: that is when its
//!   writes become visible or vanish and its locks go, which wakes
//!   waiters;
//! - a wait writes the wait-for graph (one key: which member of a cycle of
//!   waits closes it, and the order of waits, depend on every wait) and
//!   every key its holders' transactions wrote or locked, so it conflicts
//!   with the end of what it waits for; a wait's end writes the graph too;
//! - a tenant breach writes their record.
//!
//! The catalog is read-only during a run. Row positions (insertion order)
//! are no key: nothing a run answers or commits depends on them, except
//! among rows that share a key (see `State`'s canonical order).

use std::collections::{BTreeMap, BTreeSet};

use crate::backend::CustomerKey;
use crate::model::{CustomerRow, Scope};

use super::store::TxnId;
use super::Database;

/// A thing's name by its 64-bit FNV-1a fingerprint: what the reduction's
/// keys are, so that recording and comparing them allocates nothing. Two
/// different names share a fingerprint only by a collision, and then the
/// things merely conflict where they need not: more schedules, never fewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(u64);

impl Name {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// The name made of `parts` (each followed by a byte no text has).
    pub fn of(parts: &[&str]) -> Name {
        let mut name = Name::OFFSET;
        for part in parts {
            for byte in part.bytes().chain([0xff]) {
                name = (name ^ u64::from(byte)).wrapping_mul(Name::PRIME);
            }
        }
        Name(name)
    }
}

/// A thing in the database a statement can touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DbKey {
    /// A customer row, by internal id.
    Customer(Name),
    /// `(org, env, id)`.
    Id(Name),
    /// `(org, env, lower(email))` of an id-less row.
    Email(Name),
    /// A customer's products, by its internal id.
    Products(Name),
    /// A customer's usage rows, by its internal id.
    Usage(Name),
    /// An advisory lock's key.
    Advisory(Name),
    /// The wait-for graph and the order of waits.
    Waits,
    /// The record of tenant breaches.
    Breaches,
}

impl DbKey {
    pub fn customer(internal_id: &str) -> DbKey {
        DbKey::Customer(Name::of(&[internal_id]))
    }

    pub fn products(internal_id: &str) -> DbKey {
        DbKey::Products(Name::of(&[internal_id]))
    }

    pub fn usage(internal_id: &str) -> DbKey {
        DbKey::Usage(Name::of(&[internal_id]))
    }

    pub fn advisory(key: &str) -> DbKey {
        DbKey::Advisory(Name::of(&[key]))
    }

    pub fn id(scope: &Scope, id: &str) -> DbKey {
        DbKey::Id(Name::of(&[&scope.org_id, scope.env.as_str(), id]))
    }

    pub fn email(scope: &Scope, email: &str) -> DbKey {
        DbKey::Email(Name::of(&[&scope.org_id, scope.env.as_str(), &email.to_lowercase()]))
    }

    /// What a lookup by `key` in `scope` reads.
    pub fn lookup(scope: &Scope, key: &CustomerKey) -> DbKey {
        match key {
            CustomerKey::Id(id) => DbKey::id(scope, id),
            CustomerKey::InternalId(internal) => DbKey::customer(internal),
        }
    }

    /// The unique keys of a version of a customer row: its id key and its
    /// id-less email key, where it has them.
    pub(super) fn unique_of_row(row: &CustomerRow) -> impl Iterator<Item = DbKey> {
        let scope = row.scope();
        [
            row.id.as_deref().map(|id| DbKey::id(&scope, id)),
            row.idless_email_key().map(|email| DbKey::email(&scope, &email)),
        ]
        .into_iter()
        .flatten()
    }

    /// Every key of a version of a customer row.
    fn of_row(row: &CustomerRow) -> impl Iterator<Item = DbKey> {
        std::iter::once(DbKey::customer(&row.internal_id)).chain(DbKey::unique_of_row(row))
    }
}

/// How a thing was touched: the database's keys here, and the other
/// services' things in the exhaustive scheduler's footprints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    /// Whether two uses of one thing conflict: at least one writes it.
    pub fn conflicts(a: Option<Access>, b: Option<Access>) -> bool {
        matches!((a, b), (Some(_), Some(Access::Write)) | (Some(Access::Write), Some(_)))
    }

    /// Records `access` of `key` in `map`, keeping the stronger of two.
    pub fn record<K: Ord>(map: &mut BTreeMap<K, Access>, key: K, access: Access) {
        let slot = map.entry(key).or_insert(access);
        *slot = (*slot).max(access);
    }
}

/// The recorder: off unless asked for.
#[derive(Debug, Clone, Default)]
pub(super) struct Touches {
    on: bool,
    /// Touched since last taken.
    touched: BTreeMap<DbKey, Access>,
    /// Per open transaction, the keys it wrote or locked.
    by_txn: BTreeMap<TxnId, BTreeSet<DbKey>>,
}

impl Database {
    /// From now on, the database records what each statement touches.
    pub fn record_touches(&mut self) {
        self.touches.on = true;
    }

    /// What was touched since the last call.
    pub fn take_touches(&mut self) -> BTreeMap<DbKey, Access> {
        std::mem::take(&mut self.touches.touched)
    }

    pub(super) fn recording(&self) -> bool {
        self.touches.on
    }

    /// Records the key `key` makes as touched (made only when recording);
    /// a write inside `txn` is `txn`'s until it ends.
    pub(super) fn touch(&mut self, access: Access, txn: Option<TxnId>, key: impl FnOnce() -> DbKey) {
        if self.touches.on {
            self.record(key(), access, txn);
        }
    }

    fn record(&mut self, key: DbKey, access: Access, txn: Option<TxnId>) {
        if let (Access::Write, Some(txn)) = (access, txn) {
            self.touches.by_txn.entry(txn).or_default().insert(key);
        }
        Access::record(&mut self.touches.touched, key, access);
    }

    /// Records the unique keys of `row` (a version being written, or one
    /// an insert probes for).
    pub(super) fn touch_unique_keys(&mut self, row: &CustomerRow, access: Access, txn: Option<TxnId>) {
        if self.touches.on {
            for key in DbKey::unique_of_row(row) {
                self.record(key, access, txn);
            }
        }
    }

    /// Records every key of every version of customer row `index`.
    pub(super) fn touch_customer(&mut self, index: usize, access: Access, txn: TxnId) {
        if !self.touches.on {
            return;
        }
        let tuple = self.customers.row(index);
        let keys: Vec<DbKey> = tuple
            .committed
            .iter()
            .chain(tuple.pending.iter().map(|(_, row)| row))
            .flat_map(DbKey::of_row)
            .collect();
        for key in keys {
            self.record(key, access, Some(txn));
        }
    }

    /// `txn` ended: everything it wrote or locked is written.
    pub(super) fn touch_end(&mut self, txn: TxnId) {
        if let Some(keys) = self.touches.by_txn.remove(&txn) {
            for key in keys {
                self.record(key, Access::Write, None);
            }
        }
    }

    /// `txn` waits for `holders`: the wait-for graph, and everything the
    /// holders wrote or locked, are written.
    pub(super) fn touch_wait(&mut self, txn: Option<TxnId>, holders: &[TxnId]) {
        if !self.touches.on {
            return;
        }
        let keys: BTreeSet<DbKey> =
            holders.iter().filter_map(|h| self.touches.by_txn.get(h)).flatten().copied().collect();
        self.record(DbKey::Waits, Access::Write, None);
        for key in keys {
            self.record(key, Access::Write, txn);
        }
    }
}
