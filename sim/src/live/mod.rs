//! `cusim drive`: cusim on the wire between a real server and its
//! databases. Proxies ([`cusim_wire`]) stand in front of the real Postgres
//! and Redis; the server under test is started with its store URLs
//! pointing at them ([`server`]); a scenario's requests are sent as HTTP
//! calls ([`calls`]) while every statement and command is held at the
//! wire and let go one mover at a time, as a scheduler decides ([`run`]).
//! Each schedule is judged by `cusim check`'s black-box verdict (the
//! answers and a read-back), and a finding comes with its schedule, which
//! `--replay` runs again, and the real statements it ran ([`trace`]).
//!
//! A drive's report reads as text, JSON, or one HTML page ([`page`]) with
//! a lane per request.

pub mod calls;
pub mod page;
pub mod run;
pub mod server;
pub mod trace;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cusim::model::Catalog;
use cusim_wire::url::ServerUrl;
use cusim_wire::{Proxy, Store};
use serde::Serialize;
use sqlx::Connection;
use tokio::sync::mpsc;

use crate::check::client::{Client, Target};
use crate::check::history::{History, Sender, FORMAT};
use crate::check::preflight::{self, Given};
use crate::check::profile::Profile;
use crate::check::rows::{check_rows, quoted_schema, Layout, RowsSource};
use crate::check::verdict::{self, Finding};
use crate::check::workload::Group;
use crate::drive::stepper::Chooser;
use crate::explore::schedulers::{pct_without_ticks, random_chooser};
use crate::explore::Orders;
use crate::input::scenario::{FaultKind, Scenario};
use crate::input::schedule::{Schedule, Token};
use crate::judge::races::Race;

use self::calls::{block_of, calls_of, feature_named, fresh, Calls};
use self::run::{wire_fault, Driven, Driver, Move, Wire};
use self::server::{Server, ServerCommand};
use self::trace::Line;

/// Who decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheduler {
    /// Probabilistic concurrency testing, aiming at bugs of this depth.
    Pct {
        depth: usize,
    },
    Random,
    /// Every order of the requests' steps with at most `max_preemptions`
    /// preemptions (all of them with none), depth first, up to the
    /// drive's number of schedules.
    Exhaustive {
        max_preemptions: Option<usize>,
    },
    /// One schedule, run `repeat` times.
    Replay {
        schedule: Schedule,
        repeat: usize,
    },
    /// A base schedule (given, or pct's of the first seed), then the same
    /// with fault `kind` at each step it let through that the fault can
    /// hit, one schedule each.
    Sweep {
        base: Option<Schedule>,
        kind: FaultKind,
    },
}

/// What a drive is asked to do.
#[derive(Debug, Clone)]
pub struct DriveConfig {
    pub scenario: Scenario,
    pub target: Target,
    pub secret_key: String,
    pub database_url: String,
    pub redis_url: Option<String>,
    pub server: ServerCommand,
    pub scheduler: Scheduler,
    /// Schedules to run (pct, random, from seed `seed`), or the most the
    /// exhaustive search may run.
    pub seeds: u64,
    pub seed: u64,
    pub quiet: Duration,
    pub request_timeout: Duration,
    /// Where the server's output goes.
    pub server_log: PathBuf,
    /// The prefix of every id of the drive (fresh per drive).
    pub run_id: String,
    /// Where the server keeps its tables, to judge the committed rows too
    /// (read-only, straight to the database, not through the proxy).
    pub rows: Option<Rows>,
    /// SQL run straight on the database before each schedule (and
    /// `FLUSHDB` on Redis), for servers whose state must be reset.
    pub reset_sql: Option<String>,
    /// Start the server anew for each schedule.
    pub restart: bool,
}

/// The server's tables, for the rows verdict (`cusim check
/// --database-url`'s).
#[derive(Debug, Clone)]
pub struct Rows {
    pub schema: String,
    /// How they are laid out; none: found from the tables the schema holds.
    pub layout: Option<Layout>,
}

