//! One exhaustive search on several threads (no shard) that makes
//! exactly the runs the search makes on one thread, whatever their
//! timing, with the work divided as finely as the search's own tree.
//!
//! The decisions of each run up to its `SPLIT_OPERATIONS`-th operation
//! are the *tree*'s, which the threads share: a node is one decision of
//! one prefix (a [`Frame`]: what may be chosen there, what sleeps, the
//! options to try). Below the tree, each (node, option) whose option ends
//! the tree for its run, or starts a prefix no run made yet, is a
//! *part*, which one thread runs whole as a search of its own: its own
//! frames below the tree, and the tree's frames on its path, which it
//! never moves on (`Dfs::task`).
//!
//! Why the runs are the one-thread search's:
//! - A part's runs depend only on its path: the decisions on it, and at
//!   each node the options tried before its own (whose footprints are its
//!   sleep set). A node's options only grow, at their end, so a part is
//!   launched only once every option before it at its node was made once
//!   (its footprint known), and what it sees then is what it would see
//!   on one thread.
//! - What a part does to the tree is the races of its runs that reverse
//!   at a node of the tree (`Request`). On one thread each is done right
//!   after its run, and a node's options are only read when the search
//!   moves on from it, after every part below it. Here a part logs them,
//!   and the tree does them in the search's order: a cursor walks the
//!   tree as the one-thread search would, taking each part's log in turn
//!   once the parts before it in that order are done (the part it is at
//!   is done as its runs come, the others when their turn comes). A node
//!   is done with when the cursor has passed every option it has, so no
//!   later log can reach it (a log reaches only the nodes on its part's
//!   path).
//! - So every node ends with the options it has on one thread, in the
//!   same order, every part runs what it runs there, and the parts, in
//!   the cursor's order, are the one-thread search's runs in its order
//!   (their groups, which `threads` merges by).
//!
//! Parts are taken first come, first served, and a part is launched as
//! soon as its place is known, usually long before the cursor comes to
//! it. A thread that finds none to take asks for one, and the next part
//! to move on *lends* the tree its decisions down to the shallowest one
//! with options left to try (`Dfs::lend`). Its options after the
//! current one become parts, and the lender goes on below its current
//! one, as it would have. What it ran under the options before is its
//! own, in the one-thread order too. Its races at the lent decisions
//! become the tree's, and the tree does them in their turn, as it does
//! everyone's. So lending, too, changes no part's runs: only who runs
//! them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::races::Request;
use super::{Bits, Dfs, Frame};
use crate::drive::stepper::{Footprint, Prepared};
use crate::explore::{exhaust, ExploreConfig, ExploreReport, SchedulerKind};

/// The operation whose decision is the last of the tree's in a run. At
/// the first operation, where shards divide, three same-id creates under
/// `safe` with one clock move have three units with runs judged, one of
/// them with 52% of them: the others' orders of the first operations
/// sleep. Deeper, the parts are more and smaller, and each makes its
/// first run from the start and waits its turn to hand its races to the
/// tree: on two threads, r7 under `safe` with one move had 23 parts at
/// the third operation, 90 at the eighth, 750 at the twelfth, and took
/// the least time at the eighth (BENCHMARKS, "Threads over the search's
/// tree"). Where the tree ends changes no report (`on_tree`'s test).
pub(in crate::explore) const SPLIT_OPERATIONS: usize = 8;

/// A part of the search as its thread's [`Dfs`] knows it.
pub(super) struct Task {
    tree: Arc<Shared>,
    id: usize,
    /// The depth of the part's first decision (its node's).
    start: usize,
    /// The depth of the first decision below the tree on the part's
    /// path, once its first run came to it.
    floor: Option<usize>,
    /// Requests of its runs not yet handed to the tree.
    pub(super) log: Vec<Request>,
    /// Whether its first run's decisions in the tree were handed to it.
    pub(super) published: bool,
}

impl Task {
    pub(super) fn floor(&self) -> usize {
        self.floor.expect("a part's floor is known by the end of its first run")
    }

    /// The run made its `operations`-th operation at `depth` (the tree
    /// ends at its part's own decision at the earliest).
    pub(super) fn reached(&mut self, operations: usize, depth: usize) {
        if self.floor.is_none() && operations >= self.tree.split && depth >= self.start {
            self.floor = Some(depth + 1);
        }
    }

