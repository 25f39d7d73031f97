//! `cusim`: explore and replay schedules of the create-customer flow.
//!
//! Exit codes: 0 no invariant was violated, 1 one was, 2 bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// A schedule allocates and frees many small rows: mimalloc makes the
/// stepper about a third cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(feature = "check")]
mod check;
#[cfg(feature = "drive")]
mod drive;
mod explain;
mod explore;
mod replay;
#[cfg(feature = "serve")]
mod serve;

use cusim::flow::Strategy;
use cusim_sim::corpus::builtin::{self, BUILTINS};
use cusim_sim::drive::stepper::Prepared;
use cusim_sim::explore::{ExploreConfig, Reduction, Shard};
use cusim_sim::input::scenario::Scenario;

#[derive(Parser)]
#[command(
    name = "cusim",
    version,
    about = "Deterministic simulation of the create-customer flow",
    after_help = "Examples:\n  cusim explore --all\n  cusim explore --scenario r1-same-id-create --strategy legacy --shrink\n  cusim replay --scenario r1-same-id-create --strategy legacy --schedule 1.1 --html r1.html\n  cusim explain no_internal_error\n\nExit codes: 0 no invariant violated, 1 a violation (or, on Postgres, a disagreement), 2 bad input."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum StrategyArg {
    Legacy,
    Transactional,
    Safe,
}

