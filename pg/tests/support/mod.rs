//! What the Postgres tests share: the database URL, and customers and
//! answers in a form two backends can be compared in (internal ids
//! replaced by creation order).
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use cusim::flow::{client_retries_after, execute, execute_keyed, Response, Strategy};
use cusim::model::{ApiError, ErrorCode, FullCustomer};
use cusim_pg::cache::CacheStore;
use cusim_pg::{schema, services_with, PgConn, Shared};
use cusim_sim::drive::stepper::{execute_run, Prepared, Replay, RunOptions};
use cusim_sim::input::scenario::{Scenario, ScenarioRequest};
use cusim_sim::input::schedule::Schedule;
use cusim_sim::judge::settle::{self, SettleRead};
use cusim_sim::judge::{RequestOutcome, Settle};
use sqlx::{Connection, PgConnection};

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must name a Postgres server (`cargo xtask test` starts a throwaway one)")
}

/// The Redis server the cache tests use: `redis://:PASSWORD@HOST:PORT`.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .expect("REDIS_URL must name a Redis server (`cargo xtask test` starts a throwaway one)")
}

/// A customer with its internal id replaced by its creation order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    ordinal: usize,
    org: String,
    id: Option<String>,
    name: Option<String>,
    email: Option<String>,
    products: Vec<(String, String, String)>,
    has_stripe: bool,
    balances: Vec<(String, i64, i64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Customer(Seen, Option<bool>),
    Error(ErrorCode, String),
}

pub fn seen(full: &FullCustomer, ordinals: &BTreeMap<String, usize>) -> Seen {
    Seen {
        // A customer the final state does not hold (a cache entry of one
        // rolled back, say) has no ordinal.
        ordinal: ordinals.get(&full.customer.internal_id).copied().unwrap_or(usize::MAX),
        org: full.customer.org_id.clone(),
        id: full.customer.id.clone(),
        name: full.customer.name.clone(),
        email: full.customer.email.clone(),
        products: full
            .products
            .iter()
            .map(|p| (p.group.clone(), p.product_id.clone(), format!("{:?}", p.status)))
            .collect(),
        has_stripe: full.customer.processor.is_some(),
        balances: full.balances.iter().map(|(f, b)| (f.clone(), b.granted, b.usage)).collect(),
    }
}

pub fn answer(result: &Result<Response, ApiError>, ordinals: &BTreeMap<String, usize>) -> Answer {
    match result {
        Ok(response) => {
            let allowed = match response {
                Response::Check(check) => Some(check.allowed),
                _ => None,
            };
            Answer::Customer(seen(response.customer(), ordinals), allowed)
        }
        Err(error) => Answer::Error(error.code, error.message.clone()),
    }
}

pub fn ordinals(customers: &[FullCustomer]) -> BTreeMap<String, usize> {
    customers.iter().enumerate().map(|(i, c)| (c.customer.internal_id.clone(), i)).collect()
}

pub async fn connect(database: &schema::Database, shared: &Shared, request: usize) -> PgConn {
    PgConn::connect(&database.options, Rc::clone(shared), request).await.expect("connects")
}

/// The connections of one run's parts that go one after another (the
/// reset, the seed customers, the requests of a sequential run, the settle
/// reads): each lent and given back idle, so that a run opens one or two
/// connections rather than one per part. Opening one starts a server
/// process, which costs the server more than the statements of a run. A
/// connection given back with a transaction open is closed instead; an
/// idle one holds nothing (the flows take advisory locks for a transaction
/// only), and what else a session keeps (its schema, its prepared
/// statements) is the same for every part.
pub struct Lender<'d> {
    pub database: &'d schema::Database,
    idle: RefCell<Vec<PgConnection>>,
}

