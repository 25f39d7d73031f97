//! Rows, transactions and row locks: the part of Postgres the flows lean on.
//!
//! Models READ COMMITTED: every statement reads the latest committed
//! version of each row (plus its own transaction's writes). A row written
//! by an open transaction carries that transaction's pending version and
//! lock; other transactions that need the row wait for it ([`Blocked`]).
//! Leaves out: MVCC snapshots older than a statement, vacuum, savepoints,
//! predicate locks (nothing runs above READ COMMITTED).

use serde::Serialize;

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

/// A table: rows in insertion order (their position is their row id).
#[derive(Debug, Clone)]
pub struct Table<T> {
    pub rows: Vec<Tuple<T>>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table { rows: Vec::new() }
    }
}

impl<T: Clone> Table<T> {
    /// Rows `txn` sees, with their row ids.
    pub fn visible(&self, txn: TxnId) -> impl Iterator<Item = (usize, &T)> {
        self.rows.iter().enumerate().filter_map(move |(i, t)| t.visible(txn).map(|v| (i, v)))
    }

    /// Checks that a row with a unique key (`has_key`) may be written by `txn`
    /// (excluding row `except`, the row being updated):
    /// `Err(Blocked)` when an open transaction holds a version with that
    /// key; `Ok(Some(row))` when a live version has it (a 23505);
    /// `Ok(None)` when it is free.
    pub fn unique_probe(
        &self,
        txn: TxnId,
        except: Option<usize>,
        has_key: impl Fn(&T) -> bool,
    ) -> Result<Option<usize>, Blocked> {
        for (i, tuple) in self.rows.iter().enumerate() {
            if Some(i) == except {
                continue;
            }
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

    pub fn finish(&mut self, txn: TxnId, commit: bool) {
        for tuple in &mut self.rows {
            tuple.finish(txn, commit);
        }
    }
}
