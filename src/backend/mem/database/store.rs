//! Rows, transactions and row locks: the part of Postgres the flows lean on.
//!
//! Models READ COMMITTED: every statement reads the latest committed
//! version of each row (plus its own transaction's writes). A row written
//! by an open transaction carries that transaction's pending version and
//! lock; other transactions that need the row wait for it ([`Blocked`]).
//! Leaves out: MVCC snapshots older than a statement, vacuum, savepoints,
//! predicate locks (nothing runs above READ COMMITTED).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::Scope;

pub type TxnId = u64;

/// The caller must wait until transaction `.0` ends, then retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Blocked(pub TxnId);

/// Row lock strengths, weakest first, with Postgres's conflict table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    /// Taken on a referenced row by a foreign-key insert.
    KeyShare,
    /// `FOR SHARE`.
    Share,
    /// An `UPDATE` that changes no unique-key column.
    NoKeyUpdate,
    /// `FOR UPDATE`, or an `UPDATE` of a unique-key column.
    Update,
}

impl LockMode {
    pub fn conflicts_with(self, other: LockMode) -> bool {
        use LockMode::*;
        match (self, other) {
            (KeyShare, Update) | (Update, KeyShare) => true,
            (KeyShare, _) | (_, KeyShare) => false,
            (Share, Share) => false,
            _ => true,
        }
    }
}

/// One row: its committed version, an open transaction's pending version,
/// and the locks held on it.
#[derive(Debug, Clone)]
pub struct Tuple<T> {
    pub committed: Option<T>,
    pub pending: Option<(TxnId, T)>,
    pub locks: Vec<(TxnId, LockMode)>,
    /// An open transaction whose `UPDATE` of this row has written its new
    /// version and waits on a unique index: until it ends, the old
    /// version's keys are neither free nor surely taken, so an insert of
    /// one of them waits for it.
    pub replacing: Option<TxnId>,
}

impl<T: Clone> Tuple<T> {
    pub fn inserted(txn: TxnId, value: T) -> Tuple<T> {
        Tuple {
            committed: None,
            pending: Some((txn, value)),
            locks: vec![(txn, LockMode::Update)],
            replacing: None,
        }
    }

    /// The version `txn` sees: its own pending write, else the committed one.
    pub fn visible(&self, txn: TxnId) -> Option<&T> {
        match &self.pending {
            Some((owner, value)) if *owner == txn => Some(value),
            _ => self.committed.as_ref(),
        }
    }

    /// The open transaction other than `txn` that is writing this row.
    pub fn foreign_writer(&self, txn: TxnId) -> Option<TxnId> {
        self.pending.as_ref().map(|(owner, _)| *owner).or(self.replacing).filter(|owner| *owner != txn)
    }

    /// Every other transaction holding a lock that conflicts with `mode`.
    pub fn conflicting_holders(&self, txn: TxnId, mode: LockMode) -> Vec<TxnId> {
        self.locks
            .iter()
            .filter(|(owner, held)| *owner != txn && mode.conflicts_with(*held))
            .map(|(owner, _)| *owner)
            .collect()
    }

    /// Records `txn`'s lock (keeping only its strongest).
    pub fn lock(&mut self, txn: TxnId, mode: LockMode) {
        debug_assert!(self.conflicting_holders(txn, mode).is_empty(), "lock granted over a conflict");
        match self.locks.iter_mut().find(|(owner, _)| *owner == txn) {
            Some((_, held)) => *held = (*held).max(mode),
            None => self.locks.push((txn, mode)),
        }
    }

    /// Writes a new version as `txn`, which must hold no conflicting lock.
    pub fn write(&mut self, txn: TxnId, value: T, mode: LockMode) {
        debug_assert!(self.foreign_writer(txn).is_none(), "write over another transaction's write");
        self.lock(txn, mode);
        self.pending = Some((txn, value));
        self.replacing = None;
    }

    /// A slot with no version: taken by an insert that has not written
    /// its row yet, or never will.
    pub fn dead() -> Tuple<T> {
        Tuple { committed: None, pending: None, locks: Vec::new(), replacing: None }
    }

    /// Ends `txn` on this row: its pending version becomes committed
    /// (`commit`) or is dropped, and its locks are released.
    pub fn finish(&mut self, txn: TxnId, commit: bool) {
        if let Some((owner, _)) = &self.pending {
            if *owner == txn {
                let (_, value) = self.pending.take().expect("checked above");
                if commit {
                    self.committed = Some(value);
                }
            }
        }
        self.locks.retain(|(owner, _)| *owner != txn);
        if self.replacing == Some(txn) {
            self.replacing = None;
        }
    }

