//! Source sets' races (see the module above): after each run, the races
//! whose second decision is new in it, each asking the decision before
//! the first to try a mover that could go first in the reversed order.

use super::{Bits, Dfs, Event, Frame, Mover, Reduction};
use crate::drive::stepper::Footprint;
use crate::explore::schedulers::CLOCK_MOVES_MS;
use crate::input::schedule::Token;

/// What decision `m` of the run just made touched.
fn made(frames: &[Frame], m: usize) -> &Footprint {
    frames[m].made.as_ref().expect("every decision of the run was made once")
}

impl Dfs {
    /// Source sets: finds the races of the run just made (those whose
    /// second decision is new in it, and those of the clock moves still
    /// allowed at its end) and asks for their reversals. A probe (a unit
    /// another shard owns) only records what happens before each of its
    /// decisions, which later runs build on; its races are the owner's.
    pub(super) fn add_reversals(&mut self, probed: bool) {
        let n = self.frames.len();
        let movers: Vec<Mover> = self.frames.iter().map(|f| Mover::of(f.current())).collect();
        for j in self.fresh..n {
            let mut before = Bits::with_len(n);
            for m in 0..j {
                if movers[m] == movers[j]
                    || made(&self.frames, m).conflicts_among(made(&self.frames, j), self.max_ticks)
                {
                    before.set(m);
                    before.union(&self.frames[m].before);
                }
            }
            self.frames[j].before = before;
        }
        if probed {
            return;
        }
        for j in self.fresh..n {
            let before = self.frames[j].before.clone();
            self.reverse_races(&movers, (j, movers[j], None, &before));
        }
        // A clock move taken uses up the bound, so it disables the other
        // amounts: each could have gone in its place (they conflict, and
        // nothing between them), so each is tried there too.
        // Under wakeup trees, each is the race of the move taken with a
        // move of the other amount right after it: asked for alone, it is
        // not where every option tried here commutes with it.
        let floor = self.task.as_ref().map_or(0, |task| task.floor());
        let wakeup = self.reduction == Reduction::WakeupTrees;
        let mut asked = Vec::new();
        for (depth, (mover, frame)) in movers.iter().zip(&mut self.frames).enumerate().skip(self.fresh) {
            if let Mover::Clock(_) = mover {
                match self.task.as_mut() {
                    Some(task) if depth < floor => task.log.push(Request::Moves { depth }),
                    _ if wakeup => {
                        for ms in CLOCK_MOVES_MS.into_iter().filter(|&ms| Mover::Clock(ms) != *mover) {
                            if frame.options.contains(&Token::Tick { ms }) {
                                let tick = Footprint::of_move(ms);
                                asked.push(frame.insert(vec![(Mover::Clock(ms), tick)], self.max_ticks));
                            }
                        }
                    }
                    _ => frame.offer_moves(),
                }
            }
        }
        for asked in asked {
            self.note(asked);
        }
        let ticks = movers.iter().filter(|m| matches!(m, Mover::Clock(_))).count();
        if !self.blocked && ticks < self.max_ticks {
            for ms in CLOCK_MOVES_MS {
                let tick = Footprint::of_move(ms);
                let mover = Mover::Clock(ms);
                let mut before = Bits::with_len(n);
                for (m, frame) in self.frames.iter().enumerate() {
                    if movers[m] == mover || made(&self.frames, m).conflicts_among(&tick, self.max_ticks) {
                        before.set(m);
                        before.union(&frame.before);
                    }
                }
                self.reverse_races(&movers, (n, mover, Some(&tick), &before));
            }
        }
    }

    /// The races whose second decision is `j` (by `mover`, after the
    /// decisions `before`; a clock move still allowed at the run's end when
    /// `tick` is what it would touch), each reversed where it can be.
    fn reverse_races(
        &mut self,
        movers: &[Mover],
        (j, mover, tick, before): (usize, Mover, Option<&Footprint>, &Bits),
    ) {
        // Decisions that happen before something that happens before j:
        // those are not j's immediate predecessors.
        let mut shadowed = Bits::with_len(movers.len());
        for m in before.iter() {
            shadowed.union(&self.frames[m].before);
        }
        let racing: Vec<usize> = before.iter().filter(|&i| !shadowed.has(i) && movers[i] != mover).collect();
        for i in racing {
            if let Mover::Request(r) = mover {
                // The first decision woke the second's request: no reversal.
                let woke = !self.frames[i].runnable(r) && self.frames[i + 1].runnable(r);
                if woke {
                    continue;
                }
            }
            self.reverse(movers, i, (j, mover, tick, before));
        }
    }