    /// The run ended after `decisions` decisions: one that ended within
    /// the tree has no decision below it.
    pub(super) fn ended(&mut self, decisions: usize) {
        self.floor.get_or_insert(decisions);
    }
}

/// What became of an option of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kid {
    /// Not launched yet.
    Unseen,
    /// Asleep, or an idle clock move: not tried.
    Skipped,
    /// Launched; its part's first run has not come back yet.
    Pending,
    /// A node of the tree follows.
    Node(usize),
    /// The tree ends here: this part's.
    Part(usize),
}

/// A decision of the tree: one of a prefix's.
struct Node {
    /// The decision (its `at` and `done` are what the launcher last
    /// looked at).
    frame: Frame,
    /// The node and option before it.
    parent: Option<(usize, usize)>,
    kids: Vec<Kid>,
    /// Per option, once a run made it: what it touched (a plain search
    /// keeps no footprints), and what happens before it in that run.
    made: Vec<Option<(Option<Footprint>, Bits)>>,
    /// The options launched, in order.
    tried: Vec<usize>,
    /// The next option to launch or skip.
    next: usize,
}

impl Node {
    /// The node of `frame`, a part's decision at its current option: the
    /// options before it were skipped when it was made, or (lent) tried
    /// by the part, whose runs they are.
    fn new(frame: &Frame, parent: Option<(usize, usize)>) -> Node {
        let n = frame.backtrack.len();
        let mut kids = vec![Kid::Unseen; n];
        kids[..frame.at].fill(Kid::Skipped);
        kids[frame.at] = Kid::Pending;
        let mut made = vec![None; n];
        let mut tried = Vec::new();
        for (token, footprint) in &frame.done {
            let i =
                frame.backtrack.iter().position(|w| w.token == *token).expect("a tried option is an option");
            made[i] = Some((Some(footprint.clone()), Bits::default()));
            tried.push(i);
        }
        made[frame.at] = Some((frame.made.clone(), frame.before.clone()));
        tried.push(frame.at);
        Node { frame: frame.copy(), parent, kids, made, tried, next: frame.at + 1 }
    }

    /// The options tried before option `j`, with what they touched.
    fn done_before(&self, j: usize) -> Vec<(super::Token, Footprint)> {
        self.tried
            .iter()
            .filter(|&&i| i < j)
            .map(|&i| {
                let (footprint, _) =
                    self.made[i].as_ref().expect("an option is launched after those before it are made");
                (self.frame.backtrack[i].token, footprint.clone().unwrap_or_default())
            })
            .collect()
    }

    /// Its frame on a path through option `j`.
    fn frame_at(&self, j: usize) -> Frame {
        let mut frame = self.frame.copy();
        frame.at = j;
        frame.done = self.done_before(j);
        (frame.made, frame.before) = match &self.made[j] {
            Some((footprint, before)) => (footprint.clone(), before.clone()),
            None => (None, Bits::default()),
        };
        frame
    }

    /// Keeps up with options added at the end.
    fn grown(&mut self) {
        let n = self.frame.backtrack.len();
        self.kids.resize(n, Kid::Unseen);
        self.made.resize(n, None);
    }
}

struct Part {
    /// Its node and option (none: the first part, from the root).
    start: Option<(usize, usize)>,
    /// The frames on its path (its own last), until a thread takes it.
    frames: Option<Vec<Frame>>,
    /// The nodes on its path (its own node's last; the nodes its runs
    /// add to the tree after it).
    path: Vec<usize>,
    /// Its requests the tree has not done yet.
    log: Vec<Request>,
    /// Its report, once its search ended.
    report: Option<ExploreReport>,
}

struct State {
    nodes: Vec<Node>,
    parts: Vec<Part>,
    /// The parts launched and not taken, in the order they were launched.
    /// (Taking the first in the search's order instead, so the cursor
    /// waits less on a part nobody took, gave r7 under `safe` with one
    /// move 1.67 times one thread's speed on two, and three same-id
    /// creates 1.58: no better.)
    ready: VecDeque<usize>,
    /// Where the one-thread search is: the nodes from the root, each with
    /// the option it is at (empty before the first part came back).
    cursor: Vec<(usize, usize)>,
    /// The parts done, in the search's order.
    order: Vec<usize>,
    finished: bool,
    /// A part ran out of budget (or a thread failed): no more are taken.
    stopped: bool,
    /// A request left an option out (the preemption bound).
    pruned: bool,
    /// Threads running a part.
    running: usize,
}

