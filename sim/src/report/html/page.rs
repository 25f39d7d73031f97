//! The page itself, written with `maud`: every value is escaped on the
//! way in; only the stylesheet goes in as it is.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::judge::trace::{Event, EventKind};
use crate::judge::{End, RequestOutcome};
use crate::report::text as trace;

use super::layout::{Layout, HEAD_ROW};
use super::{describe_end, describe_request, evidence_point, show_schedule, verdict, Page, Tone};

/// Lane colours, one per request, in turn.
const LANE_COLOURS: [&str; 10] = [
    "#2f6fdf", "#0f8a7e", "#7c4dcc", "#c26a0a", "#c2417a", "#4d7f1f", "#1b7fa8", "#8a6d1f", "#a2452e",
    "#5a5fb0",
];

use super::STYLESHEET as CSS;

/// The whole page.
pub(super) fn render(page: &Page<'_>) -> String {
    let renderer = Renderer::new(page);
    let title = format!(
        "{} under {}, schedule {}",
        page.scenario.name,
        page.strategy,
        show_schedule(&page.execution.schedule.to_string())
    );
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "cusim trace: " (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                (renderer.header())
                (renderer.violations())
                (legend())
                (renderer.diagram())
                (renderer.footer())
            }
        }
    };
    markup.into_string() + "\n"
}

fn legend() -> Markup {
    let keys = [
        ("op", "operation at a named point, and its result"),
        ("waiting", "waits for a lock: the arrow points at the holder"),
        ("blocked", "blocked until the holder's transaction ends"),
        ("deadlock", "deadlock victim (40P01)"),
        ("crash", "crash"),
        ("ok", "response"),
        ("error", "error"),
        ("violation", "involved in a violation"),
        ("evidence", "an operation behind the violation"),
    ];
    html! {
        ul class="legend" aria-label="legend" {
            @for (key, text) in keys {
                li { span class=(format!("key {key}")) {} (text) }
            }
        }
    }
}

struct Renderer<'p, 'a> {
    page: &'p Page<'a>,
    /// Per request: the violations (by index) that involve it.
    involved: Vec<Vec<usize>>,
    /// Per settle read: the violations (by index) that involve it.
    settle_involved: Vec<Vec<usize>>,
}

impl<'p, 'a> Renderer<'p, 'a> {
    fn new(page: &'p Page<'a>) -> Renderer<'p, 'a> {
        let mut involved = vec![Vec::new(); page.scenario.requests.len()];
        let mut settle_involved = vec![Vec::new(); page.execution.observation.settles.len()];
        for (v, violation) in page.violations.iter().enumerate() {
            for &r in &violation.requests {
                if let Some(list) = involved.get_mut(r) {
                    list.push(v);
                }
            }
            for &n in &violation.settle_reads {
                if let Some(list) = settle_involved.get_mut(n) {
                    list.push(v);
                }
            }
        }
        Renderer { page, involved, settle_involved }
    }

    /// Whether `point`, performed by `request`, is evidence of a violation
    /// that involves the request.
    fn is_evidence(&self, request: usize, point: cusim::backend::Point, result: &str) -> bool {
        // A cache miss reads nothing: it cannot be behind a wrong response.
        if point == cusim::backend::Point::CacheRead && result.starts_with("miss") {
            return false;
        }
        self.involved.get(request).is_some_and(|violations| {
            violations.iter().any(|&v| evidence_point(self.page.violations[v].invariant, point))
        })
    }

    fn is_involved(&self, request: usize) -> bool {
        self.involved.get(request).is_some_and(|v| !v.is_empty())
    }

