//! The database written out for a search that caches states: what it
//! holds, in a canonical form (see [`Database::fingerprint`]).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::fingerprint::Fingerprint;

use super::store::{Indexed, Table, Tuple, TxnId};
use super::{Database, RequestId, Session, Wait, WaitNote};

impl Database {
    /// Writes what the database holds to `out`, for a search that caches
    /// states, in a canonical form: two databases that write the same
    /// fingerprint answer every statement alike from here on. Left out: the catalog
    /// and constraints (fixed for a run), the record of touches (it only
    /// measures), and the counters of transactions and waits begun. A
    /// transaction is written as the request whose transaction it is, or
    /// as ended (transactions are only ever told apart, and a later one
    /// is new in either database), a wait's place in line as its rank among
    /// the waits now (waits are only ever ordered, and a later one comes
    /// after all of them in either).
    pub fn fingerprint(&self, out: &mut Fingerprint) {
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
        let txn = |t: TxnId| match (t, owners.get(&t)) {
            (0, _) => Txn::None,
            (_, Some(&r)) => Txn::Of(r),
            (_, None) => Txn::Ended,
        };
        let txns = |ts: &[TxnId]| ts.iter().map(|&t| txn(t)).collect::<Vec<_>>();
        let mut seqs: Vec<u64> =
            sessions.iter().filter_map(|(_, s)| s.wait.as_ref().map(|w| w.seq)).collect();
        seqs.sort_unstable();
        let rank = |seq: u64| seqs.partition_point(|&s| s < seq) as u64;
        fn table<T: Serialize + Clone + Indexed>(
            out: &mut Fingerprint,
            table: &Table<T>,
            txn: &impl Fn(TxnId) -> Txn,
        ) {
            // A table's index is made from its rows.
            out.add(&table.tuples().len());
            for Tuple { committed, pending, locks, replacing } in table.tuples() {
                out.add(committed);
                out.add(&pending.as_ref().map(|(owner, value)| (txn(*owner), value)));
                out.add(&locks.iter().map(|&(holder, mode)| (txn(holder), mode)).collect::<Vec<_>>());
                out.add(&replacing.map(txn));
            }
        }
        table(out, customers, &txn);
        table(out, products, &txn);
        table(out, usage, &txn);
        out.add(&advisory.iter().map(|(key, &holder)| (key, txn(holder))).collect::<Vec<_>>());
        out.add(&sessions.iter().count());
        for (request, session) in sessions.iter() {
            let Session { txn: own, implicit, written, candidates, pending_id, wait, blocked_by } = session;
            out.add(&(request, own.map(txn), implicit, written, candidates, pending_id));
            out.add(
                &wait
                    .as_ref()
                    .map(|Wait { holders, row, advisory, seq }| (txns(holders), row, advisory, rank(*seq))),
            );
            out.add(
                &blocked_by
                    .as_ref()
                    .map(|WaitNote { holders, row, advisory }| (txns(holders), row, advisory)),
            );
        }
        let pending: Vec<(Txn, &(RequestId, u64))> =
            pending_deductions.iter().map(|(t, d)| (txn(*t), d)).collect();
        out.add(&(breaches, pending, deductions));
    }
}

/// A transaction as a fingerprint writes it: none, the request whose
/// transaction it is, or one that has ended.
#[derive(Serialize)]
enum Txn {
    None,
    Of(RequestId),
    Ended,
}
