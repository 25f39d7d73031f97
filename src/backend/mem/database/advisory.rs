//! Advisory transaction locks (`pg_advisory_xact_lock`): a lock on a key
//! rather than a row, held until the holder's transaction ends. Postgres
//! keys them by a 64-bit number; the model by the text the Postgres
//! backend hashes into it (`org/env/key`), so two keys whose hashes
//! collide are distinct here (a chance of 2^-64).

use crate::model::Scope;

use super::store::Blocked;
use super::{Database, RequestId, Step, WaitNote};

/// The text an advisory lock on `key` in `scope` is taken on.
pub fn advisory_key(scope: &Scope, key: &str) -> String {
    format!("{}/{}/{key}", scope.org_id, scope.env.as_str())
}

impl Database {
    /// Takes the advisory lock on `key` for `request`'s transaction (a
    /// statement of its own outside one: taken and released at once), or
    /// waits for the transaction holding it.
    pub fn advisory_lock(&mut self, request: RequestId, scope: &Scope, key: &str) -> Step<()> {
        let key = advisory_key(scope, key);
        self.statement(request, |db, txn| match db.advisory.get(&key) {
            Some(&holder) if holder != txn => {
                let note = WaitNote { holders: vec![holder], row: None, advisory: Some(key.clone()) };
                db.session(request).blocked_by = Some(note);
                Err(Blocked(holder))
            }
            _ => {
                db.touch(super::Access::Write, Some(txn), || super::DbKey::advisory(&key));
                db.advisory.insert(key, txn);
                Ok(())
            }
        })
    }
}
