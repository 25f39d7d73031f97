//! Who moves next: the [`Chooser`] a stepper run asks at every decision,
//! what it sees there ([`View`]), and the two that follow a given
//! schedule: [`Replay`] (strictly) and [`Lenient`] (skipping what cannot
//! be followed, for shrinking).

use cusim::backend::Point;

use crate::input::schedule::{Schedule, Token};

use super::footprint::Footprint;
use super::snapshot::Snapshot;

/// What a chooser sees at a decision.
#[derive(Debug)]
pub struct View<'a> {
    /// The state the run is in, hashed (when the run's options ask for
    /// states: see [`super::RunOptions::states`]).
    pub state: Option<u128>,
    pub step: usize,
    /// The step at which the run stops, capped (a decision made at step
    /// `max_steps - 1` is the last).
    pub max_steps: usize,
    /// Requests that may move, ascending.
    pub runnable: &'a [usize],
    /// The request that made an operation last (an arrival or a clock
    /// move leaves it as it was).
    pub last: Option<usize>,
    /// Where each request is parked, if it is (a runnable request that is
    /// not is arriving).
    pub parked_at: &'a [Option<Point>],
    pub ticks_so_far: usize,
    /// What the previous decision touched.
    pub done: Option<&'a Footprint>,
}

impl View<'_> {
    /// Whether runnable request `request` is arriving (its next decision
    /// runs its code up to its first operation).
    pub fn arriving(&self, request: usize) -> bool {
        self.parked_at[request].is_none()
    }
}

/// Decides who moves. `None` means the default: the lowest runnable request.
pub trait Chooser {
    fn choose(&mut self, view: &View<'_>) -> Option<Token>;

    /// Whether the run is to stop where it is, unfinished, when `choose`
    /// has just chosen nothing (a search that has seen its state before).
    fn cut(&self) -> bool {
        false
    }

    /// Whether the next decision wants [`View::state`] (hashing the state
    /// costs; a search asks only at decisions it has not made before).
    fn wants_state(&self) -> bool {
        false
    }

    /// Whether it may keep snapshots of runs (their connections are then
    /// taped, which costs a copy of every answer).
    fn snapshots(&self) -> bool {
        false
    }

    /// Whether it keeps a snapshot of the run at the decision it has just
    /// made ([`Chooser::keep`]), taken before the decision is carried out.
    fn wants_snapshot(&self) -> bool {
        false
    }

    /// Keeps the snapshot it asked for.
    fn keep(&mut self, _snapshot: Snapshot) {}

    /// A snapshot kept earlier for the run to go on from, asked before
    /// its first decision; the chooser then goes on from the decision it
    /// was taken at.
    fn resume(&mut self) -> Option<&Snapshot> {
        None
    }
}

impl<C: Chooser + ?Sized> Chooser for &mut C {
    fn choose(&mut self, view: &View<'_>) -> Option<Token> {
        (**self).choose(view)
    }

    fn cut(&self) -> bool {
        (**self).cut()
    }

    fn wants_state(&self) -> bool {
        (**self).wants_state()
    }

    fn snapshots(&self) -> bool {
        (**self).snapshots()
    }

    fn wants_snapshot(&self) -> bool {
        (**self).wants_snapshot()
    }

    fn keep(&mut self, snapshot: Snapshot) {
        (**self).keep(snapshot)
    }

    fn resume(&mut self) -> Option<&Snapshot> {
        (**self).resume()
    }
}

/// A schedule given up front (replay): its tokens, then the default.
#[derive(Debug, Clone)]
pub struct Replay {
    tokens: std::vec::IntoIter<Token>,
}

impl Replay {
    pub fn new(schedule: &Schedule) -> Replay {
        Replay { tokens: schedule.0.clone().into_iter() }
    }
}

impl Chooser for Replay {
    fn choose(&mut self, _view: &View<'_>) -> Option<Token> {
        self.tokens.next()
    }
}

/// Replays tokens, skipping those that cannot be followed: a token that
/// names a request that cannot move is skipped, and a fault that cannot
/// happen where the request is parked is dropped.
pub struct Lenient {
    tokens: std::vec::IntoIter<Token>,
}

impl Lenient {
    pub fn new(schedule: &Schedule) -> Lenient {
        Lenient { tokens: schedule.0.clone().into_iter() }
    }
}

impl Chooser for Lenient {
    fn choose(&mut self, view: &View<'_>) -> Option<Token> {
        for token in self.tokens.by_ref() {
            match token {
                Token::Tick { .. } => return Some(token),
                Token::Run { request, fault } if view.runnable.contains(&request) => {
                    // An arrival has no point for a fault to happen at.
                    let fault =
                        view.parked_at[request].and_then(|point| fault.filter(|k| k.applies_to(point)));
                    return Some(Token::Run { request, fault });
                }
                Token::Run { .. } => continue,
            }
        }
        None
    }
}
