//! Traces for people (one line a step) and their hash (for determinism
//! checks). The JSON form is the serde form of [`Event`].

use std::fmt::Write;

use crate::judge::trace::{Event, EventKind};

/// The trace as text, one line per event.
pub fn render(trace: &[Event]) -> String {
    let mut out = String::new();
    for event in trace {
        let step = event.step.map_or("   ".to_owned(), |s| format!("{s:>3}"));
        let who = event.request.map_or("   ".to_owned(), |r| format!("r{r:<2}"));
        let line = match &event.kind {
            EventKind::Op { point, op, result, fault, .. } => {
                let fault = fault.map_or(String::new(), |k| format!(" [fault {k}]"));
                format!("{step} {who} {:<16} {op} -> {result}{fault}", point.as_str())
            }
            EventKind::Wait { point, op, txn, holder } => {
                let holder = holder.map_or("?".to_owned(), |h| format!("r{h}"));
                format!("{step} {who} {:<16} {op} -> waits for txn {txn} of {holder}", point.as_str())
            }
            EventKind::Deadlock { point, op } => {
                format!(
                    "{step} {who} {:<16} {op} -> 40P01 deadlock: this request is the victim",
                    point.as_str()
                )
            }
            EventKind::Crash { point, op } => {
                format!("{step} {who} {:<16} CRASH before {op}; its transaction rolls back", point.as_str())
            }
            EventKind::Tick { ms, now_ms } => format!("{step}     clock +{ms} ms (now {now_ms} ms)"),
            EventKind::Respond { result } => format!("    {who} responds {result}"),
            EventKind::Arrive { attempt } => {
                format!("{step} {who} {:<16} the request arrives (attempt {attempt})", "arrive")
            }
            EventKind::Retry { attempt } => {
                format!("{step} {who} {:<16} the client sends it again (attempt {attempt})", "retry")
            }
            EventKind::Settle { customer, result } => format!("    settle read {customer}: {result}"),
        };
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// FNV-1a over the rendered trace: equal traces, equal hashes, on every machine.
pub fn hash(trace: &[Event]) -> u64 {
    render(trace)
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}
