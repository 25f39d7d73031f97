//! A run as one self-contained HTML page: a sequence diagram of the trace.
//!
//! One lane (column) per request, one row per trace event, so that time
//! reads from top to bottom and rows line up across lanes. Lock waits and
//! deadlocks are drawn as connectors from the waiting request to the lane
//! of the request holding the lock; clock moves span every lane; each lane
//! ends with the request's response. Settle reads follow in a section of
//! their own. The invariants the oracle found broken head the page, and
//! the requests they involve are marked in the diagram.
//!
//! The page fetches nothing (inline CSS, no script, no fonts, no images)
//! and holds no timestamp: the same run gives the same bytes.
//!
//! Elements a check can rely on: `<main id="trace">`; one
//! `class="lane" data-request="N"` per request; connectors with class
//! `wait` (a lock wait) or `conflict` (a deadlock) and `data-from` (the
//! waiting request), `data-to` (the holder); `id="violations"` with one
//! `class="violated" data-invariant="NAME"` per violation (or class `ok`
//! when none); class `violation` on the lane head of each request a
//! violation involves, on its response (or crash) and on its failed
//! operations; class `evidence` on the operations behind a violation that
//! such a request performed (the writes that left the state wrong, the
//! reads behind a wrong response); settle reads as `id="settle-N"`, with
//! class `violation` when a violation involves them.

use std::fmt::Write;

use cusim::backend::Point;
use cusim::flow::{Request, Strategy};
use cusim::model::Scope;

use crate::oracle::{Invariant, Violation};
use crate::scenario::Scenario;
use crate::stepper::{End, Event, EventKind, Execution, RequestOutcome};
use crate::trace;

/// Lane colours, one per request, in turn.
const LANE_COLOURS: [&str; 10] = [
    "#2f6fdf", "#0f8a7e", "#7c4dcc", "#c26a0a", "#c2417a", "#4d7f1f", "#1b7fa8", "#8a6d1f", "#a2452e",
    "#5a5fb0",
];

/// The grid row of the lane heads; events start on the next one.
const HEAD_ROW: usize = 1;

/// What the page shows: the run, its verdict and a few header lines.
#[derive(Debug, Clone)]
pub struct Page<'a> {
    pub scenario: &'a Scenario,
    pub strategy: Strategy,
    pub execution: &'a Execution,
    pub violations: &'a [Violation],
    /// Extra header lines, `(label, value)`, in order: where the scenario
    /// came from, which backend ran it, how to replay it.
    pub notes: Vec<(String, String)>,
}

impl<'a> Page<'a> {
    pub fn new(
        scenario: &'a Scenario,
        strategy: Strategy,
        execution: &'a Execution,
        violations: &'a [Violation],
    ) -> Page<'a> {
        Page { scenario, strategy, execution, violations, notes: Vec::new() }
    }

    /// Adds a header line.
    pub fn note(mut self, label: impl Into<String>, value: impl Into<String>) -> Page<'a> {
        self.notes.push((label.into(), value.into()));
        self
    }

    /// The page.
    pub fn render(&self) -> String {
        Renderer::new(self).render()
    }
}

/// The page for a run, without extra header lines.
pub fn render(
    scenario: &Scenario,
    strategy: Strategy,
    execution: &Execution,
    violations: &[Violation],
) -> String {
    Page::new(scenario, strategy, execution, violations).render()
}

/// `text` safe inside HTML elements and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A request in a few words: a title (`create cus_1`) and its details
/// (`email=ann@example.com`, …).
pub fn describe_request(request: &Request) -> (String, Vec<String>) {
    let mut details = Vec::new();
    let title = match request {
        Request::Create {
            id,
            name,
            email,
            fingerprint,
            metadata,
            disable_default,
            create_in_stripe,
            create_default_products,
            default_group,
            expand,
            ..
        } => {
            if let Some(email) = email {
                details.push(format!("email={email}"));
            }
            if let Some(name) = name {
                details.push(format!("name={name}"));
            }
            if let Some(fingerprint) = fingerprint {
                details.push(format!("fingerprint={fingerprint}"));
            }
            if let Some(metadata) = metadata {
                details.push(format!("metadata={}", compact_json(metadata)));
            }
            if *disable_default {
                details.push("disable_default".into());
            }
            if !*create_default_products {
                details.push("no default products".into());
            }
            if let Some(group) = default_group {
                details.push(format!("default_group={group}"));
            }
            if *create_in_stripe {
                details.push("create_in_stripe".into());
            }
            if !expand.is_empty() {
                details.push(format!("expand={}", compact_json(expand)));
            }
            match id {
                Some(id) => format!("create {id}"),
                None => "create (id null)".into(),
            }
        }
        Request::Check { customer_id, feature_id, required_balance, customer_data, .. } => {
            details.push(format!("feature={feature_id}"));
            if *required_balance != 1 {
                details.push(format!("required_balance={required_balance}"));
            }
            if let Some(data) = customer_data {
                details.push(format!("customer_data={}", compact_json(data)));
            }
            format!("check {customer_id}")
        }
        Request::Track { customer_id, feature_id, value, customer_data, .. } => {
            details.push(format!("feature={feature_id}"));
            details.push(format!("value={value}"));
            if let Some(data) = customer_data {
                details.push(format!("customer_data={}", compact_json(data)));
            }
            format!("track {customer_id}")
        }
        Request::Get { customer_id, .. } => format!("get {customer_id}"),
    };
    let scope = request.scope();
    if scope != Scope::default() {
        details.push(format!("scope={scope}"));
    }
    (title, details)
}

fn compact_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// How an operation's or a response's result reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    Plain,
    /// Worth a look: a cache write refused, an insert that hit a conflict.
    Notable,
    Error,
    /// An `internal_error`: what a race must never produce.
    Internal,
}

impl Tone {
    fn of(result: &str) -> Tone {
        if result.contains("internal_error") {
            Tone::Internal
        } else if result.starts_with("error") {
            Tone::Error
        } else if result.contains("CACHE_EXISTS")
            || result.contains("STALE_WRITE")
            || result.starts_with("conflict")
        {
            Tone::Notable
        } else {
            Tone::Plain
        }
    }

    fn classes(self) -> &'static str {
        match self {
            Tone::Plain => "",
            Tone::Notable => " notable",
            Tone::Error => " error",
            Tone::Internal => " error internal",
        }
    }

    fn is_error(self) -> bool {
        matches!(self, Tone::Error | Tone::Internal)
    }
}