/// The faults that can happen on the wire (see [`run::wire_fault`]).
pub const ON_THE_WIRE: [FaultKind; 3] = [FaultKind::DbError, FaultKind::CacheDown, FaultKind::LostResponse];

/// Why a drive could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("the server: {0}")]
    Server(String),
}

/// One broken invariant in one schedule.
#[derive(Debug, Clone, Serialize)]
pub struct DriveFinding {
    pub invariant: String,
    pub schedule: String,
    /// The seed whose schedule it was (none for a replay).
    pub seed: Option<u64>,
    /// The races of SPEC §8 it most likely shows (a suspicion, from the
    /// scenario's shape).
    pub races: Vec<Race>,
    pub message: String,
    /// Where it was seen: `answers` (the answers and the read-back) or
    /// `rows` (the committed rows, with `--schema`).
    pub seen_in: &'static str,
    /// The real statements the schedule ran, per request, in order.
    pub statements: Vec<Line>,
    /// What each request was answered.
    pub answers: Vec<Answer>,
}

/// A request of a schedule and its HTTP answer.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub request: usize,
    /// The call, as `NAME ARGS`.
    pub call: String,
    /// `ok`, `error` or `unknown`.
    pub class: String,
    pub answer: String,
}

/// The answers to the requests among `events`, in request order.
fn answers_of(events: &[crate::check::history::Event]) -> Vec<Answer> {
    use crate::check::page::{call_details, outcome_class, outcome_text};
    let mut answers: Vec<Answer> = events
        .iter()
        .filter_map(|e| match e.sender {
            Sender::Client(request) => Some(Answer {
                request,
                call: format!("{} {}", verdict::call_name(&e.call), call_details(&e.call)),
                class: outcome_class(&e.outcome).to_owned(),
                answer: outcome_text(&e.outcome),
            }),
            _ => None,
        })
        .collect();
    answers.sort_by_key(|a| a.request);
    answers
}

/// What a drive found.
#[derive(Debug, Clone, Serialize)]
pub struct DriveReport {
    pub scenario: String,
    /// The scenario's requests, numbered from 0 in schedules; the server's
    /// own work is the mover numbered this.
    pub requests: usize,
    pub schedules_run: usize,
    /// The first finding of each invariant.
    pub findings: Vec<DriveFinding>,
    /// With a replay: how many of the runs gave the first run's verdict,
    /// and how many let its steps through in the same order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reproduced: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_order: Option<usize>,
    /// Steps let through one by one, and lock waits parked and woken.
    pub steps: usize,
    /// Of the steps, those of the server's own work (no request's): each
    /// a decision of the mover numbered one past the last request.
    pub server_steps: usize,
    pub lock_waits: usize,
    /// For each request that was parked on a lock, the first schedule in
    /// which it was (its statement waited, and its wake was a decision).
    pub parked: Vec<Parked>,
    /// With a replay: the statements of its first run, and its answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<Vec<Line>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answers: Option<Vec<Answer>>,
    /// Schedules that could not be followed as given, or got stuck.
    pub diverged: Vec<String>,
    /// With the exhaustive scheduler: how far it got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<Search>,
    pub elapsed_ms: u64,
    pub quiet_ms: u64,
}

/// How far an exhaustive search got.
#[derive(Debug, Clone, Serialize)]
pub struct Search {
    pub max_preemptions: Option<usize>,
    /// Every order within the bound ran (the search ended before the
    /// drive's number of schedules). It is every order of what the server
    /// did in these runs: a schedule that did not follow its prefix (see
    /// `diverged`) may have left orders of another run's shape out.
    pub complete: bool,
    /// The bound left some order out.
    pub pruned: bool,
}

/// A request seen parked on a lock.
#[derive(Debug, Clone, Serialize)]
pub struct Parked {
    pub request: usize,
    pub schedule: String,
}

/// How far a drive has got, for progress lines.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub schedules: usize,
    pub findings: usize,
}