impl State {
    /// What is left once the threads are done (`Shared::finish`).
    fn empty() -> State {
        State {
            nodes: Vec::new(),
            parts: Vec::new(),
            ready: VecDeque::new(),
            cursor: Vec::new(),
            order: Vec::new(),
            finished: true,
            stopped: true,
            pruned: false,
            running: 0,
        }
    }
}

/// The tree the threads of one search share.
pub(in crate::explore) struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    max_ticks: usize,
    /// The part the cursor waits on (`NONE` if none): only its requests
    /// are done as its runs come; the others' wait for their turn where
    /// they are made, without taking the lock.
    head: AtomicUsize,
    /// The operation whose decision is the last of the tree's in a run.
    split: usize,
    /// A thread waits with no part to take: a running part that can
    /// lends the tree its shallowest decision with options left.
    wanted: AtomicBool,
    /// Parts lend whenever they can (a test's: lending at every chance
    /// must change nothing either).
    eager: bool,
}

const NONE: usize = usize::MAX;

impl Shared {
    /// The tree of a search with `config`, ending at each run's `split`-th
    /// operation, its parts lending when a thread waits (or, `eager`,
    /// whenever they can).
    pub(in crate::explore) fn new(config: &ExploreConfig, (split, eager): (usize, bool)) -> Shared {
        let first =
            Part { start: None, frames: Some(Vec::new()), path: Vec::new(), log: Vec::new(), report: None };
        Shared {
            state: Mutex::new(State {
                nodes: Vec::new(),
                parts: vec![first],
                ready: VecDeque::from([0]),
                cursor: Vec::new(),
                order: Vec::new(),
                finished: false,
                stopped: false,
                pruned: false,
                running: 0,
            }),
            changed: Condvar::new(),
            max_ticks: config.max_ticks,
            head: AtomicUsize::new(NONE),
            split,
            wanted: AtomicBool::new(eager),
            eager,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One thread's work: parts as they come, until the search is done
    /// (or stopped). `tick` hears each run.
    pub(in crate::explore) fn work(
        self: &Arc<Self>,
        prepared: &Prepared,
        config: &ExploreConfig,
        tick: &(dyn Fn() + Sync),
    ) {
        let SchedulerKind::Exhaustive { max_preemptions } = config.scheduler else {
            unreachable!("only an exhaustive search runs on the tree")
        };
        // A thread that fails stops the others, which would wait for it.
        struct Stop<'a>(&'a Shared);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.lock().stopped = true;
                    self.0.changed.notify_all();
                }
            }
        }
        let _stop = Stop(self.as_ref());
        let mut runs = 0;
        loop {
            let (id, frames) = {
                let mut state = self.lock();
                loop {
                    if state.finished || state.stopped {
                        return;
                    }
                    if let Some(id) = state.ready.pop_front() {
                        let frames = state.parts[id].frames.take().expect("a part is taken once");
                        state.running += 1;
                        break (id, frames);
                    }
                    assert!(state.running > 0, "the search's tree waits on no part");
                    self.wanted.store(true, Ordering::Relaxed);
                    state = self.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
                }
            };
            let start = frames.len().saturating_sub(1);
            let mut dfs = Dfs::new(max_preemptions, config.max_ticks, config.reduction, None);
            dfs.frames = frames;
            dfs.fresh = start;
            dfs.task = Some(Task {
                tree: Arc::clone(self),
                id,
                start,
                floor: None,
                log: Vec::new(),
                published: false,
            });
            // The budget is each thread's.
            let budget =
                ExploreConfig { schedules: config.schedules.saturating_sub(runs).max(1), ..config.clone() };
            let report = exhaust(prepared, &budget, &mut dfs, |_| tick());
            runs += report.schedules_run;
            let log = dfs.task.take().map(|task| task.log).unwrap_or_default();
            let mut state = self.lock();
            state.parts[id].log.extend(log);
            state.stopped |= !report.covered && runs >= config.schedules;
            state.parts[id].report = Some(report);
            state.running -= 1;
            self.advance(&mut state);
            self.changed.notify_all();
        }
    }

    /// The parts' reports, in the search's order (a stopped search's
    /// parts not reached last, in the order they were launched), and
    /// whether a request left an option out.
    pub(in crate::explore) fn finish(&self) -> (Vec<ExploreReport>, bool) {
        let mut state = self.lock();
        let state = std::mem::replace(&mut *state, State::empty());
        let State { mut parts, order, pruned, .. } = state;
        let rest: Vec<usize> = (0..parts.len()).filter(|id| !order.contains(id)).collect();
        let reports = order.iter().chain(&rest).filter_map(|&id| parts[id].report.take()).collect();
        (reports, pruned)
    }

    /// The part `id`'s first run came back: what it made in the tree.
    fn publish(&self, id: usize, frames: &[Frame]) {
        let mut state = self.lock();
        let state = &mut *state;
        let start = state.parts[id].start;
        let new = match start {
            Some((n, j)) => {
                let (first, rest) = frames.split_first().expect("a part makes its own decision");
                state.nodes[n].made[j] = Some((first.made.clone(), first.before.clone()));
                self.launch(state, n);
                rest
            }
            None => frames,
        };
        if start.is_none() && !new.is_empty() {
            state.cursor = vec![(0, 0)];
        }
        self.graft(state, id, start, new);
        self.advance(state);
    }

    /// Adds part `id`'s `frames` to the tree below `last` (none: at its
    /// root), each the kid of the one before, and the part the kid of the
    /// last; launches their options.
    fn graft(&self, state: &mut State, id: usize, mut last: Option<(usize, usize)>, frames: &[Frame]) {
        let first = state.nodes.len();
        for frame in frames {
            let n = state.nodes.len();
            state.nodes.push(Node::new(frame, last));
            if let Some((p, option)) = last {
                state.nodes[p].kids[option] = Kid::Node(n);
            }
            state.parts[id].path.push(n);
            last = Some((n, frame.at));
        }
        if let Some((n, option)) = last {
            state.nodes[n].kids[option] = Kid::Part(id);
        }
        for n in first..state.nodes.len() {
            self.launch(state, n);
        }
        self.changed.notify_all();
    }

    /// Part `id` lends the tree `frames`, its decisions after its path's
    /// (see `Dfs::lend`).
    fn lent(&self, id: usize, frames: &[Frame]) {
        let mut state = self.lock();
        let state = &mut *state;
        let leaf = *state.parts[id].path.last().expect("a part that lends has a path");
        let option = state.nodes[leaf]
            .kids
            .iter()
            .position(|kid| *kid == Kid::Part(id))
            .expect("a part is the kid of its path's last node");
        self.graft(state, id, Some((leaf, option)), frames);
    }

    /// Requests of part `id`'s runs.
    fn stream(&self, id: usize, log: Vec<Request>) {
        let mut state = self.lock();
        state.parts[id].log.extend(log);
        let ready = state.ready.len();
        self.advance(&mut state);
        if state.ready.len() > ready || state.finished {
            self.changed.notify_all();
        }
    }

    /// Launches node `n`'s options in order, each once every option
    /// before it was made (its footprint known), skipping those asleep.
    fn launch(&self, state: &mut State, n: usize) {
        loop {
            let node = &mut state.nodes[n];
            let j = node.next;
            let last_made = node.tried.last().is_none_or(|&i| node.made[i].is_some());
            if j >= node.frame.backtrack.len() || !last_made {
                return;
            }
            node.next += 1;
            node.frame.done = node.done_before(j);
            let token = node.frame.backtrack[j].token;
            if node.frame.asleep(&token) || node.frame.idle_move(token, self.max_ticks) {
                node.kids[j] = Kid::Skipped;
                continue;
            }
            node.tried.push(j);
            node.kids[j] = Kid::Pending;
            // The frames on its path, and their nodes, from the root.
            let (mut frames, mut path) = (vec![node.frame_at(j)], vec![n]);
            let mut at = node.parent;
            while let Some((p, option)) = at {
                frames.push(state.nodes[p].frame_at(option));
                path.push(p);
                at = state.nodes[p].parent;
            }
            frames.reverse();
            path.reverse();
            let id = state.parts.len();
            state.parts.push(Part {
                start: Some((n, j)),
                frames: Some(frames),
                path,
                log: Vec::new(),
                report: None,
            });
            state.ready.push_back(id);
        }
    }

    /// Moves the cursor as far as the parts done let it, doing their
    /// requests in the search's order.
    fn advance(&self, state: &mut State) {
        self.head.store(NONE, Ordering::Relaxed);
        if state.cursor.is_empty() {
            // The first part had no decision at all.
            if state.parts[0].report.is_some() && state.nodes.is_empty() && !state.finished {
                state.order.push(0);
                state.finished = true;
            }
            return;
        }
        while let Some(&(n, j)) = state.cursor.last() {
            if j >= state.nodes[n].frame.backtrack.len() {
                state.cursor.pop();
                match state.cursor.last_mut() {
                    Some(top) => top.1 += 1,
                    None => state.finished = true,
                }
                continue;
            }
            match state.nodes[n].kids[j] {
                Kid::Unseen | Kid::Pending => return,
                Kid::Skipped => state.cursor.last_mut().expect("the cursor is somewhere").1 += 1,
                Kid::Node(kid) => state.cursor.push((kid, 0)),
                Kid::Part(id) => {
                    self.apply(state, id);
                    if state.parts[id].report.is_none() {
                        self.head.store(id, Ordering::Relaxed);
                        return;
                    }
                    state.order.push(id);
                    state.cursor.last_mut().expect("the cursor is somewhere").1 += 1;
                }
            }
        }
    }

    /// Does part `id`'s requests not done yet.
    fn apply(&self, state: &mut State, id: usize) {
        let part = &mut state.parts[id];
        let requests = std::mem::take(&mut part.log);
        let path = part.path.clone();
        let mut touched = Vec::new();
        for request in requests {
            let node = match &request {
                Request::Reverse { depth, .. } | Request::Moves { depth } => path[*depth],
            };
            let frame = &mut state.nodes[node].frame;
            match request {
                Request::Reverse { initials, .. } => state.pruned |= frame.ask(&initials).pruned,
                Request::Moves { .. } => frame.offer_moves(),
            }
            state.nodes[node].grown();
            touched.push(node);
        }
        touched.sort_unstable();
        touched.dedup();
        for node in touched {
            self.launch(state, node);
        }
    }
}

