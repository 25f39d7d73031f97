//! `cusim serve`: the reference implementation as an HTTP server.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use cusim::flow::Strategy;
use cusim::model::{FailedKey, Generation, Route};
use cusim_serve::{Config, Keys, Pacing, PgSettings};
use cusim_sim::input::scenario::Scenario;

use crate::Usage;

/// The most a request may be paced before each operation.
const MAX_PACE_MS: u64 = 10_000;

/// What `cusim serve` was asked for.
pub(crate) struct ServeArgs {
    pub strategy: Strategy,
    pub listen: String,
    pub catalog: Option<std::path::PathBuf>,
    pub keys: Vec<String>,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub schema: Option<String>,
    pub pool_size: u32,
    pub pace_ms: u64,
    /// `--jitter SEED` and `--jitter-max-ms`.
    pub jitter: Option<(u64, u64)>,
    pub timeout_ms: u64,
    pub max_connections: usize,
    pub header_timeout_ms: u64,
    pub generation: String,
}

/// Checks every argument, in order, before anything starts.
fn config(args: ServeArgs) -> Result<(Config, Option<String>), Usage> {
    let listen: SocketAddr = args.listen.parse().map_err(|_| {
        Usage(format!(
            "--listen {}: expected an address like 127.0.0.1:3100 (port 0: any free port)",
            args.listen
        ))
    })?;
    let catalog = match &args.catalog {
        None => crate::default_catalog(),
        Some(path) => Scenario::load_catalog(Path::new(path)).map_err(|e| Usage(format!("--catalog {e}")))?,
    };
    let mut keys = Keys::default();
    for key in &args.keys {
        keys.add(key).map_err(|e| Usage(e.to_string()))?;
    }
    let made_up = if keys.is_empty() {
        let key = cusim_serve::keys::made_up_key();
        keys.add(&format!("{key}=org_1")).map_err(|e| Usage(e.to_string()))?;
        Some(key)
    } else {
        None
    };
    if args.pace_ms > MAX_PACE_MS {
        return Err(Usage(format!("--pace {}: at most {MAX_PACE_MS} ms", args.pace_ms)));
    }
    let mut pacing = Pacing::fixed(Duration::from_millis(args.pace_ms));
    if let Some((seed, max_ms)) = args.jitter {
        if max_ms == 0 || max_ms > MAX_PACE_MS {
            return Err(Usage(format!("--jitter-max-ms {max_ms}: from 1 to {MAX_PACE_MS} ms")));
        }
        pacing = pacing.with_jitter(seed, max_ms);
    }
    if args.max_connections == 0 {
        return Err(Usage("--max-connections 0: a server needs a connection".into()));
    }
    if args.header_timeout_ms == 0 {
        return Err(Usage("--header-timeout-ms 0: a client needs some time to send its headers".into()));
    }
    if args.timeout_ms == 0 {
        return Err(Usage("--timeout-ms 0: a request needs some time".into()));
    }
    if args.pool_size == 0 {
        return Err(Usage("--pool-size 0: at least one connection".into()));
    }
    let postgres = match args.database_url {
        None => {
            if args.redis_url.is_some() || args.schema.is_some() {
                return Err(Usage("--redis-url and --schema need --database-url".into()));
            }
            None
        }
        Some(database_url) => {
            cusim_pg::schema::parse_url(&database_url).map_err(|e| Usage(format!("--database-url: {e}")))?;
            Some(PgSettings {
                database_url,
                redis_url: args.redis_url,
                schema: args.schema.unwrap_or_else(|| format!("cusim_{}", args.strategy)),
                pool_size: args.pool_size,
                pacing: Pacing::default(),
            })
        }
    };
    let generation = Generation::parse(&args.generation).ok_or_else(|| {
        Usage(format!("--generation {}: expected 2026-01, 2026-02 or current", args.generation))
    })?;
    let config = Config {
        generation,
        strategy: args.strategy,
        listen,
        catalog,
        keys,
        postgres,
        pacing,
        timeout: Duration::from_millis(args.timeout_ms),
        max_connections: args.max_connections,
        header_timeout: Duration::from_millis(args.header_timeout_ms),
    };
    Ok((config, made_up))
}

pub(crate) fn run_serve(args: ServeArgs) -> Result<ExitCode, Usage> {
    let (config, made_up) = config(args)?;
    cusim_serve::init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Usage(format!("cannot start the runtime: {e}")))?;
    let (strategy, generation) = (config.strategy, config.generation);
    let ready = move |addr: SocketAddr, app: &std::sync::Arc<cusim_serve::App>| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{addr}");
        let _ =
            writeln!(out, "strategy {strategy}, {}; Stripe is the in-process model", app.engine.describe());
        if generation != Generation::Current {
            let newest = generation.newest_version();
            let _ = writeln!(
                out,
                "generation {generation}: {} routes, newest x-api-version {newest}, check and track {} at {newest}, a failed request's key {}",
                Route::ALL.iter().filter(|r| generation.has_route(**r)).count(),
                if generation.auto_creates(newest) { "auto-create" } else { "do not auto-create" },
                match generation.failed_key() {
                    FailedKey::Kept => "is kept",
                    FailedKey::GivenBack => "is given back",
                }
            );
        }
        if let Some(key) = &made_up {
            let _ = writeln!(out, "sandbox key for org_1 (made up for this run): {key}");
            let _ = writeln!(
                out,
                "try: curl -s http://{addr}/v1/customers.get_or_create -H 'Authorization: Bearer {key}' \
                 -H 'Content-Type: application/json' -d '{{\"customer_id\": \"ann\", \"email\": \"ann@example.com\"}}'"
            );
        }
        let _ = out.flush();
    };
    match runtime.block_on(cusim_serve::serve(config, ready, cusim_serve::shutdown_signal())) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => Err(Usage(error.to_string())),
    }
}
