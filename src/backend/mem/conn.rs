//! A request's connection to the in-memory world, and the smallest driver.
//!
//! A [`MemConn`] does no work itself: each backend call leaves its [`Op`]
//! in the connection's mailbox and waits. A driver takes the op, applies it
//! to the [`World`] when it chooses, and leaves the [`Outcome`]. This is
//! what lets the stepper decide every interleaving; [`run_alone`] is the
//! trivial driver that answers each op at once.

use std::cell::RefCell;
use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::backend::ops::*;
use crate::backend::{Backend, BackendError, CacheError, DbError, StripeError};
use crate::model::{CustomerRow, FullCustomer, Product, Scope};

use super::world::{Fault, RequestId, SharedClock, World};

#[derive(Debug, Default)]
struct Mailbox {
    op: Option<Op>,
    answer: Option<Outcome>,
}

/// Answers an op at once, blocking the thread if it must wait.
pub type Direct = Rc<dyn Fn(&Op) -> Outcome>;

/// One request's connection: a mailbox between the request and its driver
/// (or, made with [`MemConn::direct`], a function that answers at once).
#[derive(Clone)]
pub struct MemConn {
    mailbox: Rc<RefCell<Mailbox>>,
    direct: Option<Direct>,
    clock_ms: SharedClock,
    seq: SharedClock,
}

impl std::fmt::Debug for MemConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemConn")
            .field("mailbox", &self.mailbox)
            .field("direct", &self.direct.is_some())
            .finish()
    }
}

impl MemConn {
    pub fn new(world: &World) -> MemConn {
        MemConn { mailbox: Rc::default(), direct: None, clock_ms: world.clock(), seq: world.logical_clock() }
    }

    /// A connection whose ops are answered by `answer` as they are made:
    /// its futures never wait, so any executor (even `block_on`) runs them.
    pub fn direct(world: &World, answer: Direct) -> MemConn {
        MemConn { direct: Some(answer), ..MemConn::new(world) }
    }

    /// The op the request is parked on, taken out of the mailbox.
    pub fn take_op(&self) -> Option<Op> {
        self.mailbox.borrow_mut().op.take()
    }

    /// Answers the op the request is parked on.
    pub fn answer(&self, outcome: Outcome) {
        let mut mailbox = self.mailbox.borrow_mut();
        assert!(mailbox.answer.is_none(), "answered twice");
        mailbox.answer = Some(outcome);
    }

    async fn perform(&self, op: Op) -> Outcome {
        if let Some(answer) = &self.direct {
            return answer(&op);
        }
        {
            let mut mailbox = self.mailbox.borrow_mut();
            assert!(mailbox.op.is_none() && mailbox.answer.is_none(), "a request has one op in flight");
            mailbox.op = Some(op);
        }
        Parked { mailbox: &self.mailbox }.await
    }
}

/// Pending until the driver has answered.
struct Parked<'a> {
    mailbox: &'a RefCell<Mailbox>,
}

impl Future for Parked<'_> {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Outcome> {
        match self.mailbox.borrow_mut().answer.take() {
            Some(outcome) => Poll::Ready(outcome),
            None => Poll::Pending,
        }
    }
}

/// Polls a request's future once with a waker that does nothing: the
/// drivers know when to poll again (after answering its op).
pub fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

/// What an injected fault does to a request at a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// The request dies before the operation; its transaction rolls back.
    Crash,
    Inject(Fault),
}

/// How a request driven alone ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished<T> {
    Done(T),
    Crashed { at: Point },
}