impl<'d> Lender<'d> {
    pub fn new(database: &'d schema::Database) -> Lender<'d> {
        Lender { database, idle: RefCell::new(Vec::new()) }
    }

    /// An idle connection, or a new one.
    async fn take(&self) -> PgConnection {
        let idle = self.idle.borrow_mut().pop();
        match idle {
            Some(conn) => conn,
            None => PgConnection::connect_with(&self.database.options).await.expect("connects"),
        }
    }

    /// A connection for request number `request`.
    pub async fn lend(&self, shared: &Shared, request: usize) -> PgConn {
        PgConn::over(self.take().await, Rc::clone(shared), request)
    }

    pub fn give_back(&self, conn: PgConn) {
        self.idle.borrow_mut().extend(conn.into_connection());
    }

    /// Empties the schema and loads `catalog` (`schema::reset`).
    pub async fn reset(&self, catalog: &cusim::model::Catalog) {
        let mut conn = self.take().await;
        schema::reset_on(&mut conn, catalog).await.expect("the schema is emptied");
        self.idle.borrow_mut().push(conn);
    }
}

/// Creates the scenario's seed customers through `safe`, one after another
/// (as requests `n`, `n + 1`, … after the scenario's `n` requests).
pub async fn seed_customers(lender: &Lender<'_>, shared: &Shared, scenario: &Scenario) {
    let n = scenario.requests.len();
    for (i, customer) in scenario.customers.iter().enumerate() {
        let conn = lender.lend(shared, n + i).await;
        execute(&conn, Strategy::Safe, &customer.as_request()).await.expect("seed customers are created");
        lender.give_back(conn);
    }
}

/// The settle reads after a run, one at a time, and the committed
/// customers after them.
pub async fn settle_reads(
    lender: &Lender<'_>,
    shared: &Shared,
    scenario: &Scenario,
    strategy: Strategy,
) -> (Vec<Settle>, Vec<FullCustomer>) {
    // Settle faults are placed by the stepper's drivers; a free round has none.
    assert!(
        scenario.settle_faults.is_empty(),
        "{}: free-running rounds place no settle faults",
        scenario.name
    );
    let reader = lender.lend(shared, 10_000).await;
    let rows: Vec<_> = schema::committed(&reader).await.unwrap().into_iter().map(|c| c.customer).collect();
    let mut settles = Vec::new();
    for (k, SettleRead { scope, customer, request }) in settle::plan(scenario, &rows).into_iter().enumerate()
    {
        let conn = lender.lend(shared, 20_000 + k).await;
        let result = execute(&conn, strategy, &request).await;
        lender.give_back(conn);
        settles.push(Settle { scope, customer, result });
    }
    let customers = schema::committed(&reader).await.unwrap();
    lender.give_back(reader);
    (settles, customers)
}

/// An answer, and the answers of the attempts before it.
pub type Sent = (Result<Response, ApiError>, Vec<Result<Response, ApiError>>);

/// Sends `request` as its client does: with its idempotency key, and again
/// while it has retries left and the answer is retryable.
pub async fn send(conn: &PgConn, strategy: Strategy, request: &ScenarioRequest) -> Sent {
    let mut earlier = Vec::new();
    loop {
        let result =
            execute_keyed(conn, strategy, &request.request, request.idempotency_key.as_deref()).await;
        if !(client_retries_after(Some(&result)) && request.has_retry_left(earlier.len())) {
            return (result, earlier);
        }
        earlier.push(result);
    }
}

/// Responses, settle reads and final state, comparable across backends.
pub type Run = (Vec<Answer>, Vec<Answer>, Vec<Seen>);

/// The scenario on the in-memory model, one request at a time (the
/// stepper's default schedule), with settle reads.
pub fn sequential_on_mem(scenario: &Scenario, strategy: Strategy) -> Run {
    let prepared = Prepared::new(scenario, strategy).expect("seed customers are valid");
    let run = execute_run(&prepared, &mut Replay::new(&Schedule::default()), RunOptions::default()).unwrap();
    let observation = &run.observation;
    let state = &observation.state;
    let ordinals = ordinals(&state.customers);
    let answers = observation
        .outcomes
        .iter()
        .map(|o| match o {
            RequestOutcome::Responded(result) => answer(result, &ordinals),
            other => panic!("no faults, yet {other:?}"),
        })
        .collect();
    let settles = observation.settles.iter().map(|s| answer(&s.result, &ordinals)).collect();
    (answers, settles, state.customers.iter().map(|c| seen(c, &ordinals)).collect())
}

/// The same on Postgres, from an emptied schema, with the in-memory cache.
pub async fn sequential_on_postgres(
    database: &schema::Database,
    scenario: &Scenario,
    strategy: Strategy,
) -> Run {
    sequential_on_postgres_with(database, scenario, strategy, CacheStore::default()).await
}

/// The same on Postgres, from an emptied schema, with the cache `cache`
/// (a Redis cache's namespace is emptied first).
pub async fn sequential_on_postgres_with(
    database: &schema::Database,
    scenario: &Scenario,
    strategy: Strategy,
    cache: CacheStore,
) -> Run {
    let lender = Lender::new(database);
    lender.reset(&scenario.catalog()).await;
    if let Some(redis) = cache.redis() {
        redis.clear().await.expect("the namespace is emptied");
    }
    let shared = services_with(0, strategy.constraints(), cache);
    seed_customers(&lender, &shared, scenario).await;
    let mut results = Vec::new();
    for (i, request) in scenario.requests.iter().enumerate() {
        let conn = lender.lend(&shared, i).await;
        conn.set_skew(scenario.skew_ms(i));
        results.push(send(&conn, strategy, request).await.0);
        lender.give_back(conn);
    }
    let (settles, customers) = settle_reads(&lender, &shared, scenario, strategy).await;
    if let Some(failure) = shared.borrow_mut().cache_failure.take() {
        panic!("{}: the run cannot be judged: {failure}", scenario.name);
    }
    let ordinals = ordinals(&customers);
    (
        results.iter().map(|r| answer(r, &ordinals)).collect(),
        settles.iter().map(|s| answer(&s.result, &ordinals)).collect(),
        customers.iter().map(|c| seen(c, &ordinals)).collect(),
    )
}