/// Runs the drive: starts the proxies and the server, runs the schedules,
/// stops the server.
pub async fn drive(
    config: &DriveConfig,
    mut progress: impl FnMut(Progress),
) -> Result<DriveReport, DriveError> {
    let calls = calls_of(&config.scenario).map_err(|e| DriveError::BadInput(format!("--scenario: {e}")))?;
    if calls.requests.is_empty() {
        return Err(DriveError::BadInput("--scenario: no requests".into()));
    }
    let given = match &config.scheduler {
        Scheduler::Replay { schedule, .. } | Scheduler::Sweep { base: Some(schedule), .. } => Some(schedule),
        _ => None,
    };
    for token in given.iter().flat_map(|s| s.0.iter()) {
        match token {
            Token::Tick { .. } => {
                return Err(DriveError::BadInput(format!(
                    "--replay: `{token}`: a real server's clock is its own (no clock moves on the wire)"
                )))
            }
            Token::Run { fault: Some(kind), .. } if !ON_THE_WIRE.contains(kind) => {
                return Err(DriveError::BadInput(format!(
                    "--replay: `{token}`: on the wire a fault is one of {}",
                    ON_THE_WIRE.map(FaultKind::as_str).join(", ")
                )))
            }
            _ => {}
        }
    }
    if let Scheduler::Sweep { kind, .. } = &config.scheduler {
        if !ON_THE_WIRE.contains(kind) {
            return Err(DriveError::BadInput(format!(
                "--fault-sweep {kind}: on the wire a fault is one of {}",
                ON_THE_WIRE.map(FaultKind::as_str).join(", ")
            )));
        }
    }
    if let Some(rows) = &config.rows {
        quoted_schema(&rows.schema).map_err(|e| DriveError::BadInput(format!("--schema: {e}")))?;
    }
    let database = ServerUrl::parse(&config.database_url, &["postgres", "postgresql"], 5432)
        .map_err(|e| DriveError::BadInput(format!("--database-url: {e}")))?;
    let redis = match &config.redis_url {
        Some(url) => Some(
            ServerUrl::parse(url, &["redis"], 6379)
                .map_err(|e| DriveError::BadInput(format!("--redis-url: {e}")))?,
        ),
        None => None,
    };
    let probe = sqlx::PgConnection::connect(&config.database_url).await.map_err(|e| {
        DriveError::Unreachable(format!("--database-url: the database cannot be reached: {e}"))
    })?;
    if let Some(redis) = &redis {
        tokio::net::TcpStream::connect(&redis.upstream).await.map_err(|e| {
            DriveError::Unreachable(format!("--redis-url: {} cannot be reached: {e}", redis.upstream))
        })?;
    }
    let (events_tx, events) = mpsc::unbounded_channel();
    let postgres = Proxy::start(Store::Postgres, &database.upstream, events_tx.clone())
        .await
        .map_err(|e| DriveError::Unreachable(format!("the Postgres proxy cannot listen: {e}")))?;
    let redis_proxy = match &redis {
        Some(redis) => Some(
            Proxy::start(Store::Redis, &redis.upstream, events_tx.clone())
                .await
                .map_err(|e| DriveError::Unreachable(format!("the Redis proxy cannot listen: {e}")))?,
        ),
        None => None,
    };
    drop(events_tx);
    let database_through = database.through(postgres.addr());
    let redis_through = match (&redis, &redis_proxy) {
        (Some(url), Some(proxy)) => Some(url.through(proxy.addr())),
        _ => None,
    };
    let start_server = || {
        Server::start(
            &config.server,
            &database_through,
            redis_through.as_deref(),
            &config.target,
            &config.server_log,
        )
    };
    let mut server = start_server().await.map_err(DriveError::Server)?;

    let catalog = config.scenario.catalog();
    let feature = match feature_named(&calls) {
        Some(feature) => feature,
        None => crate::check::feature_of(&catalog).map_err(|e| DriveError::BadInput(e.to_string()))?,
    };
    let mut client = Client::new(
        config.target.clone(),
        config.secret_key.clone(),
        config.request_timeout,
        Profile::default(),
    );
    let learned = preflight::learn(&mut client, &format!("{}p", config.run_id), &feature, &Given::default())
        .await
        .map_err(|e| DriveError::Server(format!("{e}{}", server.tail())))?;
    let mut driver = Driver {
        wire: Wire { postgres, redis: redis_proxy, events },
        probe,
        target: config.target.clone(),
        secret_key: config.secret_key.clone(),
        profile: learned.profile,
        request_timeout: config.request_timeout,
        quiet: config.quiet,
        start: Instant::now(),
    };
    let judge =
        Judge { config, calls: &calls, catalog, feature, profile: learned.profile, preflight: learned.lines };

    let started = Instant::now();
    let mut report = DriveReport {
        scenario: config.scenario.name.clone(),
        requests: calls.requests.len(),
        schedules_run: 0,
        findings: Vec::new(),
        reproduced: None,
        same_order: None,
        steps: 0,
        server_steps: 0,
        lock_waits: 0,
        parked: Vec::new(),
        trace: None,
        answers: None,
        diverged: Vec::new(),
        search: None,
        elapsed_ms: 0,
        quiet_ms: config.quiet.as_millis() as u64,
    };
    let mut tally = Tally::default();
    let plans: Vec<Plan> = match &config.scheduler {
        Scheduler::Replay { schedule, repeat } => vec![Plan::Given(schedule.clone()); (*repeat).max(1)],
        Scheduler::Sweep { base: Some(schedule), .. } => vec![Plan::Given(schedule.clone())],
        Scheduler::Sweep { base: None, .. } => vec![Plan::Seed(config.seed)],
        Scheduler::Exhaustive { .. } => vec![Plan::Search],
        _ => (0..config.seeds).map(|k| Plan::Seed(config.seed + k)).collect(),
    };
    let mut plans = std::collections::VecDeque::from(plans);
    // The exhaustive search, and its bound.
    let mut orders = match config.scheduler {
        Scheduler::Exhaustive { max_preemptions } => Some((Orders::new(max_preemptions), max_preemptions)),
        _ => None,
    };
    let mut expected_steps = 4 * calls.requests.len();
    let mut k = 0;
    while let Some(plan) = plans.pop_front() {
        if !server.running() {
            return Err(DriveError::Server(format!("the server command exited mid-drive{}", server.tail())));
        }
        let seed = match plan {
            Plan::Seed(seed) => Some(seed),
            _ => None,
        };
        let mut chooser: Box<dyn Chooser + '_> = match (&config.scheduler, &plan) {
            (_, Plan::Search) => Box::new(&mut orders.as_mut().expect("a search has its orders").0),
            (Scheduler::Random, Plan::Seed(seed)) => Box::new(random_chooser(*seed, 0)),
            (_, Plan::Seed(seed)) => {
                let depth = match config.scheduler {
                    Scheduler::Pct { depth } => depth,
                    _ => 3,
                };
                // One mover more than the requests: the server's own work.
                Box::new(pct_without_ticks(*seed, calls.requests.len() + 1, depth, expected_steps))
            }
            (_, Plan::Given(schedule)) => Box::new(crate::drive::stepper::Replay::new(schedule)),
        };
        if let Err(error) = reset(config, &mut driver.probe, k).await {
            server.shutdown().await;
            return Err(error);
        }
        if config.restart && k > 0 {
            server.shutdown().await;
            server = start_server()
                .await
                .map_err(|e| DriveError::Server(format!("started again for schedule {k}: {e}")))?;
        }
        let prefix = format!("{}s{k}", config.run_id);
        // `-g0`: the rows verdict reads a run's customers by `RUN-g`.
        let fresh = fresh(&calls, &format!("{prefix}-g0"));
        let judged = judge.one(&mut driver, &fresh, &prefix, seed, chooser.as_mut()).await;
        let (driven, findings) = match judged {
            Ok(judged) => judged,
            Err(error) => {
                server.shutdown().await;
                return Err(error);
            }
        };
        drop(chooser);
        if let (Plan::Search, Some((orders, max_preemptions))) = (&plan, orders.as_mut()) {
            let more = orders.advance();
            if more && (k as u64) + 1 < config.seeds {
                plans.push_back(Plan::Search);
            }
            report.search =
                Some(Search { max_preemptions: *max_preemptions, complete: !more, pruned: orders.pruned() });
        }
        expected_steps = expected_steps.max(driven.schedule.len());
        if let (Scheduler::Sweep { kind, .. }, 0) = (&config.scheduler, k) {
            // Every step the base schedule let through that the fault can
            // hit, each a schedule of its own: the decisions before it, the
            // faulted one, then the default order.
            for (i, step) in driven.moves.iter().enumerate() {
                if matches!(step, Move::Step(store) if wire_fault(*kind, *store).is_some()) {
                    let mut tokens = driven.schedule.0[..i].to_vec();
                    if let Token::Run { request, .. } = driven.schedule.0[i] {
                        tokens.push(Token::Run { request, fault: Some(*kind) });
                    }
                    plans.push_back(Plan::Given(Schedule(tokens)));
                }
            }
        }
        tally.add(
            &mut report,
            k,
            seed,
            &driven,
            findings,
            matches!(config.scheduler, Scheduler::Replay { .. }),
        );
        progress(Progress { schedules: report.schedules_run, findings: report.findings.len() });
        k += 1;
    }
    server.shutdown().await;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Before schedule `k`: runs the reset SQL and flushes Redis, as the