    /// True when no version is left: an insert that rolled back.
    pub fn is_dead(&self) -> bool {
        self.committed.is_none() && self.pending.is_none()
    }
}

/// A key a table finds its rows by (what the statements look rows up
/// by, as Postgres keeps an index for each), as a hash of its parts. A
/// lookup visits every row with a version whose key has that hash, and
/// every statement checks each row it visits against what it wants, so
/// two keys with one hash cost a wasted visit, never a wrong answer; and
/// the rows are visited in position order whatever the hashes are, so
/// nothing depends on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RowKey(u64);

impl RowKey {
    /// A customer's internal id.
    pub fn internal(internal_id: &str) -> RowKey {
        RowKey::of(0, &[internal_id])
    }

    /// A customer's `(org, env, id)`.
    pub fn id(scope: &Scope, id: &str) -> RowKey {
        RowKey::of(1, &[&scope.org_id, scope.env.as_str(), id])
    }

    /// An id-less customer's `(org, env, lower(email))`.
    pub fn email(scope: &Scope, email: &str) -> RowKey {
        RowKey::of(2, &[&scope.org_id, scope.env.as_str(), email])
    }

    /// The customer a product or a balance belongs to.
    pub fn customer(internal_id: &str) -> RowKey {
        RowKey::of(3, &[internal_id])
    }

    /// FNV-1a over the kind and the parts, each ended by a byte no UTF-8
    /// text holds.
    fn of(kind: u8, parts: &[&str]) -> RowKey {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |byte: u8| {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        };
        eat(kind);
        for part in parts {
            part.bytes().for_each(&mut eat);
            eat(0xff);
        }
        RowKey(hash)
    }
}

/// A row version's keys (at most three).
pub type RowKeys = [Option<RowKey>; 3];

/// A row version's keys in its table's index.
pub trait Indexed {
    fn row_keys(&self) -> RowKeys;
}

/// A table: rows in insertion order (their position is their row id).
/// Past [`INDEX_FROM`] rows it keeps an index from each [`RowKey`] to the
/// rows that have a version (committed or pending) with it, and the rows
/// each open transaction holds something on (a pending version, a lock, a
/// replacement); every change of a row goes through the table, which
/// keeps both. So a lookup and a transaction's end cost what the rows
/// they touch cost, not what the table holds, on a server that holds
/// many; a simulation's handful of rows is scanned, which costs less than
/// keeping an index. Either way a lookup yields, in position order, every
/// row that may have its key (the index: those that do; a scan: all), and
/// its caller keeps those it wants: the same rows in the same order.
#[derive(Debug, Clone)]
pub struct Table<T> {
    rows: Vec<Tuple<T>>,
    /// `None` while the table holds fewer than [`INDEX_FROM`] rows.
    index: Option<Index>,
}

/// Rows a table starts to index from.
pub const INDEX_FROM: usize = 64;

#[derive(Debug, Clone, Default)]
struct Index {
    /// Each key's rows, ascending.
    keys: BTreeMap<RowKey, Vec<usize>>,
    /// Each open transaction's rows (perhaps more than once).
    held: BTreeMap<TxnId, Vec<usize>>,
}

impl Index {
    fn hold(&mut self, txn: TxnId, index: usize) {
        let rows = self.held.entry(txn).or_default();
        if rows.last() != Some(&index) {
            rows.push(index);
        }
    }

    fn hold_all<T>(&mut self, tuple: &Tuple<T>, index: usize) {
        let pending = tuple.pending.as_ref().map(|(owner, _)| *owner);
        for txn in tuple.locks.iter().map(|(owner, _)| *owner).chain(pending).chain(tuple.replacing) {
            self.hold(txn, index);
        }
    }

    /// Row `index`'s keys were `before` and are `after`.
    fn rekey(&mut self, index: usize, before: &[Option<RowKey>], after: &[Option<RowKey>]) {
        for key in before.iter().flatten().filter(|k| !after.contains(&Some(**k))) {
            if let Some(rows) = self.keys.get_mut(key) {
                if let Ok(at) = rows.binary_search(&index) {
                    rows.remove(at);
                }
                if rows.is_empty() {
                    self.keys.remove(key);
                }
            }
        }
        for key in after.iter().flatten().filter(|k| !before.contains(&Some(**k))) {
            let rows = self.keys.entry(*key).or_default();
            if let Err(at) = rows.binary_search(&index) {
                rows.insert(at, index);
            }
        }
    }
}

