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
//! and holds no timestamp: the same run gives the same bytes. It is
//! written with `maud`, which escapes every value put into it.
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

mod layout;
mod page;

/// The pages' stylesheet (inline in each page), shared with `cusim check`'s page.
pub const STYLESHEET: &str = include_str!("style.css");

/// The frame of a report page of `cusim check` and `cusim drive`: its
/// head (the stylesheet and `css`), a summary header (`heading`, the
/// verdict, `facts`), then `body`.
pub fn report_page(
    title: &str,
    css: &str,
    heading: &str,
    (bad, verdict): (bool, &str),
    facts: &[(&str, String)],
    body: maud::Markup,
) -> String {
    use maud::{html, PreEscaped, DOCTYPE};
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(STYLESHEET)) (PreEscaped(css)) }
            }
            body {
                header id="summary" {
                    h1 {
                        span class="scenario" { (heading) }
                        span class=(if bad { "verdict bad" } else { "verdict good" }) { (verdict) }
                    }
                    dl class="facts" {
                        @for (label, value) in facts {
                            div { dt { (label) } dd { (value) } }
                        }
                    }
                }
                (body)
            }
        }
    };
    markup.into_string() + "\n"
}
#[cfg(test)]
mod tests;

use cusim::backend::Point;
use cusim::flow::{Request, Strategy};
use cusim::model::Scope;

use crate::drive::stepper::Execution;
use crate::input::scenario::Scenario;
use crate::judge::{End, Invariant, Violation};

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
        page::render(self)
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