impl From<StrategyArg> for Strategy {
    fn from(arg: StrategyArg) -> Strategy {
        match arg {
            StrategyArg::Legacy => Strategy::Legacy,
            StrategyArg::Transactional => Strategy::Transactional,
            StrategyArg::Safe => Strategy::Safe,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum SchedulerArg {
    Random,
    Pct,
    Exhaustive,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ReductionArg {
    None,
    SleepSets,
    SourceSets,
    WakeupTrees,
    States,
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    Shard::parse(text)
}

#[derive(Subcommand)]
enum Command {
    /// Run many schedules of a scenario and report every invariant violated,
    /// each with the shortest schedule found for it.
    #[command(
        after_help = "Examples:\n  cusim explore --scenario fixtures/scenarios/r1-same-id-create.json --strategy legacy\n  cusim explore --scenario r2-stale-cache --strategy safe --scheduler exhaustive --max-preemptions 3\n  cusim explore --all\n\nExit codes: 0 no invariant violated (--all: safe held in every schedule run and every race of the catalog was found), 1 otherwise, 2 bad input."
    )]
    Explore {
        /// A scenario file, or the name of a built-in scenario.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        scenario: Option<String>,
        #[arg(long, value_enum, required_unless_present = "all", conflicts_with = "all")]
        strategy: Option<StrategyArg>,
        /// Every built-in scenario under every strategy, with a summary table.
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value = "pct")]
        scheduler: SchedulerArg,
        /// Schedules to run (exhaustive: the most to run).
        #[arg(long)]
        seeds: Option<u64>,
        /// The first seed (random, pct) [default: 0].
        #[arg(long)]
        seed: Option<u64>,
        /// Exhaustive: the most preemptions a schedule may have.
        #[arg(long)]
        max_preemptions: Option<usize>,
        /// Exhaustive: skip schedules equivalent to one already run
        /// (source-sets: dynamic partial-order reduction with sleep sets;
        /// wakeup-trees: optimal dynamic partial-order reduction, a race
        /// asks for its whole reversing sequence, one thread, no --shard;
        /// sleep-sets: sleep sets alone; states: sleep sets, and a run
        /// that comes to a state met before stops there, one thread, no
        /// --shard; none: every order) [default: states; with --threads
        /// above 1, or --shard without --all, source-sets].
        #[arg(long, value_enum)]
        reduction: Option<ReductionArg>,
        /// pct: the bug depth to aim for [default: 3].
        #[arg(long)]
        depth: Option<usize>,
        /// Clock moves a schedule may contain (each by 1 ms, 1 s, 5 s,
        /// 24 h 1 s or 3 days 1 s).
        #[arg(long, default_value_t = 1)]
        max_ticks: usize,
        /// Run part I of N of the work (from 1): a range of the seeds
        /// (random, pct), or the subtrees below every N-th run's first
        /// operation met (exhaustive); with --all, every N-th scenario and
        /// strategy pair.
        /// The N parts together are exactly the whole run.
        #[arg(long, value_name = "I/N", value_parser = parse_shard)]
        shard: Option<Shard>,
        /// Exhaustive: threads to search on, each taking parts of the
        /// search's tree as they come (within a shard: the subtrees --shard
        /// divides). A search that runs whole reports the same with any
        /// number; a budget (--seeds) applies to each thread, and which
        /// runs a search it cuts made depends on their timing.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
        threads: u64,
        /// Print one JSON object (with --all: an array of them).
        #[arg(long)]
        json: bool,
        /// Shrink each violation to its smallest case (fewest requests,
        /// faults, preemptions) and print it.
        #[arg(long)]
        shrink: bool,
        /// With --shrink: save each shrunk case of legacy or transactional
        /// as a regression file in this folder.
        #[arg(long, requires = "shrink", value_name = "DIR")]
        save_regressions: Option<PathBuf>,
    },
    /// Run one schedule and show its trace and verdict.
    #[command(
        after_help = "Examples:\n  cusim replay --scenario fixtures/scenarios/r1-same-id-create.json --strategy legacy --schedule 0.1.0.1.1.1\n  cusim replay --scenario r1-same-id-create --strategy legacy --schedule 0.1.0.1.1.1 \\\n      --backend postgres --database-url postgres://postgres@127.0.0.1:5432/postgres\n  cusim replay --scenario r2-stale-cache --strategy legacy --schedule 0.0.0.1.1.1.1 --backend postgres \\\n      --database-url postgres://postgres@127.0.0.1:5432/postgres --redis-url redis://:secret@127.0.0.1:6379\n  cusim replay --scenario r1-same-id-create --strategy legacy --schedule 1.1 --html r1.html\n\nExit codes: 0 no invariant violated (and Postgres agrees), 1 a violation or a disagreement, 2 bad input, or a server that failed mid-run (the report up to then is printed first)."
    )]
    Replay {
        /// A scenario file, or the name of a built-in scenario.
        #[arg(long)]
        scenario: String,
        #[arg(long, value_enum)]
        strategy: StrategyArg,
        /// Decisions, e.g. `0.1.1.+5000.0!crash`; after them, the lowest runnable request moves.
        #[arg(long, allow_hyphen_values = true)]
        schedule: String,
        /// Where the database is: the model, or a real Postgres server
        /// followed in lockstep with it (every answer compared).
        #[arg(long, value_enum, default_value = "mem")]
        backend: BackendArg,
        /// The Postgres server for `--backend postgres` (default: $DATABASE_URL).
        /// The replay works in a schema of its own and drops it.
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
        /// With `--backend postgres`: the cache on this Redis server
        /// (`redis://[:PASSWORD@]HOST:PORT[/DB]`) instead of in memory,
        /// every cache answer compared too. The replay works in a key
        /// namespace of its own and deletes it.
        #[arg(long, value_name = "URL")]
        redis_url: Option<String>,
        #[arg(long)]
        json: bool,
        /// Also write the run as one self-contained HTML page to FILE: a
        /// sequence diagram with a lane per request, lock waits between
        /// lanes, and the violated invariants highlighted.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Serve the flows over HTTP, speaking the modelled server's API, so that
    /// its own client (autumn-js) drives them. Stripe is the in-process model
    /// in every mode (no network). With no URL, everything is in memory.
    #[cfg(feature = "serve")]
    #[command(
        after_help = "Examples:\n  cusim serve --strategy safe\n  cusim serve --strategy legacy --listen 127.0.0.1:0 --catalog fixtures/scenarios/r1-same-id-create.json \\\n      --key am_sk_test_local=org_1\n  cusim serve --strategy safe --database-url postgres://postgres@127.0.0.1:5432/postgres \\\n      --redis-url redis://127.0.0.1:6379\n\nThe first line on stdout is `listening on http://ADDR`; one log line per request goes to stderr.\nSIGINT or SIGTERM stops it after the requests in flight finish.\nExit codes: 0 stopped by a signal, 2 bad input or a server that could not start."
    )]
    Serve {
        #[arg(long, value_enum)]
        strategy: StrategyArg,
        /// The address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:3100")]
        listen: String,
        /// A scenario file (SPEC §7) whose `products` and `force_paid_default`
        /// are the catalog [default: one free default product "free" in group
        /// "main" with 1000 "words"].
        #[arg(long, value_name = "FILE")]
        catalog: Option<PathBuf>,
        /// A secret key and its org, e.g. `am_sk_test_abc=org_1` (repeatable;
        /// `am_sk_test_…` keys are sandbox, other `am_sk_…` keys live). Only
        /// its SHA-256 is kept. None: a sandbox key for org_1 is made up and printed.
        #[arg(long = "key", value_name = "KEY=ORG")]
        keys: Vec<String>,
        /// Run on this Postgres server (a connection pool), migrating the schema
        /// on start and keeping its customers across restarts.
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
        /// With --database-url: the cache on this Redis server instead of in memory.
        #[arg(long, value_name = "URL")]
        redis_url: Option<String>,
        /// With --database-url: the schema (and Redis key namespace) to serve
        /// from [default: cusim_<strategy>].
        #[arg(long)]
        schema: Option<String>,
        /// With --database-url: database connections at most.
        #[arg(long, default_value_t = 16)]
        pool_size: u32,
        /// Hold each request this many milliseconds before each operation it
        /// sends to its stores: widens every race window (demonstrations, tests).
        #[arg(long, value_name = "MS", default_value_t = 0)]
        pace: u64,
        /// Hold each request a random time (0 to --jitter-max-ms, drawn from
        /// this seed) before each operation it sends to its stores, as a
        /// chaos proxy would: widens race windows and varies who goes first.
        #[arg(long, value_name = "SEED")]
        jitter: Option<u64>,
        /// With --jitter: the longest random wait, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 5, requires = "jitter")]
        jitter_max_ms: u64,
        /// A request that takes longer is answered 503 `db_unavailable`.
        #[arg(long, value_name = "MS", default_value_t = 30_000)]
        timeout_ms: u64,
        /// The most connections open at once; past it, new ones wait to be
        /// accepted until one closes.
        #[arg(long, value_name = "N", default_value_t = 1024)]
        max_connections: usize,
        /// A connection that has not sent a request's headers this long
        /// after it opened (or after its last answer) is closed.
        #[arg(long, value_name = "MS", default_value_t = 10_000)]
        header_timeout_ms: u64,
        /// The generation of the API to serve (API.md, "Generations"): its
        /// routes, newest `x-api-version`, auto-create and idempotency keys.
        /// 2026-01: the first route family only, up to 2.0.0; 2026-02: both
        /// families but no customers.get, up to 2.1.0; both auto-create at
        /// every version and keep a failed request's key.
        #[arg(long, value_name = "G", default_value = "current", value_parser = ["2026-01", "2026-02", "current"])]
        generation: String,
    },
    /// Check a running server that speaks the API (API.md) from outside:
    /// concurrent clients send a workload drawn from a seed, every call and
    /// answer is kept as a history (JSON), every touched customer is read
    /// back, and the history is judged against the invariants as a client
    /// sees them. Only the target is contacted.
    #[cfg(feature = "check")]
    #[command(
        after_help = "Examples:\n  cusim check --target http://127.0.0.1:3100 --secret-key am_sk_test_local\n  cusim check --target http://127.0.0.1:3100 --secret-key am_sk_test_local --workload claim --clients 4 --ops 500 --seed 7\n  cusim check --judge cusim-check-chk0123456789.json   # judge a saved history again\n  cusim check --target http://127.0.0.1:3100 --secret-key am_sk_test_local --target-profile fixtures/profiles/2026-02.json\n\nBefore a run a preflight learns the target's route family, newest x-api-version, auto-create and\nwhat it does with a failed request's key (API.md, \"Generations\"), and prints them.\n\nWorkloads: mixed (every block), same-id, shared-email, claim, create-check, usage, or a file\n{\"name\": \"mine\", \"blocks\": {\"claim\": 2, \"usage\": 1}}.\nExit codes: 0 no invariant broken, 1 findings, 2 bad input or an unreachable target (with the reason)."
    )]
    Check {
        /// The server's origin, e.g. http://127.0.0.1:3100 (plain HTTP; nothing else is contacted).
        #[arg(long, required_unless_present = "judge")]
        target: Option<String>,
        /// The secret key to send (default: $AUTUMN_SECRET_KEY).
        #[arg(long)]
        secret_key: Option<String>,
        /// A built-in workload or a workload file.
        #[arg(long, default_value = "mixed")]
        workload: String,
        /// Clients released together in each group.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Start no group once this many calls were sent.
        #[arg(long, default_value_t = 2000)]
        ops: u64,
        /// Start no group once the run has lasted this many seconds.
        #[arg(long, value_name = "S", default_value_t = 60)]
        time_limit: u64,
        /// The workload's seed (the same seed sends the same calls, ids aside).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// A call unanswered this long has an unknown outcome (a track is
        /// then sent again once).
        #[arg(long, value_name = "MS", default_value_t = 5000)]
        request_timeout_ms: u64,
        /// How long the target may go on with a call its client gave up on
        /// (its own time limit; `cusim serve`'s `--timeout-ms`): after a
        /// call whose outcome is unknown, the read-back waits this long.
        #[arg(long, value_name = "MS", default_value_t = 30_000)]
        server_time_limit_ms: u64,
        /// The route family to send on, instead of the one the preflight
        /// finds: rpc (customers.get_or_create, balances.check, …) or v1
        /// (POST /v1/customers, /v1/check, /v1/track).
        #[arg(long, value_name = "FAMILY", value_parser = ["v1", "rpc"], conflicts_with = "target_profile")]
        routes: Option<String>,
        /// The x-api-version to send, instead of the newest the target accepts.
        #[arg(long, value_name = "V", conflicts_with = "target_profile")]
        api_version: Option<String>,
        /// A JSON file of the target's facts (routes, reads, api_version,
        /// auto_create_at_api_version, auto_create_version, failed_key),
        /// instead of learning them.
        #[arg(long, value_name = "FILE")]
        target_profile: Option<PathBuf>,
        /// A scenario file whose products are the target's catalog [default:
        /// `cusim serve`'s: one free default product "free" with 1000 "words"].
        #[arg(long, value_name = "FILE")]
        catalog: Option<PathBuf>,
        /// Where to keep the history [default: cusim-check-<run id>.json].
        #[arg(long, value_name = "FILE")]
        history: Option<PathBuf>,
        /// Judge this saved history instead of running.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["target", "history"])]
        judge: Option<PathBuf>,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Also write the run as one self-contained HTML page: a lane per
        /// client in each group, the findings' calls marked.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Also check the run's committed rows on this Postgres server
        /// (SPEC §1's tables; read-only, in a READ ONLY transaction).
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
        /// With --database-url: the schema of the server's tables
        /// (`cusim serve`'s: cusim_<strategy>).
        #[arg(long, default_value = "public", requires = "database_url")]
        schema: String,
        /// With --database-url: how the server's tables are laid out: cusim
        /// (SPEC §1's: customers, customer_products, balances) or autumn (the
        /// modelled server's own: customers, customer_products,
        /// customer_entitlements, entitlements, events) [default: the one
        /// whose tables the schema holds].
        #[arg(long, value_name = "LAYOUT", value_parser = ["cusim", "autumn"], requires = "database_url")]
        rows_schema: Option<String>,
        /// Take findings back to the model: for each (the first of each
        /// race suspected, or --finding N), write the scenario its group
        /// implies and search the model under --strategy for a schedule
        /// that answers as the server did; print its `cusim replay`.
        #[arg(long, requires = "strategy")]
        reproduce: bool,
        /// With --reproduce: the strategy to search the model under (the
        /// server's, when the target is `cusim serve`).
        #[arg(long, value_enum)]
        strategy: Option<StrategyArg>,
        /// With --reproduce: only finding N (as numbered in the report).
        #[arg(long, value_name = "N", requires = "reproduce")]
        finding: Option<usize>,
        /// With --reproduce: where to write the scenarios [default: .].
        #[arg(long, value_name = "DIR", requires = "reproduce")]
        scenarios: Option<PathBuf>,
    },
    /// Run a real server with its statements to Postgres and Redis let
    /// through one at a time, in an order a scheduler chooses: its races found
    /// by schedule, and replayed
    ///
    /// Starts proxies in front of Postgres (and Redis), starts the server
    /// command with its store URLs pointing at them, sends a scenario's
    /// requests over HTTP, and lets every statement and command through one
    /// at a time. Each schedule is judged like `cusim check` judges a
    /// history; a finding prints its schedule, the command that replays it,
    /// and the real statements it ran.
    #[cfg(feature = "drive")]
    #[command(
        after_help = "Examples:\n  cusim drive --scenario r1-same-id-create --target http://127.0.0.1:3111 --secret-key am_sk_test_local \\\n      --database-url postgres://postgres@127.0.0.1:5432/postgres --seeds 50 -- \\\n      cusim serve --strategy legacy --listen 127.0.0.1:3111 --key am_sk_test_local=org_1 \\\n      --catalog fixtures/scenarios/r1-same-id-create.json --database-url {database_url}\n  cusim drive … --replay 0.1.0.1.1 --repeat 10 -- …\n  cusim drive … --fault-sweep lost_response -- …\n\nThe server command gets the proxies' URLs in DATABASE_URL and REDIS_URL (see --database-env,\n--redis-env) and in place of {database_url} and {redis_url} in its arguments. It must serve\nthe scenario's catalog, on --target, for the secret key's org. It is stopped at the end\n(SIGTERM, then SIGKILL after 5 s), with everything it started.\n\nExit codes: 0 no invariant broken, 1 findings, 2 bad input, a store that cannot be reached,\nor a server that exits or never answers (with the reason)."
    )]
    Drive(drive::DriveArgs),
    /// What an invariant means, which races break it and which built-in
    /// scenario shows it; or, for a race (R1–R9), its interleaving and the
    /// invariants it breaks.
    #[command(
        after_help = "Examples:\n  cusim explain fresh_cache\n  cusim explain R2\n  cusim explain            # every invariant and race, one line each\n\nExit codes: 0 explained, 2 an unknown name."
    )]
    Explain {
        /// An invariant (`unique_customer`, `fresh-cache`, …) or a race (`R1` … `R9`).
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BackendArg {
    Mem,
    Postgres,
}

/// `text` as one word for a POSIX shell: as is when it is plainly safe,
/// else in single quotes.
pub(crate) fn shell_quote(text: &str) -> String {
    let plain =
        !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./+,:=@%".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// One free default product with one feature: the catalog `cusim serve`
/// serves, and `cusim check` expects, without `--catalog`.
#[cfg(any(feature = "serve", feature = "check"))]
pub(crate) fn default_catalog() -> cusim::model::Catalog {
    use cusim::model::{Catalog, Product, ProductKind};
    let product = Product {
        id: "free".into(),
        group: "main".into(),
        is_default: true,
        kind: ProductKind::Free,
        features: [("words".to_owned(), 1000)].into_iter().collect(),
    };
    Catalog::new(vec![product], false)
}

/// Bad input: reported with its reason, exit code 2.
pub(crate) struct Usage(pub(crate) String);

/// `--secret-key`, else `$AUTUMN_SECRET_KEY`, checked.
#[cfg(feature = "check")]
pub(crate) fn secret_key(given: Option<&str>) -> Result<String, Usage> {
    let key = match given {
        Some(key) => key.to_owned(),
        None => std::env::var("AUTUMN_SECRET_KEY")
            .map_err(|_| Usage("--secret-key: none given, and AUTUMN_SECRET_KEY is not set".into()))?,
    };
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Usage("--secret-key: a key is printable ASCII without spaces".into()));
    }
    Ok(key)
}