/// Where the events sit in the grid.
struct Layout<'e> {
    /// Trace events but settle reads, in order; event `i` is on row `i + 2`.
    events: Vec<&'e Event>,
    settles: Vec<&'e Event>,
    lanes: usize,
    /// The row of the run's end note (a run that did not reach quiescence).
    end_row: Option<usize>,
    /// The row of the lane feet.
    foot_row: usize,
}

impl<'e> Layout<'e> {
    fn new(trace: &'e [Event], requests: usize, quiescent: bool) -> Layout<'e> {
        let (settles, events): (Vec<&Event>, Vec<&Event>) =
            trace.iter().partition(|e| matches!(e.kind, EventKind::Settle { .. }));
        let lanes = events.iter().filter_map(|e| e.request).map(|r| r + 1).fold(requests, usize::max);
        let after = HEAD_ROW + 1 + events.len();
        let end_row = (!quiescent).then_some(after);
        let foot_row = after + usize::from(!quiescent);
        Layout { events, settles, lanes, end_row, foot_row }
    }

    fn row(i: usize) -> usize {
        HEAD_ROW + 1 + i
    }

    fn column(lane: usize) -> usize {
        lane + 2
    }
}

struct Renderer<'p, 'a> {
    page: &'p Page<'a>,
    out: String,
    /// Per request: the violations (by index) that involve it.
    involved: Vec<Vec<usize>>,
    /// Per settle read: the violations (by index) that involve it.
    settle_involved: Vec<Vec<usize>>,
}

/// The operations that make up an invariant's evidence, when a request
/// involved in its violation performs them: the writes that left the
/// state wrong, or the reads behind a wrong response.
fn evidence_point(invariant: Invariant, point: Point) -> bool {
    use Point::*;
    match invariant {
        Invariant::UniqueCustomer => matches!(point, Insert | Claim),
        Invariant::DefaultsPresent => matches!(point, Insert | AttachDefault | Commit),
        Invariant::NoInternalError => false,
        Invariant::FreshCache => matches!(point, CacheWrite | CacheInvalidate),
        Invariant::SingleStripeCustomer => matches!(point, StripeCreate | SetProcessor),
        Invariant::UsageConserved => matches!(point, Deduct | SyncUsage | CacheWrite | CacheInvalidate),
        Invariant::ClaimCorrect => matches!(point, Claim | Insert),
        Invariant::ResponsesSeeDefaults => matches!(point, DbRead | CacheRead),
        Invariant::TenantIsolation => true,
        Invariant::Terminates => false,
    }
}

impl<'p, 'a> Renderer<'p, 'a> {
    fn new(page: &'p Page<'a>) -> Renderer<'p, 'a> {
        let requests = page.scenario.requests.len();
        let mut involved = vec![Vec::new(); requests];
        for (v, violation) in page.violations.iter().enumerate() {
            for &r in &violation.requests {
                if let Some(list) = involved.get_mut(r) {
                    list.push(v);
                }
            }
        }
        let mut settle_involved = vec![Vec::new(); page.execution.settles.len()];
        for (v, violation) in page.violations.iter().enumerate() {
            for &n in &violation.settle_reads {
                if let Some(list) = settle_involved.get_mut(n) {
                    list.push(v);
                }
            }
        }
        Renderer { page, out: String::new(), involved, settle_involved }
    }

    /// Whether `point`, performed by `request`, is evidence of a violation
    /// that involves the request.
    fn is_evidence(&self, request: usize, point: Point, result: &str) -> bool {
        // A cache miss reads nothing: it cannot be behind a wrong response.
        if point == Point::CacheRead && result.starts_with("miss") {
            return false;
        }
        self.involved.get(request).is_some_and(|violations| {
            violations.iter().any(|&v| evidence_point(self.page.violations[v].invariant, point))
        })
    }

    fn is_involved(&self, request: usize) -> bool {
        self.involved.get(request).is_some_and(|v| !v.is_empty())
    }

    fn push(&mut self, text: &str) {
        self.out.push_str(text);
    }

