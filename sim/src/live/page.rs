//! A drive's report as one self-contained HTML page, in the style of the
//! trace pages: the findings first, then for each finding (and for a
//! replay's first run) the real statements of its schedule as a diagram
//! with one lane per request, a row per step in the order the steps were
//! let through, and each request's HTTP answer at the foot of its lane.
//!
//! Elements a check can rely on: `id="violations"` with one
//! `class="violated" data-invariant="NAME" data-finding="N"` per finding
//! (class `ok` when none); one `<section class="run">` per drawn
//! schedule, `id="finding-N"` or `id="replay"`, with `data-schedule`; in
//! it one `class="lane" data-request="N"` per request (and
//! `data-request="server"` for the server's own work), every step as
//! `class="box …" data-store="postgres|redis"` (class `waiting` when it
//! waited on a lock, `faulted` when a fault was injected at it, `error`
//! when it failed), and every answer as `class="lane-foot …"
//! data-request="N"`.

use maud::{html, Markup};

use super::trace::Line;
use super::{Answer, DriveReport};
use crate::check::page::LANE_COLOURS;
use crate::report::html::report_page;

/// What the page adds to the trace pages' stylesheet.
const CSS: &str = "
main#runs { padding: 0.75rem 1.5rem 1.5rem; }
section.run { background: var(--paper); border: 1px solid var(--line); border-radius: 8px; margin: 0 0 1rem; padding: 0.5rem 0.75rem 0.75rem; overflow-x: auto; }
section.run.bad { border-color: #efb7b3; border-left: 5px solid var(--red); }
section.run h2 { font-size: 1rem; margin: 0.2rem 0 0.4rem; }
section.run .schedule, section.run .replay { font-family: var(--mono); font-size: 0.78rem; word-break: break-all; margin: 0.2rem 0; }
.diagram { grid-template-columns: 3.5rem repeat(var(--lanes), minmax(16rem, 1fr)); margin-top: 0.5rem; }
.box .sql { font-family: var(--mono); font-size: 0.74rem; white-space: pre-wrap; word-break: break-word; margin: 0.15rem 0; }
#parked { padding: 0 1.5rem; }
#parked h2, #diverged h2 { font-size: 1rem; margin: 0.5rem 0; }
#diverged { padding: 0 1.5rem 1rem; }
";

/// One schedule drawn on the page.
struct Run<'a> {
    id: String,
    title: String,
    schedule: &'a str,
    replay: Option<&'a str>,
    statements: &'a [Line],
    answers: &'a [Answer],
    bad: bool,
}

/// The page for `report`, a drive against `target`. `commands` holds the
/// replay command of each finding, in order; `replayed` is the schedule a
/// replay ran, if the drive was one.
pub fn render(report: &DriveReport, target: &str, commands: &[String], replayed: Option<&str>) -> String {
    let bad = !report.findings.is_empty();
    let verdict = match report.findings.len() {
        0 => "no invariant broken".to_owned(),
        1 => "1 finding".to_owned(),
        n => format!("{n} findings"),
    };
    let seconds = report.elapsed_ms as f64 / 1e3;
    let mut facts = vec![
        ("target", target.to_owned()),
        ("schedules", format!("{} in {seconds:.1} s", report.schedules_run)),
        ("steps let through", report.steps.to_string()),
        ("lock waits parked", report.lock_waits.to_string()),
        ("quiet period", format!("{} ms", report.quiet_ms)),
    ];
    if let Some(reproduced) = report.reproduced {
        facts.push(("same verdict", format!("{reproduced} of {}", report.schedules_run)));
    }
    if let Some(same) = report.same_order {
        facts.push(("same statement order", format!("{same} of {}", report.schedules_run)));
    }
    let mut runs: Vec<Run> = report
        .findings
        .iter()
        .enumerate()
        .map(|(n, finding)| Run {
            id: format!("finding-{n}"),
            title: format!("#{n} {}", finding.invariant),
            schedule: &finding.schedule,
            replay: commands.get(n).map(String::as_str),
            statements: &finding.statements,
            answers: &finding.answers,
            bad: true,
        })
        .collect();
    if let (Some(statements), Some(answers)) = (&report.trace, &report.answers) {
        runs.push(Run {
            id: "replay".into(),
            title: "the replay's first run".into(),
            schedule: replayed.unwrap_or(""),
            replay: None,
            statements,
            answers,
            bad: false,
        });
    }
    let body = html! {
        (findings_section(report))
        ul class="legend" aria-label="legend" {
            li { span class="key op" {} "a statement or command let through" }
            li { span class="key waiting" {} "waited on a lock (its reply let go as a decision)" }
            li { span class="key error" {} "failed, or a fault injected" }
            li { span class="key ok" {} "answered 2xx" }
        }
        main id="runs" {
            @for run in &runs { (run_section(run)) }
        }
        @if !report.parked.is_empty() {
            section id="parked" {
                h2 { "parked on a lock" }
                ul {
                    @for parked in &report.parked {
                        li { "r" (parked.request) " in " code { (parked.schedule) } }
                    }
                }
            }
        }
        @if !report.diverged.is_empty() {
            section id="diverged" {
                h2 { "not followed as given" }
                ul { @for why in &report.diverged { li { (why) } } }
            }
        }
        footer { "cusim drive; " (report.schedules_run) " schedules" }
    };
    report_page(
        &format!("cusim drive: {} against {target}", report.scenario),
        CSS,
        &format!("cusim drive {}", report.scenario),
        (bad, &verdict),
        &facts,
        body,
    )
}

