//! Throwaway schemas: each test (or replay) gets a schema of its own with
//! the strategy's migrations applied and the scenario's catalog loaded, so
//! tests can run side by side on one server.

use std::str::FromStr;

use cusim::flow::Strategy;
use cusim::model::{Catalog, FullCustomer, ProductKind};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};

use crate::{customer_of, PgConn};

/// Why a database could not be set up: each says what to check.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("database URL {url:?} is not valid: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot connect to the database at {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("cannot prepare schema {schema:?}: {reason}")]
    Schema { schema: String, reason: String },
}

/// A schema made for one run, and how to connect to it.
#[derive(Debug, Clone)]
pub struct Database {
    pub schema: String,
    pub options: PgConnectOptions,
}

fn kind_text(kind: ProductKind) -> &'static str {
    match kind {
        ProductKind::Free => "free",
        ProductKind::Paid => "paid",
        ProductKind::Trial => "trial",
    }
}

impl Database {
    /// Schema `schema` on the server at `url`, as [`create`] would connect
    /// to it (to drop one a run kept, say), without connecting.
    pub fn named(url: &str, schema: &str) -> Result<Database, SetupError> {
        let options =
            parse_url(url)?.options([("search_path", schema)]).application_name(&application_name(schema));
        Ok(Database { schema: schema.to_owned(), options })
    }
}

/// Connect options for `url`, without connecting.
pub fn parse_url(url: &str) -> Result<PgConnectOptions, SetupError> {
    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        return Err(SetupError::BadUrl {
            url: redact(url),
            reason: "expected a URL like postgres://user:password@host:5432/database".into(),
        });
    }
    PgConnectOptions::from_str(url)
        .map_err(|e| SetupError::BadUrl { url: redact(url), reason: e.to_string() })
        .map(|o| o.disable_statement_logging())
}

/// The URL without its password, for messages: the one after `user:` and
/// any `password=` parameter (a query string's, or a key-value string's).
pub fn redact(url: &str) -> String {
    let mut text = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    };
    let mut from = 0;
    while let Some(found) = text[from..].to_ascii_lowercase().find("password=") {
        let start = from + found + "password=".len();
        let end = text[start..].find(['&', ' ', '\t', '\n']).map_or(text.len(), |e| start + e);
        text.replace_range(start..end, "***");
        from = start + 3;
    }
    text
}

/// What connections to schema `schema` call themselves in `pg_stat_activity`.
fn application_name(schema: &str) -> String {
    format!("cusim:{schema}")
}

/// Creates (or re-creates) schema `schema` for `strategy`, with `catalog`.
pub async fn create(
    url: &str,
    schema: &str,
    strategy: Strategy,
    catalog: &Catalog,
) -> Result<Database, SetupError> {
    prepare(url, schema, strategy, catalog, Start::Fresh).await
}

/// Schema `schema` for `strategy` with `catalog` and no customers, as
/// [`create`] makes it; but a schema an earlier run left for the same
/// strategy, with every migration applied, is emptied (`DELETE`) rather
/// than dropped and made again, which costs far less. Its sessions (a run
/// that stalled) are ended first.
pub async fn fresh(
    url: &str,
    schema: &str,
    strategy: Strategy,
    catalog: &Catalog,
) -> Result<Database, SetupError> {
    let database = Database::named(url, schema)?;
    if let Ok(mut conn) = PgConnection::connect_with(&database.options).await {
        let emptied = empty_if_made_for(&mut conn, strategy, catalog).await;
        let _ = conn.close().await;
        if emptied {
            return Ok(database);
        }
    }
    create(url, schema, strategy, catalog).await
}

/// Empties the schema `conn` is on (its search path, its application
/// name: a [`Database`]'s connection) and loads `catalog`, if the schema
/// was made for `strategy` with every migration applied; ends every other
/// session on the schema that is not idle first (a run that stalled).
/// Whether it did: if not, make the schema ([`create`]).
pub async fn empty_if_made_for(conn: &mut PgConnection, strategy: Strategy, catalog: &Catalog) -> bool {
    let expected: usize = migrators(strategy).iter().map(|m| m.migrations.len()).sum();
    let made_for: Option<String> = sqlx::query_scalar("SELECT strategy FROM cusim_strategy")
        .fetch_optional(&mut *conn)
        .await
        .ok()
        .flatten();
    let applied: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut *conn)
        .await
        .ok();
    if made_for.as_deref() != Some(strategy.as_str()) || applied != Some(expected as i64) {
        return false;
    }
    reset_on(conn, catalog).await.is_ok()
}