    fn render(mut self) -> String {
        let page = self.page;
        let title = format!(
            "{} under {}, schedule {}",
            page.scenario.name,
            page.strategy,
            show_schedule(&page.execution.schedule.to_string())
        );
        self.push("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        self.push("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        let _ = writeln!(self.out, "<title>cusim trace: {}</title>", escape(&title));
        let _ = writeln!(self.out, "<style>\n{CSS}</style>\n</head>\n<body>");
        self.header();
        self.violations();
        self.legend();
        self.diagram();
        self.footer();
        self.push("</body>\n</html>\n");
        self.out
    }

    fn header(&mut self) {
        let page = self.page;
        let execution = page.execution;
        let bad = !page.violations.is_empty();
        self.push("<header id=\"summary\">\n");
        let _ = writeln!(
            self.out,
            "<h1><span class=\"scenario\">{}</span> <span class=\"under\">under</span> <span class=\"strategy\">{}</span> <span class=\"verdict {}\">{}</span></h1>",
            escape(&page.scenario.name),
            escape(page.strategy.as_str()),
            if bad { "bad" } else { "good" },
            escape(&verdict(page.violations)),
        );
        if let Some(description) = &page.scenario.description {
            let _ = writeln!(self.out, "<p class=\"description\">{}</p>", escape(description));
        }
        self.push("<dl class=\"facts\">\n");
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
            ("end".into(), describe_end(&execution.end), false, false),
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
        for (label, value, code, wide) in facts {
            let value = if code { format!("<code>{}</code>", escape(&value)) } else { escape(&value) };
            let class = if wide { " class=\"wide\"" } else { "" };
            let _ = writeln!(self.out, "<div{class}><dt>{}</dt><dd>{value}</dd></div>", escape(&label));
        }
        self.push("</dl>\n</header>\n");
    }

    fn violations(&mut self) {
        let violations = self.page.violations;
        if violations.is_empty() {
            self.push(
                "<section id=\"violations\" class=\"ok\">\n<p><strong>No invariant violated.</strong> Every invariant of SPEC §6 holds for this run.</p>\n</section>\n",
            );
            return;
        }
        let count = match violations.len() {
            1 => "1 invariant violation".to_owned(),
            n => format!("{n} invariant violations"),
        };
        let _ = writeln!(
            self.out,
            "<section id=\"violations\" class=\"bad\">\n<h2>{count}</h2>\n<div class=\"items\">"
        );
        for violation in violations {
            let name = violation.invariant.as_str();
            let requests: Vec<String> = violation.requests.iter().map(|r| r.to_string()).collect();
            let _ = writeln!(
                self.out,
                "<article class=\"violated\" data-invariant=\"{}\" data-requests=\"{}\">",
                escape(name),
                escape(&requests.join(" "))
            );
            let _ = writeln!(self.out, "<h3>{}</h3>", escape(name));
            let links: Vec<String> = violation
                .requests
                .iter()
                .map(|r| format!("<a href=\"#lane-{r}\">r{r}</a>"))
                .chain(
                    violation
                        .settle_reads
                        .iter()
                        .map(|n| format!("<a href=\"#settle-{n}\">settle read {n}</a>")),
                )
                .collect();
            let involved = if links.is_empty() {
                "no request: found in the committed state".to_owned()
            } else {
                links.join(" ")
            };
            let _ = writeln!(self.out, "<p class=\"involved\">involves {involved}</p>");
            let _ = writeln!(self.out, "<p class=\"message\">{}</p>", escape(&violation.message));
            let evidence = serde_json::to_string_pretty(&violation.evidence)
                .unwrap_or_else(|_| violation.evidence.to_string());
            let _ = writeln!(
                self.out,
                "<details open><summary>evidence</summary><pre class=\"evidence\">{}</pre></details>",
                escape(&evidence)
            );
            self.push("</article>\n");
        }
        self.push("</div>\n</section>\n");
    }

    fn legend(&mut self) {
        self.push(concat!(
            "<ul class=\"legend\" aria-label=\"legend\">\n",
            "<li><span class=\"key op\"></span>operation at a named point, and its result</li>\n",
            "<li><span class=\"key waiting\"></span>waits for a lock: the arrow points at the holder</li>\n",
            "<li><span class=\"key blocked\"></span>blocked until the holder's transaction ends</li>\n",
            "<li><span class=\"key deadlock\"></span>deadlock victim (40P01)</li>\n",
            "<li><span class=\"key crash\"></span>crash</li>\n",
            "<li><span class=\"key ok\"></span>response</li>\n",
            "<li><span class=\"key error\"></span>error</li>\n",
            "<li><span class=\"key violation\"></span>involved in a violation</li>\n",
            "<li><span class=\"key evidence\"></span>an operation behind the violation</li>\n",
            "</ul>\n",
        ));
    }

    fn diagram(&mut self) {
        let execution = self.page.execution;
        let layout =
            Layout::new(&execution.trace, self.page.scenario.requests.len(), execution.end == End::Quiescent);
        self.push("<main id=\"trace\">\n");
        let _ = writeln!(
            self.out,
            "<div class=\"diagram\" style=\"--lanes:{}\" data-events=\"{}\">",
            layout.lanes,
            layout.events.len()
        );
        let _ = writeln!(self.out, "<div class=\"corner\" style=\"grid-area:{HEAD_ROW}/1\">step</div>");
        self.bands_and_steps(&layout);
        for lane in 0..layout.lanes {
            self.lane(&layout, lane);
        }
        self.full_width_rows(&layout);
        self.connectors(&layout);
        self.push("</div>\n");
        self.settles(&layout);
        self.push("</main>\n");
    }

    /// Shading per decision, and the decision's number and token on the left.
    fn bands_and_steps(&mut self, layout: &Layout<'_>) {
        let execution = self.page.execution;
        let minimal = execution.minimal_schedule().len();
        let mut i = 0;
        let mut group = 0;
        while i < layout.events.len() {
            let step = layout.events[i].step;
            let mut j = i + 1;
            while j < layout.events.len() && layout.events[j].step == step {
                j += 1;
            }
            let (from, to) = (Layout::row(i), Layout::row(j));
            let parity = if group % 2 == 0 { "even" } else { "odd" };
            let _ = writeln!(self.out, "<div class=\"band {parity}\" style=\"grid-row:{from}/{to}\"></div>");
            if let Some(step) = step {
                let token = execution.schedule.0.get(step).map(|t| t.to_string());
                let tail = step >= minimal;
                let title = if tail {
                    "after the minimal schedule: the default choice (the lowest runnable request)"
                } else {
                    "part of the minimal schedule"
                };
                let token = token.map_or(String::new(), |t| format!("<code>{}</code>", escape(&t)));
                let _ = writeln!(
                    self.out,
                    "<div class=\"step{}\" style=\"grid-row:{from}/{to}\" title=\"{}\"><span class=\"n\">{step}</span>{token}</div>",
                    if tail { " tail" } else { "" },
                    escape(title)
                );
            }
            group += 1;
            i = j;
        }
    }

    fn lane(&mut self, layout: &Layout<'_>, lane: usize) {
        let colour = LANE_COLOURS[lane % LANE_COLOURS.len()];
        let column = Layout::column(lane);
        let involved = self.is_involved(lane);
        let _ = writeln!(
            self.out,
            "<div class=\"lane\" id=\"lane-{lane}\" data-request=\"{lane}\"{} style=\"--lane:{colour}\">",
            if involved { " data-involved=\"true\"" } else { "" }
        );
        self.lane_head(lane, column);
        let _ = writeln!(
            self.out,
            "<div class=\"lifeline\" style=\"grid-row:{}/{};grid-column:{column}\"></div>",
            HEAD_ROW + 1,
            layout.foot_row
        );
        for (i, event) in layout.events.iter().enumerate() {
            if event.request != Some(lane) {
                continue;
            }
            let row = Layout::row(i);
            if let EventKind::Wait { txn, .. } = &event.kind {
                // Blocked from the wait until the request's next event (or the end).
                let next =
                    layout.events[i + 1..].iter().position(|e| e.request == Some(lane)).map(|n| i + 1 + n);
                let until = next.map_or(layout.foot_row, Layout::row);
                if until > row + 1 {
                    let _ = writeln!(
                        self.out,
                        "<div class=\"blocked\" style=\"grid-row:{}/{until};grid-column:{column}\"><span>blocked on txn {txn}</span></div>",
                        row + 1
                    );
                }
            }
            self.event_box(event, row, column, lane);
        }
        self.lane_foot(layout, lane, column);
        self.push("</div>\n");
    }

    fn lane_head(&mut self, lane: usize, column: usize) {
        let scenario = self.page.scenario;
        let (title, details) = match scenario.requests.get(lane) {
            Some(request) => describe_request(request),
            None => ("(not in the scenario)".to_owned(), Vec::new()),
        };
        let involved = self.is_involved(lane);
        let _ = writeln!(
            self.out,
            "<div class=\"lane-head{}\" style=\"grid-row:{HEAD_ROW};grid-column:{column}\">",
            if involved { " violation" } else { "" }
        );
        let _ = writeln!(
            self.out,
            "<div class=\"who\"><span class=\"r\">r{lane}</span> <span class=\"title\">{}</span></div>",
            escape(&title)
        );
        if !details.is_empty() {
            let _ = writeln!(self.out, "<div class=\"details\">{}</div>", escape(&details.join(" · ")));
        }
        for fault in scenario.faults.iter().filter(|f| f.request == lane) {
            let occurrence =
                if fault.occurrence == 1 { String::new() } else { format!(" (visit {})", fault.occurrence) };
            let _ = writeln!(
                self.out,
                "<div class=\"details\"><span class=\"badge fault\">fault</span> {} at {}{occurrence}</div>",
                escape(fault.kind.as_str()),
                escape(fault.at.as_str())
            );
        }
        if involved {
            let names: Vec<&str> =
                self.involved[lane].iter().map(|&v| self.page.violations[v].invariant.as_str()).collect();
            let mut unique: Vec<&str> = Vec::new();
            for name in names {
                if !unique.contains(&name) {
                    unique.push(name);
                }
            }
            let _ = writeln!(self.out, "<div class=\"flag\">violates {}</div>", escape(&unique.join(", ")));
        }
        self.push("</div>\n");
    }

    fn event_box(&mut self, event: &Event, row: usize, column: usize, lane: usize) {
        let involved = self.is_involved(lane);
        let step = event.step.map_or(String::new(), |s| format!(" data-step=\"{s}\""));
        let open = |kind: &str, classes: &str| {
            format!(
                "<div class=\"box {kind}{classes}\" data-kind=\"{kind}\" data-request=\"{lane}\"{step} style=\"grid-row:{row};grid-column:{column}\">"
            )
        };
        let violation = if involved { " violation" } else { "" };
        let text = match &event.kind {
            EventKind::Op { point, op, result, fault } => {
                let tone = Tone::of(result);
                let marked = if tone.is_error() {
                    violation
                } else if self.is_evidence(lane, *point, result) {
                    " evidence"
                } else {
                    ""
                };
                let faulted = if fault.is_some() { " faulted" } else { "" };
                let badge = fault.map_or(String::new(), |k| {
                    format!(" <span class=\"badge fault\">fault {}</span>", escape(k.as_str()))
                });
                format!(
                    "{}\n<div class=\"point\">{}{badge}</div>\n<div class=\"op\">{}</div>\n<div class=\"result\">→ {}</div>\n</div>",
                    open("op", &format!("{}{faulted}{marked}", tone.classes())),
                    escape(point.as_str()),
                    escape(op),
                    escape(result)
                )
            }
            EventKind::Wait { point, op, txn, holder } => {
                let holder = holder.map_or("a request not in the diagram".to_owned(), |h| format!("r{h}"));
                format!(
                    "{}\n<div class=\"point\">{}</div>\n<div class=\"op\">{}</div>\n<div class=\"result\">→ waits for txn {txn} of {}</div>\n</div>",
                    open("waiting", ""),
                    escape(point.as_str()),
                    escape(op),
                    escape(&holder)
                )
            }
            EventKind::Deadlock { point, op } => format!(
                "{}\n<div class=\"point\">{}</div>\n<div class=\"op\">{}</div>\n<div class=\"result\">→ 40P01 deadlock detected: this request is the victim</div>\n</div>",
                open("deadlock", &format!(" error{violation}")),
                escape(point.as_str()),
                escape(op)
            ),
            EventKind::Crash { point, op } => format!(
                "{}\n<div class=\"point\">× crash at {}</div>\n<div class=\"op\">before {}</div>\n<div class=\"result\">the request dies; an open transaction rolls back, committed work stays</div>\n</div>",
                open("crash", violation),
                escape(point.as_str()),
                escape(op)
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
                format!(
                    "{}\n<div class=\"point\">response <strong>{}</strong></div>\n<div class=\"result\">{}</div>\n</div>",
                    open("respond", &format!("{ok}{}{violation}", tone.classes())),
                    escape(&headline),
                    escape(&rest)
                )
            }
            EventKind::Tick { .. } | EventKind::Settle { .. } => return,
        };
        self.push(&text);
        self.push("\n");
    }

    fn lane_foot(&mut self, layout: &Layout<'_>, lane: usize, column: usize) {
        let (class, text) = match self.page.execution.outcomes.get(lane) {
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
        let _ = writeln!(
            self.out,
            "<div class=\"lane-foot {class}\" style=\"grid-row:{};grid-column:{column}\">r{lane}: {}</div>",
            layout.foot_row,
            escape(&text)
        );
    }

    /// Clock moves and the run's end, across every lane.
    fn full_width_rows(&mut self, layout: &Layout<'_>) {
        for (i, event) in layout.events.iter().enumerate() {
            if let EventKind::Tick { ms, now_ms } = event.kind {
                let _ = writeln!(
                    self.out,
                    "<div class=\"tick\" data-ms=\"{ms}\" style=\"grid-row:{}\"><span>clock +{ms} ms · now {now_ms} ms</span></div>",
                    Layout::row(i)
                );
            }
        }
        if let Some(row) = layout.end_row {
            let _ = writeln!(
                self.out,
                "<div class=\"end-note\" style=\"grid-row:{row}\"><span>run ended: {}</span></div>",
                escape(&describe_end(&self.page.execution.end))
            );
        }
    }

    /// Lock waits and deadlocks, from the waiting request to the holder's lane.
    fn connectors(&mut self, layout: &Layout<'_>) {
        let mut last_holder: Vec<Option<(usize, u64)>> = vec![None; layout.lanes];
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
                    ("conflict", to, format!("deadlock: r{from} and r{to} wait for each other (txn {txn}); r{from} is the victim"))
                }
                _ => continue,
            };
            if to == from || to >= layout.lanes {
                continue;
            }
            let (lo, hi) = (from.min(to), from.max(to));
            let direction = if to < from { "to-left" } else { "to-right" };
            let _ = writeln!(
                self.out,
                "<div class=\"connector {class} {direction}\" data-from=\"{from}\" data-to=\"{to}\" style=\"grid-row:{};grid-column:{}/{};--span:{}\"><span class=\"line\"></span><span class=\"label\">{}</span></div>",
                Layout::row(i),
                Layout::column(lo),
                Layout::column(hi) + 1,
                hi - lo + 1,
                escape(&label)
            );
        }
    }