fn findings_section(report: &DriveReport) -> Markup {
    if report.findings.is_empty() {
        return html! {
            section id="violations" class="ok" {
                p { strong { "No invariant broken." } " Every schedule run kept every invariant judged from outside." }
            }
        };
    }
    html! {
        section id="violations" class="bad" {
            h2 { (report.findings.len()) " findings" }
            div class="items" {
                @for (n, finding) in report.findings.iter().enumerate() {
                    @let races: Vec<String> = finding.races.iter().map(|r| r.to_string()).collect();
                    article class="violated" data-invariant=(finding.invariant) data-finding=(n) {
                        h3 { a href=(format!("#finding-{n}")) { "#" (n) " " (finding.invariant) } }
                        p class="involved" {
                            "schedule " code { (finding.schedule) }
                            @if let Some(seed) = finding.seed { " (seed " (seed) ")" }
                            @if !races.is_empty() { "; suspected " (races.join(" ")) }
                        }
                        p class="message" { (finding.message) }
                    }
                }
            }
        }
    }
}

/// The server lane's colour (the setup lane's on the check page).
const SERVER_COLOUR: &str = "#5f6b7a";

fn colour(request: usize) -> &'static str {
    LANE_COLOURS[request % LANE_COLOURS.len()]
}

fn run_section(run: &Run) -> Markup {
    let lanes = run
        .statements
        .iter()
        .filter_map(|l| l.request)
        .chain(run.answers.iter().map(|a| a.request))
        .max()
        .map_or(1, |r| r + 1);
    // The server's own work, if it did any, in a lane after the requests'.
    let server = run.statements.iter().any(|l| l.request.is_none());
    let columns = lanes + usize::from(server);
    let foot = run.statements.len() + 2;
    html! {
        section class=(if run.bad { "run bad" } else { "run" }) id=(run.id) data-schedule=(run.schedule) {
            h2 { (run.title) }
            @if !run.schedule.is_empty() { p class="schedule" { "schedule " (run.schedule) } }
            @if let Some(replay) = run.replay { p class="replay" { "replay: " (replay) } }
            div class="diagram" style=(format!("--lanes:{columns}")) {
                div class="corner" style="grid-area:1/1" { "step" }
                @for request in 0..lanes {
                    @let column = request + 2;
                    @let call = run.answers.iter().find(|a| a.request == request);
                    div class="lane" data-request=(request) style=(format!("--lane:{}", colour(request))) {
                        div class="lane-head" style=(format!("grid-area:1/{column}")) {
                            div class="who" { span class="r" { "r" (request) } }
                            @if let Some(answer) = call { div class="details" { (answer.call) } }
                        }
                        div class="lifeline" style=(format!("grid-row:2/{foot};grid-column:{column}")) {}
                        @if let Some(answer) = call {
                            div class=(format!("lane-foot {}", answer.class)) data-request=(request) style=(format!("grid-row:{foot};grid-column:{column}")) {
                                "r" (request) ": " (answer.answer)
                            }
                        }
                    }
                }
                @if server {
                    div class="lane" data-request="server" style=(format!("--lane:{SERVER_COLOUR}")) {
                        div class="lane-head" style=(format!("grid-area:1/{}", lanes + 2)) {
                            div class="who" { span class="r" { "s" } } div class="details" { "the server's own work" }
                        }
                        div class="lifeline" style=(format!("grid-row:2/{foot};grid-column:{}", lanes + 2)) {}
                    }
                }
                @for (k, line) in run.statements.iter().enumerate() {
                    div class="step" style=(format!("grid-area:{}/1", k + 2)) { span class="n" { (k) } }
                    @match line.request {
                        Some(request) => (step_box(line, k + 2, request + 2, colour(request))),
                        None => (step_box(line, k + 2, lanes + 2, SERVER_COLOUR)),
                    }
                }
            }
        }
    }
}