/// Brings schema `schema` up to date for `strategy`, keeping its
/// customers, and loads `catalog` in place of the one it had: what a
/// server does when it starts (`cusim serve`). A schema made for another
/// strategy is refused (their unique indexes differ).
pub async fn migrate(
    url: &str,
    schema: &str,
    strategy: Strategy,
    catalog: &Catalog,
) -> Result<Database, SetupError> {
    prepare(url, schema, strategy, catalog, Start::Keep).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Drop whatever is there: a run's own schema.
    Fresh,
    /// Keep the rows: a server's schema.
    Keep,
}

async fn prepare(
    url: &str,
    schema: &str,
    strategy: Strategy,
    catalog: &Catalog,
    start: Start,
) -> Result<Database, SetupError> {
    let options = parse_url(url)?;
    let target = format!("{}:{}", options.get_host(), options.get_port());
    let connect_error =
        |e: sqlx::Error| SetupError::Connect { target: target.clone(), reason: e.to_string() };
    let schema_error =
        |e: &dyn std::fmt::Display| SetupError::Schema { schema: schema.to_owned(), reason: e.to_string() };
    if schema.is_empty() || !schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(schema_error(&"a schema name is lowercase letters, digits and underscores"));
    }
    let mut admin = PgConnection::connect_with(&options).await.map_err(connect_error)?;
    let make = match start {
        Start::Fresh => format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"),
        Start::Keep => format!("CREATE SCHEMA IF NOT EXISTS {schema};"),
    };
    sqlx::raw_sql(AssertSqlSafe(make)).execute(&mut admin).await.map_err(|e| schema_error(&e))?;
    admin.close().await.map_err(connect_error)?;

    let options = options.options([("search_path", schema)]).application_name(&application_name(schema));
    let mut conn = PgConnection::connect_with(&options).await.map_err(connect_error)?;
    // Which strategy the schema was made for.
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS cusim_strategy (strategy text NOT NULL)")
        .execute(&mut conn)
        .await
        .map_err(|e| schema_error(&e))?;
    let made_for: Option<String> = sqlx::query_scalar("SELECT strategy FROM cusim_strategy")
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| schema_error(&e))?;
    match made_for {
        Some(made_for) if made_for != strategy.as_str() => {
            return Err(schema_error(&format!(
                "it was made for strategy {made_for}, not {strategy}: name another schema"
            )));
        }
        Some(_) => {}
        None => {
            sqlx::query("INSERT INTO cusim_strategy (strategy) VALUES ($1)")
                .bind(strategy.as_str())
                .execute(&mut conn)
                .await
                .map_err(|e| schema_error(&e))?;
        }
    }
    for mut migrator in migrators(strategy) {
        migrator.set_locking(false);
        migrator.set_ignore_missing(true);
        migrator.run(&mut conn).await.map_err(|e| schema_error(&e))?;
    }
    if start == Start::Keep {
        sqlx::raw_sql("TRUNCATE products, catalog").execute(&mut conn).await.map_err(|e| schema_error(&e))?;
    }
    load_catalog(&mut conn, catalog).await.map_err(|e| schema_error(&e))?;
    if start == Start::Fresh {
        // Autovacuum may truncate a table (an exclusive lock, briefly)
        // after rolled-back inserts: a wait nobody asked for. A run's
        // tables are small and short-lived; they need no vacuuming.
        for table in ["customers", "customer_products", "balances", "products", "catalog"] {
            let quiet = format!("ALTER TABLE {table} SET (autovacuum_enabled = false)");
            sqlx::raw_sql(AssertSqlSafe(quiet)).execute(&mut conn).await.map_err(|e| schema_error(&e))?;
        }
    }
    conn.close().await.map_err(connect_error)?;
    Ok(Database { schema: schema.to_owned(), options })
}