/// Runs one request to its end with nobody else moving: every op is
/// applied as soon as it is asked for. `fault_at` is asked before each
/// named point. Nothing else runs, so nothing can block; a block here is a
/// bug in the model and panics.
pub fn run_alone<F: Future>(
    world: &mut World,
    request: RequestId,
    conn: &MemConn,
    future: F,
    mut fault_at: impl FnMut(Point) -> Option<FaultAction>,
) -> Finished<F::Output> {
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = poll_once(future.as_mut()) {
            return Finished::Done(output);
        }
        let op = conn.take_op().expect("a pending request is parked on an op");
        let mut fault = None;
        if let Some(point) = op.point() {
            match fault_at(point) {
                Some(FaultAction::Crash) => {
                    world.crash(request);
                    return Finished::Crashed { at: point };
                }
                Some(FaultAction::Inject(f)) => fault = Some(f),
                None => {}
            }
        }
        let outcome = match world.apply(request, &op, fault) {
            Ok(outcome) => outcome,
            Err(blocked) => panic!("request {request} blocked on txn {} with nobody else running", blocked.0),
        };
        conn.answer(outcome);
    }
}

/// Unwraps the outcome an op is known to produce. The world answers each
/// op with its own outcome kind; anything else is a bug.
macro_rules! expect_outcome {
    ($outcome:expr, $($pattern:pat => $value:expr),+ $(,)?) => {
        match $outcome {
            $($pattern => $value,)+
            other => unreachable!("unexpected outcome {other:?}"),
        }
    };
}

impl Backend for MemConn {
    async fn begin(&self) -> Result<(), DbError> {
        expect_outcome!(self.perform(Op::Begin).await, Outcome::Done => Ok(()))
    }

    async fn lookup_id(
        &self,
        scope: &Scope,
        id: &str,
        lock: RowLock,
    ) -> Result<Option<CustomerRow>, DbError> {
        let op = Op::LookupId { scope: scope.clone(), id: id.to_owned(), lock };
        expect_outcome!(self.perform(op).await,
            Outcome::Row { row } => Ok(row),
            Outcome::DbError { error } => Err(error))
    }

    async fn lookup_email(&self, scope: &Scope, email: &str) -> Result<Vec<CustomerRow>, DbError> {
        let op = Op::LookupEmail { scope: scope.clone(), email: email.to_owned() };
        expect_outcome!(self.perform(op).await,
            Outcome::Rows { rows } => Ok(rows),
            Outcome::DbError { error } => Err(error))
    }

    async fn insert(&self, customer: NewCustomer, on_conflict: OnConflict) -> Result<InsertOutcome, DbError> {
        expect_outcome!(self.perform(Op::Insert { customer, on_conflict }).await,
            Outcome::Insert { outcome } => Ok(outcome),
            Outcome::DbError { error } => Err(error))
    }

    async fn claim(
        &self,
        scope: &Scope,
        target: ClaimTarget,
        new_id: &str,
    ) -> Result<Option<CustomerRow>, DbError> {
        let op = Op::Claim { scope: scope.clone(), target, new_id: new_id.to_owned() };
        expect_outcome!(self.perform(op).await,
            Outcome::Row { row } => Ok(row),
            Outcome::DbError { error } => Err(error))
    }

    async fn fill_fields(
        &self,
        scope: &Scope,
        internal_id: &str,
        fill: Fill,
    ) -> Result<Option<CustomerRow>, DbError> {
        let op = Op::FillFields { scope: scope.clone(), internal_id: internal_id.to_owned(), fill };
        expect_outcome!(self.perform(op).await,
            Outcome::Row { row } => Ok(row),
            Outcome::DbError { error } => Err(error))
    }

    async fn list_defaults(&self, scope: &Scope) -> Result<Vec<Product>, DbError> {
        expect_outcome!(self.perform(Op::ListDefaults { scope: scope.clone() }).await,
            Outcome::Products { products } => Ok(products),
            Outcome::DbError { error } => Err(error))
    }

    async fn stripe_create(
        &self,
        idempotency_key: &str,
        params: StripeParams,
    ) -> Result<String, StripeError> {
        let op = Op::StripeCreate { idempotency_key: idempotency_key.to_owned(), params };
        expect_outcome!(self.perform(op).await,
            Outcome::StripeCustomer { stripe_id } => Ok(stripe_id),
            Outcome::StripeError { error } => Err(error))
    }

