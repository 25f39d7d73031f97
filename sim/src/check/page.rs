//! A check run as one self-contained HTML page, in the style of the trace
//! pages: the findings first, then each group as a diagram with one lane
//! per client (and one for the group's setup), a row per call in the
//! order the calls were sent, and the calls a finding involves marked;
//! then the read-back. Groups without a finding are folded.
//!
//! Elements a check can rely on: `id="violations"` with one
//! `class="violated" data-invariant="NAME" data-finding="N"` per finding
//! (class `ok` when none); one `<details class="group" id="group-G">` per
//! group, open when a finding involves it; one `class="lane"
//! data-client="N"` per client lane (`data-client="setup"` for the
//! setup); every call as `id="event-K"`, with class `violation` when a
//! finding involves it; the read-back as `id="readback"`.

use std::collections::{BTreeMap, BTreeSet};

use maud::{html, Markup};

use super::history::{Event, History, Outcome, Sender};
use super::verdict::{call_name, Finding};
use super::workload::Call;
use crate::report::html::report_page;

/// What the page adds to the trace pages' stylesheet.
const CSS: &str = "
main#history { padding: 0.75rem 1.5rem 1.5rem; }
details.group { background: var(--paper); border: 1px solid var(--line); border-radius: 8px; margin: 0 0 0.75rem; padding: 0.4rem 0.75rem; overflow-x: auto; }
details.group.bad { border-color: #efb7b3; border-left: 5px solid var(--red); }
details.group summary { cursor: pointer; font-weight: 600; }
details.group summary .findings { color: var(--red); margin-left: 0.5rem; }
.diagram { grid-template-columns: 5rem repeat(var(--lanes), minmax(12rem, 1fr)); margin-top: 0.5rem; }
.box .when { color: var(--muted); font-size: 0.72rem; font-family: var(--mono); }
.box.unknown { background: var(--amber-soft); border-color: #efcd86; border-left-color: var(--amber); }
.step { padding: 0.45rem 0.2rem; }
#readback { margin-top: 1rem; }
#readback h2 { font-size: 1rem; margin: 0 0 0.5rem; }
";

/// Lane colours, in turn (the trace pages' palette).
pub(crate) const LANE_COLOURS: [&str; 10] = [
    "#2f6fdf", "#0f8a7e", "#7c4dcc", "#c26a0a", "#c2417a", "#4d7f1f", "#1b7fa8", "#8a6d1f", "#a2452e",
    "#5a5fb0",
];

/// The page for `history` and its `findings`.
pub fn render(history: &History, findings: &[Finding]) -> String {
    // Event → the findings (by number) that involve it.
    let mut involved: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (n, finding) in findings.iter().enumerate() {
        for &event in &finding.events {
            involved.entry(event).or_default().push(n);
        }
    }
    let bad = !findings.is_empty();
    let verdict = match findings.len() {
        0 => "no invariant broken".to_owned(),
        1 => "1 finding".to_owned(),
        n => format!("{n} findings"),
    };
    let seconds = history.elapsed_us as f64 / 1e6;
    let calls = history.operations();
    let facts = [
        ("workload", history.workload.clone()),
        ("seed", history.seed.to_string()),
        ("clients", history.clients.to_string()),
        ("run", history.run_id.clone()),
        ("target profile", history.profile.describe()),
        ("groups", history.groups.len().to_string()),
        (
            "calls",
            format!(
                "{calls} in {seconds:.1} s ({:.0}/s), stopped by {}",
                calls as f64 / seconds.max(1e-6),
                history.stopped_by
            ),
        ),
        ("read back", format!("{} customers", history.events.len() - calls)),
        ("feature", history.feature.clone()),
    ];
    let body = html! {
        (findings_section(history, findings))
        ul class="legend" aria-label="legend" {
            li { span class="key ok" {} "answered 2xx" }
            li { span class="key error" {} "answered 4xx or 5xx" }
            li { span class="key waiting" {} "no answer: outcome unknown" }
            li { span class="key violation" {} "involved in a finding" }
        }
        main id="history" {
            @for group in &history.groups {
                (group_section(history, group.index, &involved, findings))
            }
            (readback_section(history, &involved))
        }
        footer { "history of run " (history.run_id) "; seed " (history.seed) }
    };
    report_page(
        &format!("cusim check: {} (run {})", history.target, history.run_id),
        CSS,
        &format!("cusim check {}", history.target),
        (bad, &verdict),
        &facts,
        body,
    )
}

fn findings_section(history: &History, findings: &[Finding]) -> Markup {
    if findings.is_empty() {
        return html! {
            section id="violations" class="ok" {
                p { strong { "No invariant broken." } " Every invariant judged from outside holds for this history." }
            }
        };
    }
    html! {
        section id="violations" class="bad" {
            h2 { (findings.len()) " findings" }
            div class="items" {
                @for (n, finding) in findings.iter().enumerate() {
                    @let suspects: Vec<String> = finding.suspects.iter().map(|r| r.to_string()).collect();
                    article class="violated" data-invariant=(finding.invariant) data-finding=(n) {
                        h3 { "#" (n) " " (finding.invariant) }
                        p class="involved" {
                            @if let Some(group) = finding.group {
                                a href=(format!("#group-{group}")) { "group " (group) }
                                @if let Some(block) = finding.block { " (" (block.as_str()) ")" }
                            } @else { "the read-back" }
                            @if !suspects.is_empty() { "; suspected " (suspects.join(" ")) }
                            "; calls "
                            @for (k, event) in finding.events.iter().enumerate() {
                                @if k > 0 { " " }
                                a href=(format!("#event-{event}")) { (event) }
                            }
                        }
                        p class="message" { (finding.message) }
                        @if finding.events.len() <= 12 {
                            details {
                                summary { "calls" }
                                pre class="evidence" {
                                    @for event in &finding.events {
                                        @if let Some(e) = history.events.get(*event) {
                                            (format!("{event:>6} {} {} -> {}\n", call_name(&e.call), e.call.customer_id().unwrap_or("(no id)"), e.outcome.short()))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What a call sent, briefly.
pub(crate) fn call_details(call: &Call) -> String {
    match call {
        Call::Create { customer_id, email, name } => {
            let mut parts = vec![customer_id.clone().unwrap_or_else(|| "id null".into())];
            parts.extend(email.iter().map(|e| format!("email {e}")));
            parts.extend(name.iter().map(|n| format!("name {n}")));
            parts.join(", ")
        }
        Call::Get { customer_id } => customer_id.clone(),
        Call::Check { customer_id, auto_create, customer_data, .. } => {
            let mut text = customer_id.clone();
            if *auto_create {
                text += ", auto-create";
            }
            if let Some(data) = customer_data {
                text += &format!(", name {}", data.name);
            }
            text
        }
        Call::Track { customer_id, value, auto_create, idempotency_key, .. } => {
            let mut text = format!("{customer_id}, value {value}");
            if *auto_create {
                text += ", auto-create";
            }
            if let Some(key) = idempotency_key {
                text += &format!(", key {key}");
            }
            text
        }
    }
}

pub(crate) fn outcome_class(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Ok { .. } => "ok",
        Outcome::Failed { .. } => "error",
        Outcome::Unknown { .. } => "unknown",
    }
}

pub(crate) fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Ok { status, body } => {
            let mut text = status.to_string();
            if let Some(autumn) = body.get("autumn_id").and_then(|a| a.as_str()) {
                text += &format!(" {autumn}");
            }
            if let Some(products) = body.get("subscriptions").and_then(|s| s.as_array()) {
                let plans: Vec<&str> =
                    products.iter().filter_map(|p| p.get("plan_id").and_then(|p| p.as_str())).collect();
                text += &format!(" products=[{}]", plans.join(","));
            }
            if let Some(allowed) = body.get("allowed").and_then(|a| a.as_bool()) {
                text += &format!(" allowed={allowed}");
            }
            if let Some(usage) = body.get("balance").and_then(|b| b.get("usage")) {
                text += &format!(" usage={usage}");
            }
            text
        }
        Outcome::Failed { status, code, message } => format!("{status} {code}: {message}"),
        Outcome::Unknown { reason } => format!("unknown: {reason}"),
    }
}

fn event_box(
    event: &Event,
    findings: Option<&Vec<usize>>,
    lane_colour: &str,
    place: Option<(usize, usize)>,
) -> Markup {
    let mut class = format!("box respond {}", outcome_class(&event.outcome));
    if findings.is_some() {
        class += " violation";
    }
    let style = match place {
        Some((row, column)) => format!("grid-area:{row}/{column};--lane:{lane_colour}"),
        None => format!("--lane:{lane_colour}"),
    };
    html! {
        div class=(class) id=(format!("event-{}", event.index)) data-event=(event.index) style=(style) {
            div class="point" {
                (call_name(&event.call))
                @if event.attempt > 0 { span class="badge fault" { "retry " (event.attempt) } }
            }
            div class="op" { (call_details(&event.call)) }
            div class="result" { (outcome_text(&event.outcome)) }
            div class="when" { (format!("#{} · {:.3}–{:.3} ms", event.index, event.invoked_us as f64 / 1e3, event.completed_us as f64 / 1e3)) }
            @if let Some(numbers) = findings {
                @let names: Vec<String> = numbers.iter().map(|n| format!("#{n}")).collect();
                div class="violates" { "finding " (names.join(" ")) }
            }
        }
    }
}

fn group_section(
    history: &History,
    group: usize,
    involved: &BTreeMap<usize, Vec<usize>>,
    findings: &[Finding],
) -> Markup {
    let mut events: Vec<&Event> = history.events.iter().filter(|e| e.group == Some(group)).collect();
    events.sort_by_key(|e| (e.invoked_us, e.index));
    let of_group: BTreeSet<usize> =
        findings.iter().enumerate().filter(|(_, f)| f.group == Some(group)).map(|(n, _)| n).collect();
    let block = history.groups[group].block.as_str();
    let lanes = history.groups[group].lanes.len() + 1;
    let column = |sender: Sender| match sender {
        Sender::Client(n) => n + 3,
        _ => 2,
    };
    let colour = |sender: Sender| match sender {
        Sender::Client(n) => LANE_COLOURS[n % LANE_COLOURS.len()],
        _ => "#5f6b7a",
    };
    html! {
        details class=(if of_group.is_empty() { "group" } else { "group bad" }) id=(format!("group-{group}")) data-block=(block) open[!of_group.is_empty()] {
            summary {
                "group " (group) " · " (block) " · " (events.len()) " calls"
                @if !of_group.is_empty() {
                    @let names: Vec<String> = of_group.iter().map(|n| format!("#{n} {}", findings[*n].invariant)).collect();
                    span class="findings" { (names.join(", ")) }
                }
            }
            div class="diagram" style=(format!("--lanes:{lanes}")) {
                div class="corner" style="grid-area:1/1" { "sent at" }
                div class="lane" data-client="setup" {
                    div class="lane-head" style=(format!("grid-area:1/2;--lane:{}", colour(Sender::Setup))) {
                        div class="who" { "setup" }
                    }
                }
                @for n in 0..lanes - 1 {
                    div class="lane" data-client=(n) {
                        div class="lane-head" style=(format!("grid-area:1/{};--lane:{}", n + 3, colour(Sender::Client(n)))) {
                            div class="who" { span class="r" { "c" (n) } " client " (n) }
                        }
                    }
                }
                @for (row, event) in events.iter().enumerate() {
                    div class="step" style=(format!("grid-area:{}/1", row + 2)) {
                        span class="n" { (format!("{:.1}", event.invoked_us as f64 / 1e3)) } " ms"
                    }
                    (event_box(event, involved.get(&event.index), colour(event.sender), Some((row + 2, column(event.sender)))))
                }
            }
        }
    }
}

fn readback_section(history: &History, involved: &BTreeMap<usize, Vec<usize>>) -> Markup {
    let readback: Vec<&Event> = history.events.iter().filter(|e| e.sender == Sender::Readback).collect();
    html! {
        section id="readback" {
            h2 { "read-back (" (readback.len()) " customers)" }
            div class="settle-lane" {
                @for event in readback {
                    (event_box(event, involved.get(&event.index), "#5f6b7a", None))
                }
            }
        }
    }
}