async fn load_catalog(conn: &mut PgConnection, catalog: &Catalog) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO catalog (force_paid_default) VALUES ($1)")
        .bind(catalog.force_paid_default)
        .execute(&mut *conn)
        .await?;
    for (position, product) in catalog.products.iter().enumerate() {
        sqlx::query("INSERT INTO products (id, \"group\", is_default, kind, features, position) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&product.id)
            .bind(&product.group)
            .bind(product.is_default)
            .bind(kind_text(product.kind))
            .bind(serde_json::to_value(&product.features).expect("features serialize"))
            .bind(position as i32)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Empties every table of the schema and loads `catalog`: a fresh start
/// without re-running the migrations. Every other session on the schema
/// that is not idle is ended first.
pub async fn reset(database: &Database, catalog: &Catalog) -> Result<(), sqlx::Error> {
    let mut conn = PgConnection::connect_with(&database.options).await?;
    reset_on(&mut conn, catalog).await?;
    conn.close().await
}

/// [`reset`] on a connection already open on the schema: empties every
/// table (and starts the row sequences again) and loads `catalog`. By
/// `DELETE`, not `TRUNCATE`: the tables hold a few rows,
/// and `TRUNCATE` makes every table's and index's files again and waits
/// for every lock on them (21 ms a reset in the server's statistics, over
/// the differential test's 1,797 resets). A statement that could still
/// commit a row after the `DELETE` is ended first (`end_other_sessions`).
/// No query reads rows in their physical order: each orders by its key or
/// by `seq`, which starts again at 1 as before.
pub async fn reset_on(conn: &mut PgConnection, catalog: &Catalog) -> Result<(), sqlx::Error> {
    end_other_sessions(conn).await?;
    sqlx::raw_sql(
        "DELETE FROM customer_products; DELETE FROM balances; DELETE FROM customers; \
         DELETE FROM products; DELETE FROM catalog; \
         SELECT setval(pg_get_serial_sequence('customers', 'seq'), 1, false), \
                setval(pg_get_serial_sequence('customer_products', 'seq'), 1, false);",
    )
    .execute(&mut *conn)
    .await?;
    load_catalog(conn, catalog).await
}

/// Ends every other session on the schema `conn` is on (by its
/// application name) that is not idle, and waits until they are gone: a
/// connection left inside a transaction or a statement (a run that
/// stalled, a statement a replay held and let go) would hold its locks,
/// and could still commit after the schema is emptied. An idle session
/// holds nothing (the flows take advisory locks for a transaction only):
/// those are the connections a replay keeps for its next run.
async fn end_other_sessions(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = current_setting('application_name') AND pid <> pg_backend_pid() \
             AND state IS DISTINCT FROM 'idle'",
        )
        .fetch_all(&mut *conn)
        .await?;
        if ended.is_empty() || std::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// The migrations of `strategy`'s schema: the base, then its own.
fn migrators(strategy: Strategy) -> Vec<sqlx::migrate::Migrator> {
    let own = match strategy {
        Strategy::Legacy => None,
        Strategy::Transactional => Some(sqlx::migrate!("../migrations/transactional")),
        Strategy::Safe => Some(sqlx::migrate!("../migrations/safe")),
    };
    std::iter::once(sqlx::migrate!("../migrations/base")).chain(own).collect()
}

/// Drops the schema (best effort).
pub async fn drop(database: &Database) {
    if let Ok(mut conn) = PgConnection::connect_with(&database.options).await {
        let _ = end_other_sessions(&mut conn).await;
        let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {} CASCADE", database.schema)))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
    }
}

/// Every committed customer, in the canonical order of a run's state (by
/// internal id, bytewise), as full customers.
pub async fn committed(conn: &PgConn) -> Result<Vec<FullCustomer>, sqlx::Error> {
    let rows = {
        let mut inner = conn.raw().await;
        let sql = format!(
            "SELECT {} FROM customers ORDER BY internal_id COLLATE \"C\"",
            crate::rows::CUSTOMER_COLUMNS
        );
        sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *inner).await?
    };
    let mut out = Vec::new();
    for row in &rows {
        let customer = customer_of(row)?;
        let mut inner = conn.raw().await;
        out.push(conn.full(&mut inner, customer).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod redact_tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_a_message() {
        assert_eq!(redact("postgres://ann:hunter2@db:5432/x"), "postgres://ann:***@db:5432/x");
        assert_eq!(
            redact("postgres://db/x?user=ann&password=hunter2&ssl=1"),
            "postgres://db/x?user=ann&password=***&ssl=1"
        );
        assert_eq!(
            redact("host=db port=1 Password=hunter2 user=ann"),
            "host=db port=1 Password=*** user=ann"
        );
        assert_eq!(redact("postgres://db/x"), "postgres://db/x");
    }
}