impl Dfs {
    /// A part's first run came back: its decisions in the tree go to it.
    pub(super) fn publish(&mut self) {
        let task = self.task.as_mut().expect("only a part publishes");
        task.published = true;
        let frames: Vec<Frame> = self.frames[task.start..task.floor()].iter().map(Frame::copy).collect();
        let tree = Arc::clone(&task.tree);
        tree.publish(task.id, &frames);
    }

    /// Where a thread waits with no part to take: gives the tree this
    /// part's decisions down to the shallowest one (above the one the
    /// next run is new at) with options not tried yet, whose options
    /// after the current one become parts of their own. This part goes
    /// on below its current option there, as it would have; its races at
    /// those decisions are the tree's from now on (`Task::floor`). What
    /// it ran under the options before is its own, as in one thread's
    /// search, so the tree's cursor skips them.
    pub(super) fn lend(&mut self) {
        let Some(task) = self.task.as_mut() else { return };
        if !task.tree.wanted.load(Ordering::Relaxed) {
            return;
        }
        let floor = task.floor();
        let Some(g) = (floor..self.fresh).find(|&d| {
            let frame = &self.frames[d];
            frame.backtrack.len() > frame.at + 1
        }) else {
            return;
        };
        task.tree.wanted.store(task.tree.eager, Ordering::Relaxed);
        task.floor = Some(g + 1);
        let frames: Vec<Frame> = self.frames[floor..=g].iter().map(Frame::copy).collect();
        let tree = Arc::clone(&task.tree);
        tree.lent(task.id, &frames);
    }

    /// Hands the requests of the runs made so far to the tree, if the
    /// tree waits on this part (the others hand theirs when they end).
    pub(super) fn stream(&mut self) {
        let head = |task: &Task| task.tree.head.load(Ordering::Relaxed) == task.id;
        if let Some(task) = self.task.as_mut().filter(|task| !task.log.is_empty() && head(task)) {
            let log = std::mem::take(&mut task.log);
            task.tree.stream(task.id, log);
        }
    }
}

/// Whether a search runs on the tree: an exhaustive one, on threads, not
/// a shard's (whose units are the first operations'), and not one that
/// runs whole (`Reduction::runs_whole`).
pub(in crate::explore) fn runs_on_tree(config: &ExploreConfig) -> bool {
    matches!(config.scheduler, SchedulerKind::Exhaustive { .. })
        && config.shard.is_none()
        && !config.reduction.runs_whole()
        && !config.stop_at_first
}