/// drive is asked to.
async fn reset(config: &DriveConfig, probe: &mut sqlx::PgConnection, k: usize) -> Result<(), DriveError> {
    if let Some(sql) = &config.reset_sql {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.as_str()))
            .execute(&mut *probe)
            .await
            .map_err(|e| DriveError::BadInput(format!("--reset-sql: before schedule {k}: {e}")))?;
        if let Some(url) = &config.redis_url {
            let flushed: Result<(), redis::RedisError> = async {
                let client = redis::Client::open(url.as_str())?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                redis::cmd("FLUSHDB").query_async(&mut conn).await
            }
            .await;
            flushed.map_err(|e| {
                DriveError::Unreachable(format!("--redis-url: FLUSHDB before schedule {k}: {e}"))
            })?;
        }
    }
    Ok(())
}

/// A schedule to run: a pct or random seed's, one given, or the
/// exhaustive search's next.
#[derive(Debug, Clone)]
enum Plan {
    Seed(u64),
    Given(Schedule),
    Search,
}

/// How the rows verdict begins its findings' messages.
const ROWS_PREFIX: &str = "committed rows: ";

/// What the report keeps across schedules.
#[derive(Default)]
struct Tally {
    seen: BTreeSet<String>,
    /// A replay's first run: its verdict and its order of steps.
    first: Option<(BTreeSet<String>, Vec<String>)>,
}