    /// The names of the invariants the violations `indices` break, each once.
    fn names(&self, indices: &[usize]) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        for &v in indices {
            let name = self.page.violations[v].invariant.as_str();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    fn header(&self) -> Markup {
        let page = self.page;
        let execution = page.execution;
        let bad = !page.violations.is_empty();
        // (label, value, shown as code, on a line of its own)
        let mut facts: Vec<(String, String, bool, bool)> = vec![
            ("schedule".into(), show_schedule(&execution.schedule.to_string()), true, false),
            (
                "minimal schedule".into(),
                show_schedule(&execution.minimal_schedule().to_string()),
                true,
                false,
            ),
            ("trace hash".into(), format!("{:016x}", trace::hash(&execution.trace)), true, false),
            ("verdict".into(), verdict(page.violations), false, false),
            ("end".into(), describe_end(&execution.observation.end), false, false),
        ];
        let catalog: Vec<String> = page
            .scenario
            .products
            .iter()
            .map(|p| {
                let default = if p.is_default { ", default" } else { "" };
                format!("{} ({}, {}{default})", p.id, p.group, format!("{:?}", p.kind).to_lowercase())
            })
            .collect();
        if !catalog.is_empty() {
            let paid = if page.scenario.force_paid_default { "; paid defaults count" } else { "" };
            facts.push(("catalog".into(), format!("{}{paid}", catalog.join("; ")), false, false));
        }
        if !page.scenario.customers.is_empty() {
            let seeds: Vec<String> = page
                .scenario
                .customers
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let (title, details) = describe_request(&c.as_request());
                    let title = title.replacen("create", &format!("#{i}"), 1);
                    if details.is_empty() {
                        title
                    } else {
                        format!("{title} {}", details.join(" "))
                    }
                })
                .collect();
            facts.push(("seed customers".into(), seeds.join("; "), false, true));
        }
        for (label, value) in &page.notes {
            let command = label == "replay";
            facts.push((label.clone(), value.clone(), command, command));
        }
        html! {
            header id="summary" {
                h1 {
                    span class="scenario" { (page.scenario.name) } " "
                    span class="under" { "under" } " "
                    span class="strategy" { (page.strategy.as_str()) } " "
                    span class=(if bad { "verdict bad" } else { "verdict good" }) { (verdict(page.violations)) }
                }
                @if let Some(description) = &page.scenario.description {
                    p class="description" { (description) }
                }
                dl class="facts" {
                    @for (label, value, code, wide) in &facts {
                        div class=[wide.then_some("wide")] {
                            dt { (label) }
                            dd { @if *code { code { (value) } } @else { (value) } }
                        }
                    }
                }
            }
        }
    }

    fn violations(&self) -> Markup {
        let violations = self.page.violations;
        if violations.is_empty() {
            return html! {
                section id="violations" class="ok" {
                    p { strong { "No invariant violated." } " Every invariant of SPEC §6 holds for this run." }
                }
            };
        }
        let count = match violations.len() {
            1 => "1 invariant violation".to_owned(),
            n => format!("{n} invariant violations"),
        };
        html! {
            section id="violations" class="bad" {
                h2 { (count) }
                div class="items" {
                    @for violation in violations {
                        @let requests: Vec<String> = violation.requests.iter().map(|r| r.to_string()).collect();
                        article class="violated" data-invariant=(violation.invariant.as_str()) data-requests=(requests.join(" ")) {
                            h3 { (violation.invariant.as_str()) }
                            p class="involved" {
                                "involves "
                                @if violation.requests.is_empty() && violation.settle_reads.is_empty() {
                                    "no request: found in the committed state"
                                }
                                @for (k, r) in violation.requests.iter().enumerate() {
                                    @if k > 0 { " " }
                                    a href=(format!("#lane-{r}")) { "r" (r) }
                                }
                                @for (k, n) in violation.settle_reads.iter().enumerate() {
                                    @if k > 0 || !violation.requests.is_empty() { " " }
                                    a href=(format!("#settle-{n}")) { "settle read " (n) }
                                }
                            }
                            p class="message" { (violation.message) }
                            details open {
                                summary { "evidence" }
                                pre class="evidence" {
                                    (serde_json::to_string_pretty(&violation.evidence)
                                        .unwrap_or_else(|_| violation.evidence.to_string()))
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn diagram(&self) -> Markup {
        let execution = self.page.execution;
        let quiescent = execution.observation.end == End::Quiescent;
        let layout = Layout::new(&execution.trace, self.page.scenario.requests.len(), quiescent);
        html! {
            main id="trace" {
                div class="diagram" style=(format!("--lanes:{}", layout.lanes)) data-events=(layout.events.len()) {
                    div class="corner" style=(format!("grid-area:{HEAD_ROW}/1")) { "step" }
                    (self.bands_and_steps(&layout))
                    @for lane in 0..layout.lanes {
                        (self.lane(&layout, lane))
                    }
                    (self.full_width_rows(&layout))
                    (self.connectors(&layout))
                }
                (self.settles(&layout))
            }
        }
    }

    /// Shading per decision, and the decision's number and token on the left.
    fn bands_and_steps(&self, layout: &Layout<'_>) -> Markup {
        let execution = self.page.execution;
        let minimal = execution.minimal_schedule().len();
        // Runs of events taken in one decision: (first, end, step).
        let mut groups = Vec::new();
        let mut i = 0;
        while i < layout.events.len() {
            let step = layout.events[i].step;
            let mut j = i + 1;
            while j < layout.events.len() && layout.events[j].step == step {
                j += 1;
            }
            groups.push((i, j, step));
            i = j;
        }
        html! {
            @for (group, (from, to, step)) in groups.into_iter().enumerate() {
                @let rows = format!("grid-row:{}/{}", Layout::row(from), Layout::row(to));
                div class=(if group % 2 == 0 { "band even" } else { "band odd" }) style=(rows) {}
                @if let Some(step) = step {
                    @let tail = step >= minimal;
                    @let title = if tail {
                        "after the minimal schedule: the default choice (the lowest runnable request)"
                    } else {
                        "part of the minimal schedule"
                    };
                    div class=(if tail { "step tail" } else { "step" }) style=(rows) title=(title) {
                        span class="n" { (step) }
                        @if let Some(token) = execution.schedule.0.get(step) {
                            code { (token.to_string()) }
                        }
                    }
                }
            }
        }
    }

    fn lane(&self, layout: &Layout<'_>, lane: usize) -> Markup {
        let colour = LANE_COLOURS[lane % LANE_COLOURS.len()];
        let column = Layout::column(lane);
        let involved = self.is_involved(lane);
        html! {
            div class="lane" id=(format!("lane-{lane}")) data-request=(lane)
                data-involved=[involved.then_some("true")] style=(format!("--lane:{colour}")) {
                (self.lane_head(lane, column))
                div class="lifeline" style=(format!("grid-row:{}/{};grid-column:{column}", HEAD_ROW + 1, layout.foot_row)) {}
                @for (i, event) in layout.events.iter().enumerate() {
                    @if event.request == Some(lane) {
                        @let row = Layout::row(i);
                        @if let EventKind::Wait { txn, .. } = &event.kind {
                            // Blocked from the wait until the request's next event (or the end).
                            @let next = layout.events[i + 1..].iter().position(|e| e.request == Some(lane)).map(|n| i + 1 + n);
                            @let until = next.map_or(layout.foot_row, Layout::row);
                            @if until > row + 1 {
                                div class="blocked" style=(format!("grid-row:{}/{until};grid-column:{column}", row + 1)) {
                                    span { "blocked on txn " (txn) }
                                }
                            }
                        }
                        (self.event_box(event, row, column, lane))
                    }
                }
                (self.lane_foot(layout, lane, column))
            }
        }
    }

    fn lane_head(&self, lane: usize, column: usize) -> Markup {
        let scenario = self.page.scenario;
        let (title, details) = match scenario.requests.get(lane) {
            Some(request) => describe_request(request),
            None => ("(not in the scenario)".to_owned(), Vec::new()),
        };
        let involved = self.is_involved(lane);
        html! {
            div class=(if involved { "lane-head violation" } else { "lane-head" })
                style=(format!("grid-row:{HEAD_ROW};grid-column:{column}")) {
                div class="who" { span class="r" { "r" (lane) } " " span class="title" { (title) } }
                @if !details.is_empty() {
                    div class="details" { (details.join(" · ")) }
                }
                @for fault in scenario.faults.iter().filter(|f| f.request == lane) {
                    div class="details" {
                        span class="badge fault" { "fault" }
                        " " (fault.kind.as_str()) " at " (fault.at.as_str())
                        @if fault.occurrence != 1 { " (visit " (fault.occurrence) ")" }
                    }
                }
                @if involved {
                    div class="flag" { "violates " (self.names(&self.involved[lane]).join(", ")) }
                }
            }
        }
    }

    fn event_box(&self, event: &Event, row: usize, column: usize, lane: usize) -> Markup {
        let violation = if self.is_involved(lane) { " violation" } else { "" };
        let open = |kind: &'static str, classes: String, body: Markup| {
            html! {
                div class=(format!("box {kind}{classes}")) data-kind=(kind) data-request=(lane)
                    data-step=[event.step] style=(format!("grid-row:{row};grid-column:{column}")) {
                    (body)
                }
            }
        };
        match &event.kind {
            EventKind::Op { point, op, result, fault, .. } => {
                let tone = Tone::of(result);
                let marked = if tone.is_error() {
                    violation
                } else if self.is_evidence(lane, *point, result) {
                    " evidence"
                } else {
                    ""
                };
                let faulted = if fault.is_some() { " faulted" } else { "" };
                open(
                    "op",
                    format!("{}{faulted}{marked}", tone.classes()),
                    html! {
                        div class="point" {
                            (point.as_str())
                            @if let Some(kind) = fault { " " span class="badge fault" { "fault " (kind.as_str()) } }
                        }
                        div class="op" { (op) }
                        div class="result" { "→ " (result) }
                    },
                )
            }
            EventKind::Wait { point, op, txn, holder } => {
                let holder = holder.map_or("a request not in the diagram".to_owned(), |h| format!("r{h}"));
                open(
                    "waiting",
                    String::new(),
                    html! {
                        div class="point" { (point.as_str()) }
                        div class="op" { (op) }
                        div class="result" { "→ waits for txn " (txn) " of " (holder) }
                    },
                )
            }
            EventKind::Deadlock { point, op } => open(
                "deadlock",
                format!(" error{violation}"),
                html! {
                    div class="point" { (point.as_str()) }
                    div class="op" { (op) }
                    div class="result" { "→ 40P01 deadlock detected: this request is the victim" }
                },
            ),
            EventKind::Crash { point, op } => open(
                "crash",
                violation.to_owned(),
                html! {
                    div class="point" { "× crash at " (point.as_str()) }
                    div class="op" { "before " (op) }
                    div class="result" { "the request dies; an open transaction rolls back, committed work stays" }
                },
            ),
            EventKind::Respond { result } => {
                let tone = Tone::of(result);
                let (headline, rest) = match result.strip_prefix("ok ") {
                    Some(rest) => ("✓ ok".to_owned(), rest.to_owned()),
                    None => {
                        let rest = result.strip_prefix("error ").unwrap_or(result);
                        let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
                        (format!("× {code}"), message.to_owned())
                    }
                };
                let ok = if tone.is_error() { "" } else { " ok" };
                open(
                    "respond",
                    format!("{ok}{}{violation}", tone.classes()),
                    html! {
                        div class="point" { "response " strong { (headline) } }
                        div class="result" { (rest) }
                    },
                )
            }
            EventKind::Arrive { attempt } => open(
                "arrive",
                String::new(),
                html! {
                    div class="point" { "→ arrives" }
                    div class="result" { "attempt " (attempt) ": its code runs up to its first operation" }
                },
            ),
            EventKind::Retry { attempt } => open(
                "retry",
                String::new(),
                html! {
                    div class="point" { "↻ retry" }
                    div class="result" { "the client sends the request again (attempt " (attempt) ")" }
                },
            ),
            EventKind::Tick { .. } | EventKind::Settle { .. } => html! {},
        }
    }

    fn lane_foot(&self, layout: &Layout<'_>, lane: usize, column: usize) -> Markup {
        let (class, text) = match self.page.execution.observation.outcomes.get(lane) {
            Some(RequestOutcome::Responded(result)) => match result.as_ref() {
                Ok(_) => ("ok", "responded ok".to_owned()),
                Err(error) => ("error", format!("responded {}", error.code)),
            },
            Some(RequestOutcome::Crashed { at }) => ("crashed", format!("crashed at {}", at.as_str())),
            Some(RequestOutcome::Unfinished { at: Some(at) }) => {
                ("unfinished", format!("unfinished, parked at {}", at.as_str()))
            }
            Some(RequestOutcome::Unfinished { at: None }) => ("unfinished", "unfinished".to_owned()),
            None => ("unfinished", "no outcome".to_owned()),
        };
        html! {
            div class=(format!("lane-foot {class}")) style=(format!("grid-row:{};grid-column:{column}", layout.foot_row)) {
                "r" (lane) ": " (text)
            }
        }
    }

    /// Clock moves and the run's end, across every lane.
    fn full_width_rows(&self, layout: &Layout<'_>) -> Markup {
        html! {
            @for (i, event) in layout.events.iter().enumerate() {
                @if let EventKind::Tick { ms, now_ms } = event.kind {
                    div class="tick" data-ms=(ms) style=(format!("grid-row:{}", Layout::row(i))) {
                        span { "clock +" (ms) " ms · now " (now_ms) " ms" }
                    }
                }
            }
            @if let Some(row) = layout.end_row {
                div class="end-note" style=(format!("grid-row:{row}")) {
                    span { "run ended: " (describe_end(&self.page.execution.observation.end)) }
                }
            }
        }
    }

    /// Lock waits and deadlocks, from the waiting request to the holder's lane.
    fn connectors(&self, layout: &Layout<'_>) -> Markup {
        let mut last_holder: Vec<Option<(usize, u64)>> = vec![None; layout.lanes];
        let mut connectors = Vec::new();
        for (i, event) in layout.events.iter().enumerate() {
            let Some(from) = event.request else { continue };
            let (class, to, label) = match &event.kind {
                EventKind::Wait { txn, holder, .. } => {
                    last_holder[from] = holder.map(|h| (h, *txn));
                    let Some(to) = *holder else { continue };
                    ("wait", to, format!("r{from} waits for r{to} (txn {txn})"))
                }
                EventKind::Deadlock { .. } => {
                    let Some((to, txn)) = last_holder[from] else { continue };
                    let label = format!(
                        "deadlock: r{from} and r{to} wait for each other (txn {txn}); r{from} is the victim"
                    );
                    ("conflict", to, label)
                }
                _ => continue,
            };
            if to != from && to < layout.lanes {
                connectors.push((i, class, from, to, label));
            }
        }
        html! {
            @for (i, class, from, to, label) in connectors {
                @let (lo, hi) = (from.min(to), from.max(to));
                @let direction = if to < from { "to-left" } else { "to-right" };
                div class=(format!("connector {class} {direction}")) data-from=(from) data-to=(to)
                    style=(format!("grid-row:{};grid-column:{}/{};--span:{}", Layout::row(i), Layout::column(lo), Layout::column(hi) + 1, hi - lo + 1)) {
                    span class="line" {}
                    span class="label" { (label) }
                }
            }
        }
    }

    fn settles(&self, layout: &Layout<'_>) -> Markup {
        let quiescent = self.page.execution.observation.end == End::Quiescent;
        html! {
            section id="settle" {
                h2 { "Settle reads " small { "after quiescence, each customer read once through the strategy's read path" } }
                @if layout.settles.is_empty() {
                    p class="none" {
                        (if quiescent { "none recorded" } else { "none: the run did not reach quiescence" })
                    }
                } @else {
                    div class="settle-lane" {
                        @for (n, event) in layout.settles.iter().enumerate() {
                            @if let EventKind::Settle { customer, result } = &event.kind {
                                (self.settle_box(n, customer, result))
                            }
                        }
                    }
                }
            }
        }
    }

    fn settle_box(&self, n: usize, customer: &str, result: &str) -> Markup {
        let tone = Tone::of(result);
        let violated = self.settle_involved.get(n).map(|vs| self.names(vs)).unwrap_or_default();
        let ok = if tone.is_error() || !violated.is_empty() { "" } else { " ok" };
        let marked = if violated.is_empty() { "" } else { " violation" };
        html! {
            div class=(format!("box settle{ok}{}{marked}", tone.classes())) id=(format!("settle-{n}"))
                data-kind="settle" data-settle=(n) {
                div class="point" { "settle read " (n) }
                div class="op" { (customer) }
                div class="result" { "→ " (result) }
                @if !violated.is_empty() {
                    div class="violates" { "violates " (violated.join(", ")) }
                }
            }
        }
    }

    fn footer(&self) -> Markup {
        let execution = self.page.execution;
        html! {
            footer {
                "cusim · " (self.page.scenario.name) " under " (self.page.strategy.as_str()) " · "
                (execution.trace.len()) " events · trace hash " (format!("{:016x}", trace::hash(&execution.trace)))
            }
        }
    }
}