/// The rows a lookup visits: its key's, or every one.
enum Candidates<'a> {
    Keyed(std::slice::Iter<'a, usize>),
    All(std::ops::Range<usize>),
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        match self {
            Candidates::Keyed(rows) => rows.next().copied(),
            Candidates::All(rows) => rows.next(),
        }
    }
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table { rows: Vec::new(), index: None }
    }
}

impl<T: Clone + Indexed> Table<T> {
    /// Row `index`.
    pub fn row(&self, index: usize) -> &Tuple<T> {
        &self.rows[index]
    }

    /// Every row, in position order.
    pub fn tuples(&self) -> &[Tuple<T>] {
        &self.rows
    }

    /// Whether the table keeps its index (it holds [`INDEX_FROM`] rows).
    pub fn is_indexed(&self) -> bool {
        self.index.is_some()
    }

    /// Rows `txn` sees, with their row ids (a scan of the whole table:
    /// for the oracle, not for statements).
    pub fn visible(&self, txn: TxnId) -> impl Iterator<Item = (usize, &T)> {
        self.rows.iter().enumerate().filter_map(move |(i, t)| t.visible(txn).map(|v| (i, v)))
    }

    /// The rows that may have a version with `key`, ascending.
    fn candidates(&self, key: impl FnOnce() -> RowKey) -> Candidates<'_> {
        match &self.index {
            Some(index) => Candidates::Keyed(index.keys.get(&key()).map_or([].iter(), |rows| rows.iter())),
            None => Candidates::All(0..self.rows.len()),
        }
    }

    /// Rows that may have a version with `key`, as `txn` sees them, in
    /// position order (the caller keeps those it wants).
    /// (`key` is made only when the table keeps its index.)
    pub fn visible_by(&self, txn: TxnId, key: impl FnOnce() -> RowKey) -> impl Iterator<Item = (usize, &T)> {
        self.candidates(key).filter_map(move |i| self.rows[i].visible(txn).map(|v| (i, v)))
    }

    /// Appends `tuple`; its position.
    pub fn push(&mut self, tuple: Tuple<T>) -> usize {
        self.rows.push(Tuple::dead());
        let index = self.rows.len() - 1;
        self.set(index, tuple);
        if self.index.is_none() && self.rows.len() >= INDEX_FROM {
            let mut built = Index::default();
            for (i, tuple) in self.rows.iter().enumerate() {
                built.rekey(i, &[], &tuple.keys());
                built.hold_all(tuple, i);
            }
            self.index = Some(built);
        }
        index
    }

    /// Replaces row `index` with `tuple`.
    pub fn set(&mut self, index: usize, tuple: Tuple<T>) {
        self.change_versions(index, |t| *t = tuple);
        if let Some(built) = &mut self.index {
            built.hold_all(&self.rows[index], index);
        }
    }

    /// `txn` writes a new version of row `index` (see [`Tuple::write`]).
    pub fn write(&mut self, index: usize, txn: TxnId, value: T, mode: LockMode) {
        self.change_versions(index, |t| t.write(txn, value, mode));
        self.hold(txn, index);
    }

    /// `txn` locks row `index` (see [`Tuple::lock`]).
    pub fn lock(&mut self, index: usize, txn: TxnId, mode: LockMode) {
        self.rows[index].lock(txn, mode);
        self.hold(txn, index);
    }

    /// `txn`'s `UPDATE` of row `index` waits on a unique index (see
    /// [`Tuple::replacing`]).
    pub fn mark_replacing(&mut self, index: usize, txn: TxnId) {
        self.rows[index].replacing = Some(txn);
        self.hold(txn, index);
    }

    /// `txn` now holds something on row `index` (noted once indexed).
    fn hold(&mut self, txn: TxnId, index: usize) {
        if let Some(built) = &mut self.index {
            built.hold(txn, index);
        }
    }

    /// Changes row `index`'s versions and keeps the index true.
    fn change_versions(&mut self, index: usize, f: impl FnOnce(&mut Tuple<T>)) {
        let Some(built) = &mut self.index else {
            f(&mut self.rows[index]);
            return;
        };
        let before = self.rows[index].keys();
        f(&mut self.rows[index]);
        built.rekey(index, &before, &self.rows[index].keys());
    }

    /// Checks that a row with a unique key (`has_key`, a row with `key`)
    /// may be written by `txn` (excluding row `except`, the row being
    /// updated):
    /// `Err(Blocked)` when an open transaction holds a version with that
    /// key; `Ok(Some(row))` when a live version has it (a 23505);
    /// `Ok(None)` when it is free.
    pub fn unique_probe(
        &self,
        txn: TxnId,
        except: Option<usize>,
        key: impl FnOnce() -> RowKey,
        has_key: impl Fn(&T) -> bool,
    ) -> Result<Option<usize>, Blocked> {
        for i in self.candidates(key) {
            if Some(i) == except {
                continue;
            }
            let tuple = &self.rows[i];
            if let Some(writer) = tuple.foreign_writer(txn) {
                let pending_has = tuple.pending.as_ref().is_some_and(|(_, v)| has_key(v));
                let committed_has = tuple.committed.as_ref().is_some_and(&has_key);
                if pending_has || committed_has {
                    return Err(Blocked(writer));
                }
            } else if tuple.visible(txn).is_some_and(&has_key) {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// Ends `txn` on every row it holds something on.
    pub fn finish(&mut self, txn: TxnId, commit: bool) {
        let Some(built) = &mut self.index else {
            for tuple in &mut self.rows {
                tuple.finish(txn, commit);
            }
            return;
        };
        let mut rows = built.held.remove(&txn).unwrap_or_default();
        rows.sort_unstable();
        rows.dedup();
        for index in rows {
            self.change_versions(index, |t| t.finish(txn, commit));
        }
    }
}

impl<T: Indexed> Tuple<T> {
    /// The keys of its versions.
    fn keys(&self) -> [Option<RowKey>; 6] {
        let none = [None; 3];
        let committed = self.committed.as_ref().map_or(none, T::row_keys);
        let pending = self.pending.as_ref().map_or(none, |(_, v)| v.row_keys());
        let [a, b, c] = committed;
        let [d, e, f] = pending;
        [a, b, c, d, e, f]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CustomerRow, DefaultScope, Env};
    use crate::rng::Rng;

    const ORGS: [&str; 2] = ["org_1", "org_2"];
    const IDS: [&str; 4] = ["a", "b", "c", "d"];
    const EMAILS: [&str; 3] = ["x@example.com", "X@example.com", "y@example.com"];

    fn customer(rng: &mut Rng, internal: usize) -> CustomerRow {
        CustomerRow {
            internal_id: format!("cus_{internal}"),
            org_id: ORGS[rng.below(2)].to_owned(),
            env: if rng.below(2) == 0 { Env::Sandbox } else { Env::Live },
            id: (rng.below(3) > 0).then(|| IDS[rng.below(IDS.len())].to_owned()),
            name: None,
            email: (rng.below(2) == 0).then(|| EMAILS[rng.below(EMAILS.len())].to_owned()),
            fingerprint: None,
            metadata: std::collections::BTreeMap::new(),
            processor: None,
            created_at: 0,
            default_scope: DefaultScope::All,
            stripe_wanted: false,
        }
    }

    /// What a scan of the whole table finds (the table before its index).
    fn scanned<'a>(
        table: &'a Table<CustomerRow>,
        txn: TxnId,
        wanted: &'a dyn Fn(&CustomerRow) -> bool,
    ) -> Vec<usize> {
        table.visible(txn).filter(|(_, r)| wanted(r)).map(|(i, _)| i).collect()
    }

    /// What a lookup by `key` finds, the caller keeping what it wants.
    fn found(
        table: &Table<CustomerRow>,
        txn: TxnId,
        key: RowKey,
        wanted: &dyn Fn(&CustomerRow) -> bool,
    ) -> Vec<usize> {
        table.visible_by(txn, || key).filter(|(_, r)| wanted(r)).map(|(i, _)| i).collect()
    }

    fn probe_by_scan(
        table: &Table<CustomerRow>,
        txn: TxnId,
        except: Option<usize>,
        wanted: &dyn Fn(&CustomerRow) -> bool,
    ) -> Result<Option<usize>, Blocked> {
        for (i, tuple) in table.tuples().iter().enumerate() {
            if Some(i) == except {
                continue;
            }
            if let Some(writer) = tuple.foreign_writer(txn) {
                if tuple.pending.as_ref().is_some_and(|(_, v)| wanted(v))
                    || tuple.committed.as_ref().is_some_and(wanted)
                {
                    return Err(Blocked(writer));
                }
            } else if tuple.visible(txn).is_some_and(wanted) {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// Random inserts (some through a dead slot, as an insert takes one),
    /// updates that change the indexed columns, locks, updates waiting on
    /// a unique index and ends of transactions, past the size the index
    /// starts at: every
    /// lookup and unique probe by key finds what a scan of the whole table
    /// finds, in the same order, and a transaction's end leaves nothing of
    /// it on any row.
    #[test]
    fn the_index_finds_what_a_scan_finds() {
        let mut rng = Rng::from_state(7);
        let mut table: Table<CustomerRow> = Table::default();
        let mut open: Vec<TxnId> = Vec::new();
        let mut next_txn: TxnId = 1;
        let mut lookups = 0;
        for step in 0..3_000 {
            if open.is_empty() || (open.len() < 4 && rng.below(4) == 0) {
                open.push(next_txn);
                next_txn += 1;
            }
            let txn = open[rng.below(open.len())];
            let action = if table.tuples().is_empty() { 0 } else { rng.below(7) };
            match action {
                0 => {
                    let row = customer(&mut rng, step);
                    table.push(Tuple::inserted(txn, row));
                }
                1 => {
                    // As an insert does: a dead slot first, its row after.
                    let slot = table.push(Tuple::dead());
                    if rng.below(4) > 0 {
                        let row = customer(&mut rng, step);
                        table.set(slot, Tuple::inserted(txn, row));
                    }
                }
                5 => {
                    // An update waiting on a unique index: locked, replacing.
                    let i = rng.below(table.tuples().len());
                    let free = table.row(i).foreign_writer(txn).is_none()
                        && table.row(i).conflicting_holders(txn, LockMode::Update).is_empty();
                    if free && table.row(i).visible(txn).is_some() {
                        table.lock(i, txn, LockMode::Update);
                        table.mark_replacing(i, txn);
                    }
                }
                2 => {
                    let i = rng.below(table.tuples().len());
                    let free = table.row(i).foreign_writer(txn).is_none()
                        && table.row(i).conflicting_holders(txn, LockMode::Update).is_empty();
                    if let (true, Some(current)) = (free, table.row(i).visible(txn).cloned()) {
                        let mut changed = customer(&mut rng, 0);
                        changed.internal_id = current.internal_id;
                        table.write(i, txn, changed, LockMode::Update);
                    }
                }
                3 => {
                    let i = rng.below(table.tuples().len());
                    if table.row(i).conflicting_holders(txn, LockMode::Share).is_empty() {
                        table.lock(i, txn, LockMode::Share);
                    }
                }
                _ => {
                    let at = open.iter().position(|&t| t == txn).unwrap();
                    open.remove(at);
                    table.finish(txn, rng.below(3) > 0);
                    assert!(table.tuples().iter().all(|t| t.pending.as_ref().is_none_or(|(o, _)| *o != txn)
                        && t.locks.iter().all(|(o, _)| *o != txn)
                        && t.replacing != Some(txn)));
                }
            }
            let reader = if rng.below(2) == 0 { 0 } else { txn };
            for org in ORGS {
                for env in [Env::Sandbox, Env::Live] {
                    let scope = Scope::new(org, env);
                    for id in IDS {
                        let wanted = |r: &CustomerRow| r.scope_is(&scope) && r.id.as_deref() == Some(id);
                        let by_id = found(&table, reader, RowKey::id(&scope, id), &wanted);
                        assert_eq!(by_id, scanned(&table, reader, &wanted), "step {step}: id {id}");
                        let except = (rng.below(3) == 0).then(|| rng.below(table.tuples().len()));
                        let probed = table.unique_probe(txn, except, || RowKey::id(&scope, id), wanted);
                        let expected = probe_by_scan(&table, txn, except, &wanted);
                        assert_eq!(probed, expected, "step {step}: probe {id}");
                        lookups += 2;
                    }
                    let email = "x@example.com";
                    let wanted = |r: &CustomerRow| {
                        r.scope_is(&scope) && r.idless_email_key().as_deref() == Some(email)
                    };
                    let by_email = found(&table, reader, RowKey::email(&scope, email), &wanted);
                    assert_eq!(by_email, scanned(&table, reader, &wanted), "step {step}: email");
                    let probed = table.unique_probe(txn, None, || RowKey::email(&scope, email), wanted);
                    assert_eq!(probed, probe_by_scan(&table, txn, None, &wanted), "step {step}: email probe");
                    lookups += 2;
                }
            }
            let internal = format!("cus_{}", rng.below(step + 1));
            let wanted = |r: &CustomerRow| r.internal_id == internal;
            let by_internal = found(&table, reader, RowKey::internal(&internal), &wanted);
            assert_eq!(by_internal, scanned(&table, reader, &wanted), "step {step}: internal id");
        }
        assert!(table.is_indexed() && table.tuples().len() > 10 * INDEX_FROM, "{}", table.tuples().len());
        assert!(lookups > 50_000);
    }
}