    fn settles(&mut self, layout: &Layout<'_>) {
        self.push("<section id=\"settle\">\n<h2>Settle reads <small>after quiescence, each customer read once through the strategy's read path</small></h2>\n");
        if layout.settles.is_empty() {
            let why = if self.page.execution.end == End::Quiescent {
                "none recorded"
            } else {
                "none: the run did not reach quiescence"
            };
            let _ = writeln!(self.out, "<p class=\"none\">{why}</p>");
        } else {
            self.push("<div class=\"settle-lane\">\n");
            for (n, event) in layout.settles.iter().enumerate() {
                if let EventKind::Settle { customer, result } = &event.kind {
                    let tone = Tone::of(result);
                    let violated: Vec<&str> = self
                        .settle_involved
                        .get(n)
                        .map(|vs| vs.iter().map(|&v| self.page.violations[v].invariant.as_str()).collect())
                        .unwrap_or_default();
                    let ok = if tone.is_error() || !violated.is_empty() { "" } else { " ok" };
                    let (marked, note) = if violated.is_empty() {
                        ("", String::new())
                    } else {
                        (
                            " violation",
                            format!(
                                "\n<div class=\"violates\">violates {}</div>",
                                escape(&violated.join(", "))
                            ),
                        )
                    };
                    let _ = writeln!(
                        self.out,
                        "<div class=\"box settle{ok}{}{marked}\" id=\"settle-{n}\" data-kind=\"settle\" data-settle=\"{n}\">\n<div class=\"point\">settle read {n}</div>\n<div class=\"op\">{}</div>\n<div class=\"result\">→ {}</div>{note}\n</div>",
                        tone.classes(),
                        escape(customer),
                        escape(result)
                    );
                }
            }
            self.push("</div>\n");
        }
        self.push("</section>\n");
    }