pub(crate) fn load_scenario(arg: &str) -> Result<(Scenario, String), Usage> {
    let path = PathBuf::from(arg);
    if !path.exists() {
        if let Some(builtin) = builtin::find(arg) {
            let scenario = builtin.scenario().map_err(|e| Usage(e.to_string()))?;
            return Ok((scenario, builtin.path()));
        }
    }
    let looks_like_a_name = !arg.contains(['/', '\\', '.']);
    if !path.exists() && looks_like_a_name {
        let names: Vec<&str> = BUILTINS.iter().map(|b| b.name()).collect();
        return Err(Usage(format!(
            "--scenario {arg}: no such file, and no built-in scenario of that name (built-ins: {})",
            names.join(", ")
        )));
    }
    let scenario = Scenario::load(Path::new(arg)).map_err(|e| Usage(e.to_string()))?;
    Ok((scenario, arg.to_owned()))
}

pub(crate) fn prepare(scenario: &Scenario, origin: &str, strategy: Strategy) -> Result<Prepared, Usage> {
    Prepared::new(scenario, strategy).map_err(|e| Usage(format!("{origin}: {e}")))
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, which turns a closed pipe (`cusim … | head`)
    // into a panic on the next print; a command-line tool should just end.
    #[cfg(unix)]
    // SAFETY: at the start of main, before any thread exists, setting a
    // signal's disposition to its default is sound.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Explore {
            scenario,
            strategy,
            all,
            scheduler,
            seeds,
            seed,
            max_preemptions,
            reduction,
            depth,
            max_ticks,
            shard,
            threads,
            json,
            shrink,
            save_regressions,
        } => {
            // One search divided: over threads, or a shard of its subtrees.
            let split = threads > 1 || (shard.is_some() && !all);
            explore::config(scheduler, seeds, seed, (max_preemptions, reduction), depth, (max_ticks, split))
                .and_then(|config| {
                    if config.reduction.runs_whole() && split {
                        let (name, why) = match config.reduction {
                            Reduction::States => ("states", "a part would keep states of its own"),
                            _ => ("wakeup-trees", "each option's subtree runs what the earlier ones planned"),
                        };
                        return Err(Usage(format!(
                            "--reduction {name} searches on one thread and whole: {why} (use --shard with \
                             --all to divide the pairs)"
                        )));
                    }
                    if all {
                        explore::run_all(
                            &config,
                            (shard, threads as usize),
                            json,
                            shrink,
                            save_regressions.as_deref(),
                        )
                    } else {
                        let config = ExploreConfig { shard, ..config };
                        let scenario = scenario.expect("clap requires --scenario without --all");
                        let strategy = strategy.expect("clap requires --strategy without --all");
                        explore::run_explore(
                            &scenario,
                            strategy.into(),
                            (&config, threads as usize),
                            json,
                            shrink,
                            save_regressions.as_deref(),
                        )
                    }
                })
        }
        Command::Replay { scenario, strategy, schedule, backend, database_url, redis_url, json, html } => {
            let output = replay::ReplayOutput { json, html };
            let servers = replay::Servers { database_url, redis_url };
            replay::run_replay(&scenario, strategy.into(), &schedule, backend, servers, &output)
        }
        Command::Explain { name, json } => explain::run_explain(name.as_deref(), json),
        #[cfg(feature = "check")]
        Command::Check {
            target,
            secret_key,
            workload,
            clients,
            ops,
            time_limit,
            seed,
            request_timeout_ms,
            server_time_limit_ms,
            routes,
            api_version,
            target_profile,
            catalog,
            history,
            judge,
            json,
            html,
            database_url,
            schema,
            rows_schema,
            reproduce,
            strategy,
            finding,
            scenarios,
        } => check::run_check(check::CheckArgs {
            target: target.unwrap_or_default(),
            secret_key,
            workload,
            clients,
            ops,
            time_limit_s: time_limit,
            seed,
            request_timeout_ms,
            server_time_limit_ms,
            routes,
            api_version,
            target_profile,
            catalog,
            history,
            judge,
            json,
            html,
            rows: database_url.map(|database_url| cusim_sim::check::rows::RowsSource {
                database_url,
                schema,
                layout: rows_schema.as_deref().and_then(cusim_sim::check::rows::Layout::parse),
            }),
            reproduce: reproduce.then(|| check::ReproduceArgs {
                strategy: strategy.map_or(Strategy::Legacy, Strategy::from),
                finding,
                scenarios: scenarios.unwrap_or_else(|| PathBuf::from(".")),
            }),
        }),
        #[cfg(feature = "drive")]
        Command::Drive(args) => drive::run_drive(args),
        #[cfg(feature = "serve")]
        Command::Serve {
            strategy,
            listen,
            catalog,
            keys,
            database_url,
            redis_url,
            schema,
            pool_size,
            pace,
            jitter,
            jitter_max_ms,
            timeout_ms,
            max_connections,
            header_timeout_ms,
            generation,
        } => serve::run_serve(serve::ServeArgs {
            strategy: strategy.into(),
            listen,
            catalog,
            keys,
            database_url,
            redis_url,
            schema,
            pool_size,
            pace_ms: pace,
            jitter: jitter.map(|seed| (seed, jitter_max_ms)),
            timeout_ms,
            max_connections,
            header_timeout_ms,
            generation,
        }),
    };
    match result {
        Ok(code) => code,
        Err(Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}