impl Tally {
    /// Adds run `k`'s schedule and findings to `report`.
    fn add(
        &mut self,
        report: &mut DriveReport,
        k: usize,
        seed: Option<u64>,
        driven: &Driven,
        findings: Vec<Finding>,
        replay: bool,
    ) {
        report.schedules_run += 1;
        report.steps += driven.lines.len();
        report.server_steps += driven.lines.iter().filter(|l| l.request.is_none()).count();
        report.lock_waits += driven.lock_waits;
        for &request in &driven.parked {
            if !report.parked.iter().any(|p| p.request == request) {
                report.parked.push(Parked { request, schedule: driven.schedule.to_string() });
            }
        }
        if let Some(why) = &driven.diverged {
            report.diverged.push(format!("run {k}: {why}"));
        }
        if driven.stuck {
            report
                .diverged
                .push(format!("run {k} ({}): stuck, nothing moved for the request timeout", driven.schedule));
        }
        let statements: Vec<Line> = driven.lines.clone();
        let answers = answers_of(&driven.events);
        if replay {
            let invariants: BTreeSet<String> = findings.iter().map(|f| f.invariant.clone()).collect();
            let order: Vec<String> = statements.iter().map(Line::shape).collect();
            match &self.first {
                None => {
                    report.trace = Some(statements.clone());
                    report.answers = Some(answers.clone());
                    report.reproduced = Some(1);
                    report.same_order = Some(1);
                    self.first = Some((invariants, order));
                }
                Some((verdict, steps)) => {
                    if *verdict == invariants {
                        *report.reproduced.get_or_insert(0) += 1;
                    }
                    if *steps == order {
                        *report.same_order.get_or_insert(0) += 1;
                    }
                }
            }
        }
        for finding in findings {
            let seen_in = if finding.message.starts_with(ROWS_PREFIX) { "rows" } else { "answers" };
            if self.seen.insert(format!("{} {seen_in}", finding.invariant)) {
                report.findings.push(DriveFinding {
                    invariant: finding.invariant,
                    schedule: driven.schedule.to_string(),
                    seed,
                    races: finding.suspects,
                    message: finding.message,
                    seen_in,
                    statements: statements.clone(),
                    answers: answers.clone(),
                });
            }
        }
    }
}