    /// Asks the decision before `i` to try a mover that could go first in
    /// the order where `j` comes before `i`: one whose first decision among
    /// those after `i` and not after it (then j) follows none of them.
    /// Under wakeup trees, asks it for those decisions in order, then j's.
    fn reverse(
        &mut self,
        movers: &[Mover],
        i: usize,
        (j, mover, tick, before): (usize, Mover, Option<&Footprint>, &Bits),
    ) {
        let mut later = Bits::with_len(movers.len());
        let mut initials: Vec<Mover> = Vec::new();
        for (k, (&moved, frame)) in movers.iter().zip(&self.frames).enumerate().take(j).skip(i + 1) {
            let after_k = &frame.before;
            if after_k.has(i) {
                continue;
            }
            if !after_k.meets(&later) && !initials.contains(&moved) {
                initials.push(moved);
            }
            later.set(k);
        }
        if !before.meets(&later) && !initials.contains(&mover) {
            initials.push(mover);
        }
        if let Some(task) = self.task.as_mut().filter(|task| i < task.floor()) {
            task.log.push(Request::Reverse { depth: i, initials });
            return;
        }
        let asked = if self.reduction == Reduction::WakeupTrees {
            let mut v: Vec<Event> =
                later.iter().map(|k| (movers[k], made(&self.frames, k).clone())).collect();
            v.push((mover, tick.unwrap_or_else(|| made(&self.frames, j)).clone()));
            self.frames[i].insert(v, self.max_ticks)
        } else {
            self.frames[i].ask(&initials)
        };
        self.note(asked);
    }

    fn note(&mut self, Asked { pruned, fallback }: Asked) {
        self.pruned |= pruned;
        self.fallbacks += u64::from(fallback);
    }
}

/// What asking a frame to try a mover did to the search's counts.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Asked {
    /// The preemption bound left an option out.
    pub(super) pruned: bool,
    /// No mover asked for was offered: every option is tried.
    fallback: bool,
}

impl Frame {
    /// Asks this decision to try one of `initials` (a race's reversal):
    /// nothing if one is tried or asleep here, else the first offered,
    /// else every option.
    pub(super) fn ask(&mut self, initials: &[Mover]) -> Asked {
        let tokens: Vec<Token> = initials.iter().map(|m| m.token()).collect();
        // An initial already tried here, or asleep here (covered
        // elsewhere, which is what adding it would amount to), will do.
        if tokens.iter().any(|t| self.tries(t) || self.asleep(t)) {
            return Asked::default();
        }
        let enabled: Vec<Token> = tokens.iter().copied().filter(|t| self.options.contains(t)).collect();
        if let Some(&token) = enabled.first() {
            self.add(token);
            return Asked::default();
        }
        let bounded = initials.iter().any(|m| matches!(m, Mover::Request(r) if self.bounded_out.contains(r)));
        if bounded {
            return Asked { pruned: true, fallback: false };
        }
        for token in self.options.clone() {
            self.add(token);
        }
        Asked { pruned: !self.bounded_out.is_empty(), fallback: true }
    }

    /// Each clock move a taken clock move stood for (it used up the
    /// bound), where offered.
    pub(super) fn offer_moves(&mut self) {
        for ms in CLOCK_MOVES_MS {
            if self.options.contains(&Token::Tick { ms }) {
                self.add(Token::Tick { ms });
            }
        }
    }
}

/// What a thread's search asks of a decision of the tree's (`tree`),
/// which the tree does in the search's order.
#[derive(Debug)]
pub(super) enum Request {
    /// `Frame::ask` at this depth.
    Reverse { depth: usize, initials: Vec<Mover> },
    /// `Frame::offer_moves` at this depth.
    Moves { depth: usize },
}