fn step_box(line: &Line, row: usize, column: usize, colour: &str) -> Markup {
    let mut class = "box".to_owned();
    if line.waited {
        class += " waiting";
    }
    if line.fault.is_some() {
        class += " faulted";
    }
    if line.error.is_some() {
        class += " error";
    }
    let result = match (&line.reply, &line.error) {
        (_, Some(error)) => format!("error {error}"),
        (Some(reply), None) => reply.clone(),
        (None, None) => "(no reply)".into(),
    };
    html! {
        div class=(class) data-store=(line.store) style=(format!("grid-area:{row}/{column};--lane:{colour}")) {
            div class="point" {
                (line.store) "#" (line.conn) "." (line.seq)
                @if line.waited { " " span class="badge" { "waited on a lock" } }
                @if let Some(kind) = &line.fault { " " span class="badge fault" { (kind) } }
            }
            @for statement in &line.statements { div class="sql" { (statement) } }
            div class="result" { "→ " (result) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::{DriveFinding, Parked};

    fn line(request: usize, statement: &str, waited: bool, fault: Option<&str>) -> Line {
        Line {
            request: Some(request),
            store: "postgres".into(),
            conn: request as u64 + 1,
            seq: 0,
            statements: vec![statement.into()],
            reply: Some("INSERT 0 1".into()),
            error: None,
            waited,
            fault: fault.map(str::to_owned),
        }
    }

    fn answer(request: usize, class: &str) -> Answer {
        Answer {
            request,
            call: format!("customers.get_or_create c-{request}"),
            class: class.into(),
            answer: if class == "ok" { "200".into() } else { "500 internal_error: boom".into() },
        }
    }

    fn report(findings: Vec<DriveFinding>) -> DriveReport {
        DriveReport {
            scenario: "r1-same-id-create".into(),
            requests: 2,
            schedules_run: 7,
            findings,
            reproduced: None,
            same_order: None,
            steps: 40,
            server_steps: 0,
            lock_waits: 1,
            parked: vec![Parked { request: 1, schedule: "0 1 1".into() }],
            trace: None,
            answers: None,
            diverged: vec![],
            search: None,
            elapsed_ms: 1500,
            quiet_ms: 100,
        }
    }

    #[test]
    fn a_finding_is_drawn_with_a_lane_per_request_its_steps_in_order_and_the_answers() {
        let finding = DriveFinding {
            invariant: "R1".into(),
            schedule: "0 1 0 1".into(),
            seed: Some(4),
            races: vec![],
            message: "two customers <for> one id".into(),
            seen_in: "answers",
            statements: vec![
                line(0, "select 1", false, None),
                line(1, "insert into customers", true, None),
                line(0, "insert into customers", false, Some("db_error")),
                Line { request: None, ..line(0, "select count(*) from customer_products", false, None) },
            ],
            answers: vec![answer(0, "error"), answer(1, "ok")],
        };
        let page = render(
            &report(vec![finding]),
            "http://127.0.0.1:3000",
            &["cusim drive --replay '0 1 0 1'".into()],
            None,
        );
        assert!(page.contains(r#"class="violated" data-invariant="R1" data-finding="0""#));
        assert!(page.contains(r#"id="finding-0" data-schedule="0 1 0 1""#));
        assert_eq!(page.matches(r#"class="lane" data-request="#).count(), 3);
        assert!(page.contains(r#"class="lane" data-request="server""#));
        assert!(page.contains(r#"class="box" data-store="postgres" style="grid-area:5/4"#));
        // The steps in the order they were let through, each in its lane.
        let select = page.find("select 1").unwrap();
        let waited = page.find(r#"class="box waiting" data-store="postgres" style="grid-area:3/3"#).unwrap();
        let faulted = page.find(r#"class="box faulted" data-store="postgres" style="grid-area:4/2"#).unwrap();
        assert!(select < waited && waited < faulted);
        assert!(page.contains(r#"class="lane-foot error" data-request="0""#));
        assert!(page.contains("r1: 200"));
        // Text is escaped, and the replay command is shown.
        assert!(page.contains("two customers &lt;for&gt; one id"));
        assert!(page.contains("replay: cusim drive --replay '0 1 0 1'"));
        assert!(page.contains(r#"id="parked""#));
    }

    #[test]
    fn a_clean_replay_draws_its_first_run() {
        let mut clean = report(vec![]);
        clean.reproduced = Some(7);
        clean.same_order = Some(6);
        clean.trace = Some(vec![line(0, "select 1", false, None)]);
        clean.answers = Some(vec![answer(0, "ok")]);
        let page = render(&clean, "http://127.0.0.1:3000", &[], Some("0 0"));
        assert!(page.contains(r#"id="violations" class="ok""#));
        assert!(page.contains(r#"id="replay" data-schedule="0 0""#));
        assert!(page.contains("6 of 7"));
        assert!(!page.contains("class=\"violated\""));
    }
}