/// What judging a schedule needs.
struct Judge<'a> {
    config: &'a DriveConfig,
    calls: &'a Calls,
    catalog: Catalog,
    feature: String,
    profile: Profile,
    preflight: Vec<String>,
}

impl Judge<'_> {
    /// Runs one schedule of `fresh` calls and judges it.
    async fn one(
        &self,
        driver: &mut Driver,
        fresh: &Calls,
        prefix: &str,
        seed: Option<u64>,
        chooser: &mut dyn Chooser,
    ) -> Result<(Driven, Vec<Finding>), DriveError> {
        let started = Instant::now();
        driver.drain();
        let setup = driver.send_open(&fresh.setup, Sender::Setup, Some(0)).await;
        driver.drain();
        let driven = driver.drive(&fresh.requests, chooser).await;
        let group = Group {
            index: 0,
            block: block_of(self.calls),
            setup: fresh.setup.clone(),
            lanes: fresh.requests.iter().map(|c| vec![c.clone()]).collect(),
        };
        let mut events = Vec::new();
        crate::check::append(&mut events, setup);
        crate::check::append(&mut events, driven.events.clone());
        let targets = verdict::read_back_targets(std::slice::from_ref(&group));
        let readback = driver.send_open(&targets, Sender::Readback, None).await;
        driver.drain();
        crate::check::append(&mut events, readback);
        let history = History {
            format: FORMAT,
            target: self.config.target.url(),
            workload: self.config.scenario.name.clone(),
            seed: seed.unwrap_or(0),
            run_id: prefix.to_owned(),
            clients: fresh.requests.len(),
            feature: self.feature.clone(),
            catalog: self.catalog.clone(),
            profile: self.profile,
            preflight: self.preflight.clone(),
            groups: vec![group],
            events,
            elapsed_us: started.elapsed().as_micros() as u64,
            stopped_by: "schedule".into(),
        };
        let mut findings = verdict::judge(&history);
        if let Some(rows) = &self.config.rows {
            let source = RowsSource {
                database_url: self.config.database_url.clone(),
                schema: rows.schema.clone(),
                layout: rows.layout,
            };
            let verdict = check_rows(&source, &history).await.map_err(|e| match e {
                crate::check::CheckError::BadInput(why) => DriveError::BadInput(why),
                crate::check::CheckError::Unreachable(why) => DriveError::Unreachable(why),
                other => DriveError::Unreachable(other.to_string()),
            })?;
            findings.extend(verdict.findings);
        }
        Ok((driven, findings))
    }
}
