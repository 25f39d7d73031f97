//! How far the runs of a search that caches states reach, to answer for
//! the step it leaves out of the state (`drive::stepper::state`).
//!
//! The step matters to nothing but the step cap: a run that has made
//! `max_steps` decisions and could go on is cut there. A state without
//! its step joins runs that came to it at different steps, so a run that
//! comes to a state met before at a later step than the first is not cut
//! where it would have been, had it gone on: if some run of the space is
//! long enough to be cut, the search may not meet it. So the search keeps
//! every state it met and each state a decision led to from it (a graph),
//! and measures, once it has ended, the longest path from the first: the
//! longest run of the whole space, in decisions.
//!
//! Why: every run of the space has one of its class in the graph, made of
//! the runs the search made, joined where a run stopped at a state met
//! before to where that state led the first time (the argument of the
//! reduction itself: `dfs`'s `states`); its class is its decisions in
//! other orders, as many of them. So no run of the space is longer than
//! the graph's longest path; and every path is a run. If the longest path
//! is shorter than the cap, no run of the space is cut, the step changes
//! no outcome, and leaving it out lost nothing. If it is not (a run was
//! cut, or a state leads back to itself: a run may go on for ever), the
//! search runs again with the step in the state (`exhaust`).

use std::collections::HashMap;

/// The states a search met, and where each led.
#[derive(Debug, Default)]
pub(super) struct Reach {
    /// The first state met (the runs' start).
    first: Option<u128>,
    /// Each state met with the states its decisions led to (each once).
    next: HashMap<u128, Vec<u128>>,
}

impl Reach {
    /// A decision was made at `state`, which the decision at `before`
    /// led to (none: the first decision of a run from its start).
    pub(super) fn met(&mut self, before: Option<u128>, state: u128) {
        match before {
            Some(before) => {
                let next = self.next.entry(before).or_default();
                if !next.contains(&state) {
                    next.push(state);
                }
            }
            None => {
                debug_assert!(self.first.is_none_or(|first| first == state), "every run starts in one state");
                self.first = Some(state);
            }
        }
        self.next.entry(state).or_default();
    }

    /// The decisions of the longest run from the first state (a decision
    /// that led to no state met ended its run), or none if a state leads
    /// back to itself.
    pub(super) fn longest(&self) -> Option<usize> {
        let Some(first) = self.first else { return Some(0) };
        // Depth first, each state's decisions to the end once known.
        let mut known: HashMap<u128, Option<usize>> = HashMap::new();
        let mut stack: Vec<(u128, usize)> = vec![(first, 0)];
        known.insert(first, None);
        while let Some(top) = stack.last_mut() {
            let state = top.0;
            let next = self.next.get(&state).map_or(&[][..], Vec::as_slice);
            if let Some(&kid) = next.get(top.1) {
                top.1 += 1;
                match known.get(&kid) {
                    // On the path to here: a cycle.
                    Some(None) => return None,
                    Some(Some(_)) => {}
                    None => {
                        known.insert(kid, None);
                        stack.push((kid, 0));
                    }
                }
                continue;
            }
            let longest =
                1 + next.iter().map(|kid| known[kid].expect("every kid is done")).max().unwrap_or(0);
            known.insert(state, Some(longest));
            stack.pop();
        }
        known[&first]
    }
}

#[cfg(test)]
mod tests {
    use super::Reach;

    fn reach(runs: &[&[u128]]) -> Reach {
        let mut reach = Reach::default();
        for run in runs {
            let mut before = None;
            for &state in *run {
                reach.met(before, state);
                before = Some(state);
            }
        }
        reach
    }

    #[test]
    fn the_longest_run_joins_runs_at_the_states_they_share() {
        assert_eq!(Reach::default().longest(), Some(0));
        assert_eq!(reach(&[&[1]]).longest(), Some(1));
        // Runs 1 2 3 and 1 4, and one that stops at 4 (met before) coming
        // from 2: three decisions at most.
        assert_eq!(reach(&[&[1, 2, 3], &[1, 4], &[1, 2, 4]]).longest(), Some(3));
        // A run that stops at a state met before goes on as that state did
        // the first time: 1 5 joins 2's 2 3 6 7.
        assert_eq!(reach(&[&[1, 2, 3, 6, 7], &[1, 5, 2]]).longest(), Some(6));
    }

    #[test]
    fn a_state_that_leads_back_to_itself_has_no_longest_run() {
        assert_eq!(reach(&[&[1, 2, 3], &[1, 2, 4, 2]]).longest(), None);
        assert_eq!(reach(&[&[1, 1]]).longest(), None);
    }
}
