//! A request's connection to the in-memory world, and the smallest driver.
//!
//! A [`MemConn`] does no work itself: each backend call leaves its [`Op`]
//! in the connection's mailbox and waits. A driver takes the op, applies it
//! to the [`World`] when it chooses, and leaves the [`Outcome`]. This is
//! what lets the stepper decide every interleaving; [`run_alone`] is the
//! trivial driver that answers each op at once.
//!
//! A taped connection ([`MemConn::taped`]) keeps what its request's code
//! got from it ([`Tape`]): the code is a function of that, so a fresh
//! future on a connection that plays the tape back
//! ([`MemConn::playing`]) runs to where the first one was without the
//! world (a driver that keeps snapshots of its run resumes it so).

use std::cell::RefCell;
use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::backend::{Backend, CacheStamp, Op, Outcome, Point};

use super::clock::SharedClock;
use super::database::RequestId;
use super::world::{Fault, World};

#[derive(Debug, Default)]
struct Mailbox {
    op: Option<Op>,
    answer: Option<Outcome>,
}

/// Answers an op at once, blocking the thread if it must wait.
pub type Direct = Rc<dyn Fn(&Op) -> Outcome>;

/// One thing a request's code got from its connection.
#[derive(Debug, Clone)]
enum Got {
    Answer(Box<Outcome>),
    Now(u64),
    GuardTime(u64),
    Stamp(CacheStamp),
}

/// Everything a request's code got from its connection so far, in order:
/// a list shared with every earlier copy (a copy costs nothing).
#[derive(Debug, Clone, Default)]
pub struct Tape(Option<Arc<Got1>>);

#[derive(Debug)]
struct Got1 {
    got: Got,
    before: Tape,
}

impl Tape {
    fn push(&mut self, got: Got) {
        let before = std::mem::take(self);
        *self = Tape(Some(Arc::new(Got1 { got, before })));
    }

    /// What it holds, the last first.
    fn last_first(&self) -> Vec<Got> {
        let mut all = Vec::new();
        let mut at = &self.0;
        while let Some(node) = at {
            all.push(node.got.clone());
            at = &node.before.0;
        }
        all
    }
}

/// A connection's tape: kept (taped), and what it still plays back.
#[derive(Debug, Default)]
struct Taping {
    on: bool,
    kept: Tape,
    /// The kept tape is to be played back: its entries are copied out at
    /// the first thing the code asks for (a code made again and never
    /// polled copies none).
    to_play: bool,
    /// The rest to play back, the last first.
    playing: Vec<Got>,
}

/// One request's connection: a mailbox between the request and its driver
/// (or, made with [`MemConn::direct`], a function that answers at once).
#[derive(Clone)]
pub struct MemConn {
    mailbox: Rc<RefCell<Mailbox>>,
    direct: Option<Direct>,
    clock_ms: SharedClock,
    seq: SharedClock,
    stamps: SharedClock,
    time_reads: SharedClock,
    guard_reads: SharedClock,
    /// How far the serving app instance's clock is off.
    skew_ms: i64,
    taping: Rc<RefCell<Taping>>,
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
        MemConn {
            mailbox: Rc::default(),
            direct: None,
            clock_ms: world.clock(),
            seq: world.logical_clock(),
            stamps: world.stamp_counter(),
            time_reads: world.time_read_counter(),
            guard_reads: world.guard_read_counter(),
            skew_ms: 0,
            taping: Rc::default(),
        }
    }

    /// The same connection, keeping its tape.
    pub fn taped(self) -> MemConn {
        self.taping.borrow_mut().on = true;
        self
    }

    /// The same connection, taped, playing `tape` back first: a request's
    /// code on it gets what the tape holds, in order, with no op in its
    /// mailbox and no reading of the world's clocks (counted or not), then
    /// goes on as on any connection. A code that asks for something else
    /// than the tape holds next is not the one taped: that panics.
    pub fn playing(self, tape: &Tape) -> MemConn {
        {
            let mut taping = self.taping.borrow_mut();
            taping.on = true;
            taping.to_play = true;
            taping.kept = tape.clone();
        }
        self
    }

    /// What the request's code has got so far (empty unless taped).
    pub fn tape(&self) -> Tape {
        self.taping.borrow().kept.clone()
    }

    /// The next thing to play back, if any is left, taken by `pick`; a
    /// code that `asked` for something else is not the one taped.
    fn play<T>(&self, asked: std::fmt::Arguments<'_>, pick: impl FnOnce(Got) -> Result<T, Got>) -> Option<T> {
        let got = {
            let mut taping = self.taping.borrow_mut();
            if std::mem::take(&mut taping.to_play) {
                taping.playing = taping.kept.last_first();
            }
            taping.playing.pop()?
        };
        Some(
            pick(got)
                .unwrap_or_else(|other| panic!("a tape played back gave {other:?} where its code {asked}")),
        )
    }

    /// A reading of this instance's clock for the guard, counted.
    fn guard_now(&self) -> u64 {
        self.guard_reads.set(self.guard_reads.get() + 1);
        self.clock_ms.get().saturating_add_signed(self.skew_ms)
    }

    fn keep(&self, got: impl FnOnce() -> Got) {
        let mut taping = self.taping.borrow_mut();
        if taping.on {
            taping.kept.push(got());
        }
    }

    /// The same connection on an app instance whose clock is `skew_ms` off.
    pub fn skewed(self, skew_ms: i64) -> MemConn {
        MemConn { skew_ms, ..self }
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

impl Backend for MemConn {
    async fn perform(&self, op: Op) -> Outcome {
        if let Some(answer) = &self.direct {
            return answer(&op);
        }
        if let Some(outcome) = self.play(format_args!("asked for {op:?}"), |got| match got {
            Got::Answer(outcome) => Ok(*outcome),
            other => Err(other),
        }) {
            return outcome;
        }
        {
            let mut mailbox = self.mailbox.borrow_mut();
            assert!(mailbox.op.is_none() && mailbox.answer.is_none(), "a request has one op in flight");
            mailbox.op = Some(op);
        }
        let outcome = Parked { mailbox: &self.mailbox }.await;
        self.keep(|| Got::Answer(Box::new(outcome.clone())));
        outcome
    }

    /// This instance's clock: the virtual clock, skewed.
    fn now_ms(&self) -> u64 {
        if let Some(now) = self.play(format_args!("read the clock"), |got| match got {
            Got::Now(now) => Ok(now),
            other => Err(other),
        }) {
            return now;
        }
        self.time_reads.set(self.time_reads.get() + 1);
        let now = self.clock_ms.get().saturating_add_signed(self.skew_ms);
        self.keep(|| Got::Now(now));
        now
    }

    /// This instance's clock, counted apart from [`MemConn::now_ms`]'s
    /// readings: what it gives only a stale-write guard compares.
    fn guard_time_ms(&self) -> u64 {
        if let Some(now) = self.play(format_args!("read the guard's clock"), |got| match got {
            Got::GuardTime(now) => Ok(now),
            other => Err(other),
        }) {
            return now;
        }
        let now = self.guard_now();
        self.keep(|| Got::GuardTime(now));
        now
    }

    fn read_stamp(&self) -> CacheStamp {
        if let Some(stamp) = self.play(format_args!("took a read stamp"), |got| match got {
            Got::Stamp(stamp) => Ok(stamp),
            other => Err(other),
        }) {
            return stamp;
        }
        self.stamps.set(self.stamps.get() + 1);
        let stamp = CacheStamp { seq: self.seq.get(), epoch: 0, time_ms: self.guard_now() };
        self.keep(|| Got::Stamp(stamp));
        stamp
    }
}
