//! The sessions of the requests that have one: a map from request to
//! session kept as a vector sorted by request, since a database holds a
//! handful at a time (one per request in flight) and looks one up on
//! every statement, where a vector indexed by request number would grow
//! with every request a server has served.

use std::ops::Index;

use super::RequestId;

#[derive(Debug, Clone)]
pub(super) struct Sessions<S> {
    sorted: Vec<(RequestId, S)>,
}

impl<S> Default for Sessions<S> {
    fn default() -> Self {
        Sessions { sorted: Vec::new() }
    }
}

impl<S: Default> Sessions<S> {
    fn position(&self, request: RequestId) -> Result<usize, usize> {
        self.sorted.binary_search_by_key(&request, |(r, _)| *r)
    }

    /// `request`'s session, made if it has none.
    pub fn entry(&mut self, request: RequestId) -> &mut S {
        let at = match self.position(request) {
            Ok(at) => at,
            Err(at) => {
                self.sorted.insert(at, (request, S::default()));
                at
            }
        };
        &mut self.sorted[at].1
    }

    pub fn get(&self, request: RequestId) -> Option<&S> {
        self.position(request).ok().map(|at| &self.sorted[at].1)
    }

    pub fn get_mut(&mut self, request: RequestId) -> Option<&mut S> {
        self.position(request).ok().map(|at| &mut self.sorted[at].1)
    }

    pub fn remove(&mut self, request: RequestId) {
        if let Ok(at) = self.position(request) {
            self.sorted.remove(at);
        }
    }

    /// Every session, by request, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (RequestId, &S)> {
        self.sorted.iter().map(|(r, s)| (*r, s))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (RequestId, &mut S)> {
        self.sorted.iter_mut().map(|(r, s)| (*r, s))
    }
}

impl<S: Default> Index<RequestId> for Sessions<S> {
    type Output = S;

    fn index(&self, request: RequestId) -> &S {
        self.get(request).expect("the request has a session")
    }
}

#[cfg(test)]
mod tests {
    use crate::backend::mem::database::Database;
    use crate::backend::Constraints;
    use crate::model::Catalog;

    /// A server's requests come and go: an ended request's session is
    /// forgotten, one that still holds a transaction is not.
    #[test]
    fn an_ended_request_leaves_no_session() {
        let mut db = Database::new(Catalog::new(Vec::new(), false), Constraints::default());
        for request in 0..1_000 {
            db.begin(request);
            db.commit(request);
            db.forget_session(request);
        }
        assert_eq!(db.sessions.iter().count(), 0);
        db.begin(7);
        db.forget_session(7);
        assert_eq!(db.open_txn(7), Some(1_001), "kept while its transaction is open");
        db.commit(7);
        db.forget_session(7);
        assert_eq!(db.sessions.iter().count(), 0);
    }
}