    fn footer(&mut self) {
        let _ = writeln!(
            self.out,
            "<footer>cusim · {} under {} · {} events · trace hash {:016x}</footer>",
            escape(&self.page.scenario.name),
            escape(self.page.strategy.as_str()),
            self.page.execution.trace.len(),
            trace::hash(&self.page.execution.trace)
        );
    }
}

/// The empty schedule reads as `""`.
fn show_schedule(schedule: &str) -> String {
    if schedule.is_empty() {
        "\"\"".to_owned()
    } else {
        schedule.to_owned()
    }
}

fn verdict(violations: &[Violation]) -> String {
    if violations.is_empty() {
        return "no invariant violated".to_owned();
    }
    let mut names: Vec<&str> = Vec::new();
    for violation in violations {
        if !names.contains(&violation.invariant.as_str()) {
            names.push(violation.invariant.as_str());
        }
    }
    format!("violated: {}", names.join(", "))
}

fn describe_end(end: &End) -> String {
    match end {
        End::Quiescent => "quiescent: every request finished and no transaction is open".to_owned(),
        End::StepCap { steps } => {
            format!("step cap reached after {steps} steps with requests still runnable")
        }
        End::Stalled { waiting } => {
            let who: Vec<String> = waiting
                .iter()
                .map(|(r, holder)| match holder {
                    Some(h) => format!("r{r} waits for r{h}"),
                    None => format!("r{r} cannot move"),
                })
                .collect();
            format!("stalled: {}", who.join(", "))
        }
        End::OpenTransaction { requests } => {
            let who: Vec<String> = requests.iter().map(|r| format!("r{r}")).collect();
            format!("every request ended, but a transaction is left open by {}", who.join(", "))
        }
    }
}

const CSS: &str = r#":root {
  --ink: #1d2330; --muted: #5f6b7a; --line: #d5dae3; --paper: #ffffff; --ground: #f4f6f9;
  --red: #c9302c; --red-soft: #fdecea; --green: #23864a; --green-soft: #e9f6ee;
  --amber: #c77c02; --amber-soft: #fff6e0; --blue: #2d5fb3; --blue-soft: #edf3fd;
  --mono: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace;
  --sans: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", "Liberation Sans", sans-serif;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--ground); color: var(--ink); font: 14px/1.45 var(--sans); }