    async fn set_processor(
        &self,
        scope: &Scope,
        internal_id: &str,
        stripe_id: &str,
        only_if_null: bool,
    ) -> Result<bool, DbError> {
        let op = Op::SetProcessor {
            scope: scope.clone(),
            internal_id: internal_id.to_owned(),
            stripe_id: stripe_id.to_owned(),
            only_if_null,
        };
        expect_outcome!(self.perform(op).await,
            Outcome::Updated { updated } => Ok(updated),
            Outcome::DbError { error } => Err(error))
    }

    async fn attach_default(
        &self,
        scope: &Scope,
        product: NewCustomerProduct,
        on_conflict: OnConflict,
    ) -> Result<AttachOutcome, DbError> {
        let op = Op::AttachDefault { scope: scope.clone(), product, on_conflict };
        expect_outcome!(self.perform(op).await,
            Outcome::Attach { outcome } => Ok(outcome),
            Outcome::DbError { error } => Err(error))
    }

    async fn commit(&self) -> Result<(), DbError> {
        expect_outcome!(self.perform(Op::Commit).await,
            Outcome::Done => Ok(()),
            Outcome::DbError { error } => Err(error))
    }

    async fn rollback(&self) -> Result<(), DbError> {
        expect_outcome!(self.perform(Op::Rollback).await,
            Outcome::Done => Ok(()),
            Outcome::DbError { error } => Err(error))
    }

    async fn db_read(
        &self,
        scope: &Scope,
        key: CustomerKey,
        lock: RowLock,
    ) -> Result<Option<FullCustomer>, DbError> {
        expect_outcome!(self.perform(Op::DbRead { scope: scope.clone(), key, lock }).await,
            Outcome::Full { customer } => Ok(customer.map(|c| *c)),
            Outcome::DbError { error } => Err(error))
    }

    async fn cache_read(&self, key: &CacheKey) -> Result<CacheRead, CacheError> {
        expect_outcome!(self.perform(Op::CacheRead { key: key.clone() }).await,
            Outcome::Cache { read } => Ok(*read),
            Outcome::CacheError { error } => Err(error))
    }

    async fn cache_write(
        &self,
        key: &CacheKey,
        value: &FullCustomer,
        stamp: CacheStamp,
        mode: CacheWriteMode,
    ) -> Result<CacheWriteOutcome, CacheError> {
        let op = Op::CacheWrite { key: key.clone(), value: Box::new(value.clone()), stamp, mode };
        expect_outcome!(self.perform(op).await,
            Outcome::CacheWrite { outcome } => Ok(outcome),
            Outcome::CacheError { error } => Err(error))
    }

    async fn cache_invalidate(&self, key: &CacheKey) -> Result<(), CacheError> {
        expect_outcome!(self.perform(Op::CacheInvalidate { key: key.clone() }).await,
            Outcome::Done => Ok(()),
            Outcome::CacheError { error } => Err(error))
    }

    async fn deduct(
        &self,
        scope: &Scope,
        internal_id: &str,
        feature_id: &str,
        value: i64,
        target: DeductTarget,
    ) -> Result<DeductOutcome, BackendError> {
        let op = Op::Deduct {
            scope: scope.clone(),
            internal_id: internal_id.to_owned(),
            feature_id: feature_id.to_owned(),
            value,
            target,
        };
        expect_outcome!(self.perform(op).await,
            Outcome::Deduct { outcome } => Ok(outcome),
            Outcome::DbError { error } => Err(error.into()),
            Outcome::CacheError { error } => Err(error.into()))
    }

    async fn sync_usage(
        &self,
        key: &CacheKey,
        internal_id: &str,
        feature_id: &str,
    ) -> Result<SyncOutcome, BackendError> {
        let op = Op::SyncUsage {
            key: key.clone(),
            internal_id: internal_id.to_owned(),
            feature_id: feature_id.to_owned(),
        };
        expect_outcome!(self.perform(op).await,
            Outcome::Sync { outcome } => Ok(outcome),
            Outcome::DbError { error } => Err(error.into()),
            Outcome::CacheError { error } => Err(error.into()))
    }

    fn now_ms(&self) -> u64 {
        self.clock_ms.get()
    }

    fn read_stamp(&self) -> CacheStamp {
        CacheStamp { seq: self.seq.get(), epoch: 0 }
    }
}
