//! Where the events of a trace sit in the page's grid: a row per event,
//! a column per lane (request).

use crate::judge::trace::{Event, EventKind};

/// The grid row of the lane heads; events start on the next one.
pub(super) const HEAD_ROW: usize = 1;

/// Where the events sit in the grid.
pub(super) struct Layout<'e> {
    /// Trace events but settle reads, in order; event `i` is on row `i + 2`.
    pub(super) events: Vec<&'e Event>,
    pub(super) settles: Vec<&'e Event>,
    pub(super) lanes: usize,
    /// The row of the run's end note (a run that did not reach quiescence).
    pub(super) end_row: Option<usize>,
    /// The row of the lane feet.
    pub(super) foot_row: usize,
}

impl<'e> Layout<'e> {
    pub(super) fn new(trace: &'e [Event], requests: usize, quiescent: bool) -> Layout<'e> {
        let (settles, events): (Vec<&Event>, Vec<&Event>) =
            trace.iter().partition(|e| matches!(e.kind, EventKind::Settle { .. }));
        let lanes = events.iter().filter_map(|e| e.request).map(|r| r + 1).fold(requests, usize::max);
        let after = HEAD_ROW + 1 + events.len();
        let end_row = (!quiescent).then_some(after);
        let foot_row = after + usize::from(!quiescent);
        Layout { events, settles, lanes, end_row, foot_row }
    }

    pub(super) fn row(i: usize) -> usize {
        HEAD_ROW + 1 + i
    }

    pub(super) fn column(lane: usize) -> usize {
        lane + 2
    }
}