code, pre { font-family: var(--mono); }
header#summary { background: var(--paper); border-bottom: 1px solid var(--line); padding: 1rem 1.5rem 0.75rem; }
h1 { margin: 0 0 0.25rem; font-size: 1.35rem; font-weight: 650; display: flex; flex-wrap: wrap; align-items: center; gap: 0.45rem; }
h1 .under { color: var(--muted); font-weight: 400; }
h1 .strategy { background: #e8ecf3; border-radius: 6px; padding: 0 0.5rem; }
.verdict { font-size: 0.8rem; font-weight: 600; color: #fff; border-radius: 999px; padding: 0.15rem 0.7rem; }
.verdict.bad { background: var(--red); }
.verdict.good { background: var(--green); }
.description { margin: 0.25rem 0 0.6rem; color: var(--muted); max-width: 70rem; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(18rem, 1fr)); gap: 0.2rem 1.5rem; margin: 0; }
.facts div { display: flex; gap: 0.5rem; min-width: 0; }
.facts div.wide { grid-column: 1 / -1; }
.facts dt { color: var(--muted); white-space: nowrap; }
.facts dt::after { content: ":"; }
.facts dd { margin: 0; overflow-wrap: anywhere; }
.facts code { background: #eef1f6; border-radius: 4px; padding: 0 0.3rem; }
#violations { margin: 1rem 1.5rem 0; border-radius: 8px; padding: 0.75rem 1rem; }
#violations.ok { background: var(--green-soft); border: 2px solid var(--green); color: #124d2a; }
#violations.ok p { margin: 0; }
#violations.bad { background: var(--red-soft); border: 2px solid var(--red); }
#violations h2 { margin: 0 0 0.5rem; font-size: 1.05rem; color: var(--red); }
#violations .items { display: grid; grid-template-columns: repeat(auto-fit, minmax(24rem, 1fr)); gap: 0.75rem; }
.violated { background: var(--paper); border: 1px solid #efb7b3; border-left: 5px solid var(--red); border-radius: 6px; padding: 0.5rem 0.75rem; min-width: 0; }
.violated h3 { margin: 0; font: 700 0.95rem var(--mono); color: var(--red); }
.violated p { margin: 0.2rem 0; }
.violated .involved { color: var(--muted); font-size: 0.85rem; }
.violated .involved a { color: var(--red); font-weight: 600; font-family: var(--mono); }
.violated .message { font-family: var(--mono); font-size: 0.85rem; overflow-wrap: anywhere; }
.violated summary { cursor: pointer; color: var(--muted); font-size: 0.85rem; }
.evidence { margin: 0.25rem 0 0; max-height: 15rem; overflow: auto; background: #fbfbfd; border: 1px solid var(--line); border-radius: 4px; padding: 0.4rem 0.6rem; font-size: 0.78rem; line-height: 1.35; }
.legend { list-style: none; display: flex; flex-wrap: wrap; gap: 0.35rem 1.1rem; margin: 0.9rem 1.5rem 0; padding: 0; color: var(--muted); font-size: 0.8rem; }
.legend li { display: flex; align-items: center; gap: 0.35rem; }
.key { display: inline-block; width: 1.1rem; height: 0.8rem; border-radius: 3px; border: 1px solid var(--line); background: var(--paper); }
.key.op { border-left: 4px solid var(--blue); }
.key.waiting { background: var(--amber-soft); border-color: var(--amber); }
.key.blocked { background: repeating-linear-gradient(135deg, var(--amber) 0 3px, transparent 3px 6px); border-color: var(--amber); }
.key.deadlock { background: var(--red-soft); border: 2px dashed var(--red); }
.key.crash { background: #2b2f36; border-color: #2b2f36; }
.key.ok { background: var(--green-soft); border-color: var(--green); }
.key.error { background: var(--red-soft); border-color: var(--red); }
.key.violation { border: 2px solid var(--red); box-shadow: 0 0 0 2px rgba(201, 48, 44, 0.25); }
.key.evidence { border: 2px dashed var(--red); background: #fff4e8; }
main#trace { padding: 0.75rem 1.5rem 1.5rem; overflow-x: auto; }
.diagram { --gap: 1.25rem; display: grid; grid-template-columns: 4rem repeat(var(--lanes), minmax(17rem, 1fr)); column-gap: var(--gap); position: relative; }
.corner { align-self: end; color: var(--muted); font-size: 0.75rem; text-align: right; padding: 0 0.25rem 0.6rem 0; }
.lane { display: contents; }
.band { grid-column: 1 / -1; margin: 0 calc(var(--gap) * -0.5); z-index: 0; border-radius: 4px; }
.band.odd { background: rgba(30, 45, 80, 0.045); }
.step { grid-column: 1; position: sticky; left: 0; z-index: 6; background: rgba(244, 246, 249, 0.9); border-radius: 4px; text-align: right; padding: 0.55rem 0.25rem 0 0; font-family: var(--mono); font-size: 0.78rem; color: var(--muted); display: flex; flex-direction: column; align-items: flex-end; line-height: 1.25; }
.step .n { font-weight: 700; color: var(--ink); }
.step code { font-size: 0.72rem; background: #e6eaf1; border-radius: 3px; padding: 0 0.25rem; margin-top: 0.1rem; }
.step.tail .n { color: var(--muted); font-weight: 400; }
.step.tail code { background: transparent; color: #8b95a3; }
.lane-head { position: sticky; top: 0; z-index: 8; background: var(--paper); border: 1px solid var(--line); border-top: 4px solid var(--lane); border-radius: 6px; padding: 0.45rem 0.7rem; margin-bottom: 0.4rem; box-shadow: 0 1px 3px rgba(20, 30, 50, 0.08); min-width: 0; }
.lane-head .who { font-weight: 650; font-size: 0.95rem; }
.lane-head .r { color: #fff; background: var(--lane); border-radius: 5px; padding: 0 0.4rem; font-family: var(--mono); }
.lane-head .title { font-family: var(--mono); }
.lane-head .details { color: var(--muted); font-family: var(--mono); font-size: 0.78rem; overflow-wrap: anywhere; margin-top: 0.15rem; }
.lane-head .flag { margin-top: 0.3rem; color: var(--red); font-weight: 650; font-size: 0.8rem; }
.lane-head.violation { border-color: var(--red); border-top-color: var(--red); box-shadow: 0 0 0 3px rgba(201, 48, 44, 0.18); }
.lifeline { justify-self: center; width: 0; border-left: 2px dashed var(--lane); opacity: 0.45; z-index: 1; }
.lane[data-involved] .lifeline { border-left-color: var(--red); opacity: 0.6; }
.blocked { justify-self: center; width: 10px; z-index: 2; position: relative; border-radius: 5px; border: 1px solid var(--amber); background: repeating-linear-gradient(135deg, var(--amber) 0 3px, var(--amber-soft) 3px 7px); }
.blocked span { position: absolute; left: 16px; top: 50%; transform: translateY(-50%); white-space: nowrap; font-size: 0.72rem; font-weight: 600; color: #8a5600; background: var(--amber-soft); border: 1px solid #f0cf8a; border-radius: 999px; padding: 0 0.45rem; }
.box { position: relative; z-index: 4; justify-self: center; width: min(100%, 34rem); margin: 0.3rem 0; background: var(--paper); border: 1px solid var(--line); border-left: 4px solid var(--lane); border-radius: 6px; padding: 0.3rem 0.6rem 0.35rem; box-shadow: 0 1px 2px rgba(20, 30, 50, 0.07); font-size: 0.8rem; min-width: 0; }
.box .point { font-size: 0.7rem; font-weight: 700; letter-spacing: 0.05em; text-transform: uppercase; color: var(--lane); }
.box .op { font-family: var(--mono); color: #2b3340; overflow-wrap: anywhere; }
.box .result { font-family: var(--mono); color: #1d2330; font-weight: 600; overflow-wrap: anywhere; }
.box.notable .result { color: #9a5b00; }
.box.error { background: var(--red-soft); border-color: #eab0ab; border-left-color: var(--red); }
.box.error .result { color: var(--red); }
.box.internal { background: #fbd9d5; }
.box.waiting { background: var(--amber-soft); border-color: #efcd86; border-left-color: var(--amber); }
.box.waiting .result { color: #8a5600; }
.box.deadlock { border: 2px dashed var(--red); border-left: 4px solid var(--red); }
.box.crash { background: #2b2f36; border-color: #2b2f36; color: #e9ecf1; }
.box.crash .point { color: #ffb1aa; }
.box.crash .op, .box.crash .result { color: #e9ecf1; }
.box.faulted { outline: 2px solid #8d5bd0; outline-offset: 1px; }
.box.respond .point { text-transform: none; letter-spacing: 0; font-size: 0.78rem; color: var(--muted); }
.box.respond strong { font-family: var(--mono); font-size: 0.85rem; }
.box.respond.ok { background: var(--green-soft); border-color: #a9d9bb; border-left-color: var(--green); }
.box.respond.ok strong { color: var(--green); }
.box.respond.error strong { color: var(--red); }
.box.respond .result { font-weight: 400; }
.badge { display: inline-block; border-radius: 999px; padding: 0 0.45rem; font-size: 0.68rem; letter-spacing: 0; text-transform: none; font-weight: 600; }
.badge.fault { background: #8d5bd0; color: #fff; margin-left: 0.35rem; }
.tick, .end-note { grid-column: 2 / -1; z-index: 5; align-self: center; display: flex; align-items: center; gap: 0.6rem; margin: 0.35rem 0; color: var(--blue); font: 600 0.78rem var(--mono); }
.tick::before, .tick::after, .end-note::before, .end-note::after { content: ""; flex: 1; border-top: 2px dotted currentColor; }
.tick span, .end-note span { background: var(--blue-soft); border: 1px solid #b9cdf0; border-radius: 999px; padding: 0.1rem 0.75rem; }
.end-note { color: var(--red); }
.end-note span { background: var(--red-soft); border-color: #eab0ab; }
.connector { position: relative; z-index: 3; pointer-events: none; --half: calc((100% - (var(--span) - 1) * var(--gap)) / var(--span) / 2); }
.connector .line { position: absolute; top: 50%; left: var(--half); right: var(--half); border-top: 2px dashed var(--amber); }
.connector.conflict .line { border-top: 3px solid var(--red); }
.connector .line::before { content: ""; position: absolute; top: -8px; border: 7px solid transparent; }
.connector.to-left .line::before { left: -4px; border-right: 12px solid var(--amber); border-left-width: 0; }
.connector.to-right .line::before { right: -4px; border-left: 12px solid var(--amber); border-right-width: 0; }
.connector.conflict .line::before { top: -8.5px; }
.connector.conflict.to-left .line::before { border-right-color: var(--red); }
.connector.conflict.to-right .line::before { border-left-color: var(--red); }
.connector .line::after { content: ""; position: absolute; top: -6px; width: 10px; height: 10px; border-radius: 50%; background: var(--amber); }
.connector.conflict .line::after { background: var(--red); }
.connector.to-left .line::after { right: -5px; }
.connector.to-right .line::after { left: -5px; }
.connector .label { position: absolute; bottom: calc(50% + 5px); width: max-content; max-width: calc((var(--span) - 1) * (2 * var(--half) + var(--gap)) - min(2 * var(--half), 34rem) / 2 - 2rem); font-size: 0.72rem; font-weight: 650; line-height: 1.3; color: #7a4c00; background: var(--amber-soft); border: 1px solid #efcd86; border-radius: 8px; padding: 0.05rem 0.5rem; }
.connector.conflict .label { color: var(--red); background: var(--red-soft); border-color: #eab0ab; }
.connector.to-left .label { left: calc(var(--half) + 1rem); }
.connector.to-right .label { right: calc(var(--half) + 1rem); }
.lane-foot { justify-self: center; z-index: 4; margin: 0.5rem 0 0; font-size: 0.78rem; font-weight: 650; border-radius: 999px; padding: 0.15rem 0.75rem; background: #e8ecf2; color: var(--muted); border: 1px solid var(--line); }
.lane-foot.ok { background: var(--green-soft); color: var(--green); border-color: #a9d9bb; }
.lane-foot.error { background: var(--red-soft); color: var(--red); border-color: #eab0ab; }
.lane-foot.crashed { background: #2b2f36; color: #fff; border-color: #2b2f36; }
.lane-foot.unfinished { background: var(--amber-soft); color: #8a5600; border-color: #efcd86; }
#settle { margin-top: 1.5rem; border-top: 1px solid var(--line); padding-top: 0.75rem; }
#settle h2 { font-size: 1rem; margin: 0 0 0.5rem; }
#settle h2 small { color: var(--muted); font-weight: 400; font-size: 0.8rem; margin-left: 0.4rem; }
#settle .none { color: var(--muted); margin: 0; }
.settle-lane { display: flex; flex-wrap: wrap; gap: 0.6rem; --lane: #5f6b7a; }
.settle-lane .box { margin: 0; width: min(100%, 40rem); justify-self: auto; }
.settle-lane .box.ok { border-left-color: var(--green); }
.lane .box.violation, .settle-lane .box.violation { border: 2px solid var(--red); border-left-width: 6px; box-shadow: 0 0 0 4px rgba(201, 48, 44, 0.2); }
.lane .box.evidence { border: 2px dashed var(--red); border-left: 6px solid var(--red); background: #fff4e8; }
.box .violates { color: var(--red); font-weight: 650; font-size: 0.78rem; margin-top: 0.15rem; }
footer { padding: 0.75rem 1.5rem 1.5rem; color: var(--muted); font-size: 0.75rem; font-family: var(--mono); }
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin;
    use crate::oracle;
    use crate::schedule::Schedule;
    use crate::stepper::{execute_run, Prepared, Replay, RunOptions};

    fn run(name: &str, strategy: Strategy, schedule: &str) -> (Scenario, Execution, Vec<Violation>) {
        let scenario = builtin::find(name).expect("a built-in scenario").scenario().expect("it parses");
        let prepared = Prepared::new(&scenario, strategy).expect("its customers can be made");
        let schedule = Schedule::parse(schedule).expect("a valid schedule");
        let options = RunOptions { record_trace: true, ..RunOptions::default() };
        let execution = execute_run(&prepared, &mut Replay::new(&schedule), options).expect("it replays");
        let violations = oracle::check(&prepared, &execution);
        (scenario, execution, violations)
    }

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    /// The R1 legacy regression case's minimal schedule.
    const R1_LEGACY: &str = "1";

    #[test]
    fn r1_legacy_shows_both_lanes_and_the_violation() {
        let (scenario, execution, violations) = run("r1-same-id-create", Strategy::Legacy, R1_LEGACY);
        assert!(violations.iter().any(|v| v.invariant.as_str() == "no_internal_error"));
        let html = render(&scenario, Strategy::Legacy, &execution, &violations);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(count(&html, "<main id=\"trace\">"), 1);
        assert_eq!(count(&html, "class=\"lane\""), scenario.requests.len());
        for r in 0..scenario.requests.len() {
            assert!(
                html.contains(&format!("<div class=\"lane\" id=\"lane-{r}\" data-request=\"{r}\"")),
                "lane {r}"
            );
        }
        assert!(html.contains("id=\"violations\" class=\"bad\""));
        assert!(html.contains("class=\"violated\" data-invariant=\"no_internal_error\" data-requests=\"1\""));
        // The failing response is marked, and stands out as an internal error.
        assert!(html.contains("class=\"box respond error internal violation\""), "{html}");
        assert!(html.contains("class=\"lane-head violation\""));
        // The header: schedule, minimal schedule, trace hash.
        assert!(html.contains(&format!("<code>{}</code>", execution.schedule)));
        assert!(html.contains("<dt>minimal schedule</dt><dd><code>1</code></dd>"));
        assert!(html.contains(&format!("{:016x}", trace::hash(&execution.trace))));
        // One row per event, settle reads apart.
        assert!(html.contains("id=\"settle\""));
        assert!(html.contains("data-kind=\"settle\""));
        // Nothing is fetched.
        for fetch in ["http://", "https://", "<script", "<link", "<img", "@import", "url("] {
            assert!(!html.contains(fetch), "the page must not contain {fetch:?}");
        }
    }

    #[test]
    fn r2_marks_the_stale_write_and_the_settle_read_behind_the_violation() {
        let (scenario, execution, violations) = run("r2-stale-cache", Strategy::Legacy, "0.0.1.1.1");
        let fresh =
            violations.iter().find(|v| v.invariant == Invariant::FreshCache).expect("R2 breaks fresh_cache");
        assert_eq!(fresh.requests, [1], "the check showed (and cached) the stale customer");
        assert_eq!(fresh.settle_reads, [0]);
        let html = render(&scenario, Strategy::Legacy, &execution, &violations);
        // r1's cache write is the operation behind it; r0's (the fresh one) is not.
        let boxes: Vec<&str> = html.split("<div class=\"box ").skip(1).collect();
        let writes = |request: &str| -> Vec<&str> {
            boxes
                .iter()
                .filter(|b| b.contains(&format!("data-request=\"{request}\"")) && b.contains("cache_write"))
                .copied()
                .collect()
        };
        assert!(
            writes("1").iter().all(|b| b.starts_with("op") && b.contains(" evidence")),
            "{:?}",
            writes("1")
        );
        assert!(writes("0").iter().all(|b| !b.contains(" evidence")), "{:?}", writes("0"));
        // A cache miss is not evidence of anything.
        assert!(boxes.iter().filter(|b| b.contains("miss (epoch")).all(|b| !b.contains(" evidence")));
        // The settle read that showed the stale customer is marked and linked.
        assert!(html.contains("id=\"settle-0\" data-kind=\"settle\" data-settle=\"0\""), "{html}");
        assert!(html.contains("<a href=\"#settle-0\">settle read 0</a>"));
        assert!(html.contains("violates fresh_cache, responses_see_defaults"));
    }

    #[test]
    fn rendering_is_byte_for_byte_stable() {
        let (scenario, first, violations) = run("r1-same-id-create", Strategy::Legacy, R1_LEGACY);
        let (_, second, _) = run("r1-same-id-create", Strategy::Legacy, R1_LEGACY);
        let a = render(&scenario, Strategy::Legacy, &first, &violations);
        let b = render(&scenario, Strategy::Legacy, &first, &violations);
        let c = render(&scenario, Strategy::Legacy, &second, &violations);
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn lock_waits_are_drawn_from_the_waiter_to_the_holder() {
        // Under transactional and safe, r0's insert waits for r1's open transaction.
        for strategy in [Strategy::Transactional, Strategy::Safe] {
            let (scenario, execution, violations) = run("r1-same-id-create", strategy, "0.1.1.1.1");
            assert!(execution
                .trace
                .iter()
                .any(|e| matches!(e.kind, EventKind::Wait { holder: Some(1), .. })));
            let html = render(&scenario, strategy, &execution, &violations);
            assert!(
                html.contains("class=\"connector wait to-right\" data-from=\"0\" data-to=\"1\""),
                "{strategy}: {html}"
            );
            assert!(html.contains("r0 waits for r1 (txn"));
            assert!(html.contains("class=\"blocked\""));
            assert!(html.contains("id=\"violations\" class=\"ok\""), "{strategy}");
            assert!(!html.contains("class=\"violated\""));
            assert!(!html.contains("lane-head violation"));
            assert!(!html.contains("data-involved=\"true\""));
        }
    }

    #[test]
    fn deadlocks_crashes_ticks_and_stalls_are_drawn() {
        let (scenario, mut execution, violations) =
            run("r1-same-id-create", Strategy::Transactional, "0.1.1.1.1");
        // A deadlock after r0's wait, as the stepper records one.
        let wait = execution.trace.iter().position(|e| matches!(e.kind, EventKind::Wait { .. })).unwrap();
        let Event { step, request, kind: EventKind::Wait { point, op, .. } } = execution.trace[wait].clone()
        else {
            unreachable!()
        };
        execution
            .trace
            .insert(wait + 1, Event { step, request, kind: EventKind::Deadlock { point, op: op.clone() } });
        execution.trace.insert(
            0,
            Event { step: Some(0), request: None, kind: EventKind::Tick { ms: 5000, now_ms: 5000 } },
        );
        execution.trace.push(Event {
            step: Some(99),
            request: Some(1),
            kind: EventKind::Crash { point, op },
        });
        execution.end = End::Stalled { waiting: vec![(0, Some(1))] };
        let html = render(&scenario, Strategy::Transactional, &execution, &violations);
        assert!(
            html.contains("class=\"connector conflict to-right\" data-from=\"0\" data-to=\"1\""),
            "{html}"
        );
        assert!(html.contains("data-kind=\"deadlock\""));
        assert!(html.contains("class=\"tick\" data-ms=\"5000\""));
        assert!(html.contains("clock +5000 ms · now 5000 ms"));
        assert!(html.contains("data-kind=\"crash\""));
        assert!(html.contains("class=\"end-note\""));
        assert!(html.contains("stalled: r0 waits for r1"));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<script>alert('x & \"y\"')</script>"),
            "&lt;script&gt;alert(&#39;x &amp; &quot;y&quot;&#39;)&lt;/script&gt;"
        );
        let (mut scenario, execution, violations) = run("r1-same-id-create", Strategy::Legacy, R1_LEGACY);
        scenario.name = "<script>alert(1)</script>".into();
        scenario.description = Some("a \"quoted\" & <b>bold</b> 'claim'".into());
        let html = Page::new(&scenario, Strategy::Legacy, &execution, &violations)
            .note("origin", "<img src=x onerror=alert(1)>")
            .render();
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<b>"));
        assert!(!html.contains("<img"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("a &quot;quoted&quot; &amp; &lt;b&gt;bold&lt;/b&gt; &#39;claim&#39;"));
    }

    #[test]
    fn requests_are_described_by_op_and_customer() {
        let scenario = builtin::find("r2-stale-cache").unwrap().scenario().unwrap();
        assert_eq!(
            describe_request(&scenario.requests[0]),
            ("create cus_1".to_owned(), vec!["name=Ann".to_owned()])
        );
        assert_eq!(
            describe_request(&scenario.requests[1]),
            ("check cus_1".to_owned(), vec!["feature=words".to_owned()])
        );
        let track = Request::track("cus_9", "words", 3);
        assert_eq!(describe_request(&track).1, vec!["feature=words".to_owned(), "value=3".to_owned()]);
        let idless = Request::create(
            None,
            cusim::model::CustomerData { email: Some("a@x.io".into()), ..Default::default() },
        );
        assert_eq!(describe_request(&idless).0, "create (id null)");
    }
}
