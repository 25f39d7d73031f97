//! The database written out for a search that caches states: what it
//! holds, in a canonical form (see [`Database::fingerprint`]).

use std::collections::BTreeMap;

use super::store::{Indexed, Table, Tuple, TxnId};
use super::{Database, RequestId, Session, Wait, WaitNote};

impl Database {
    /// Writes what the database holds to `out`, for a search that caches
    /// states, in a canonical form: two databases that write the same text
    /// answer every statement alike from here on. Left out: the catalog
    /// and constraints (fixed for a run), the record of touches (it only
    /// measures), and the counters of transactions and waits begun. A
    /// transaction is written as the request whose transaction it is (`r2`),
    /// or `ended` (transactions are only ever told apart, and a later one
    /// is new in either database), a wait's place in line as its rank among
    /// the waits now (waits are only ever ordered, and a later one comes
    /// after all of them in either).
    pub fn fingerprint(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        // Every field named: one added must be placed here or left out here.
        let Database {
            catalog: _,
            constraints: _,
            customers,
            products,
            usage,
            advisory,
            next_txn: _,
            sessions,
            breaches,
            waits_begun: _,
            touches: _,
            pending_deductions,
            deductions,
        } = self;
        let owners: BTreeMap<TxnId, RequestId> =
            sessions.iter().filter_map(|(r, s)| s.txn.map(|t| (t, r))).collect();
        let txn = |t: TxnId| -> String {
            match (t, owners.get(&t)) {
                (0, _) => "none".to_owned(),
                (_, Some(r)) => format!("r{r}"),
                (_, None) => "ended".to_owned(),
            }
        };
        let txns = |ts: &[TxnId]| ts.iter().map(|&t| txn(t)).collect::<Vec<_>>();
        let mut seqs: Vec<u64> =
            sessions.iter().filter_map(|(_, s)| s.wait.as_ref().map(|w| w.seq)).collect();
        seqs.sort_unstable();
        let rank = |seq: u64| seqs.partition_point(|&s| s < seq);
        fn table<T: std::fmt::Debug + Clone + Indexed>(
            out: &mut impl std::fmt::Write,
            table: &Table<T>,
            txn: &impl Fn(TxnId) -> String,
        ) -> std::fmt::Result {
            // A table's index is made from its rows.
            for Tuple { committed, pending, locks, replacing } in table.tuples() {
                write!(out, "[{committed:?}|")?;
                if let Some((owner, value)) = pending {
                    write!(out, "{}:{value:?}", txn(*owner))?;
                }
                for (holder, mode) in locks {
                    write!(out, "|{}:{mode:?}", txn(*holder))?;
                }
                write!(out, "|{:?}]", replacing.map(txn))?;
            }
            Ok(())
        }
        table(out, customers, &txn)?;
        table(out, products, &txn)?;
        table(out, usage, &txn)?;
        for (key, holder) in advisory {
            write!(out, "{key}:{}|", txn(*holder))?;
        }
        for (request, session) in sessions.iter() {
            let Session { txn: own, implicit, written, candidates, pending_id, wait, blocked_by } = session;
            write!(
                out,
                "{request}:{:?}|{implicit}|{written:?}|{candidates:?}|{pending_id:?}|",
                own.map(txn)
            )?;
            if let Some(Wait { holders, row, advisory, seq }) = wait {
                write!(out, "{:?}|{row:?}|{advisory:?}|{}|", txns(holders), rank(*seq))?;
            }
            if let Some(WaitNote { holders, row, advisory }) = blocked_by {
                write!(out, "{:?}|{row:?}|{advisory:?}|", txns(holders))?;
            }
        }
        let pending: Vec<(String, &(RequestId, u64))> =
            pending_deductions.iter().map(|(t, d)| (txn(*t), d)).collect();
        write!(out, "{breaches:?}|{pending:?}|{deductions:?}")
    }
}
