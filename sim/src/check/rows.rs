//! `--database-url`: read-only checks of the committed rows, for a server
//! whose Postgres schema is SPEC §1's (`cusim serve`'s, or one laid out
//! the same way). Only the run's own customers are read (their ids and
//! emails carry the run's id), inside a `READ ONLY` transaction: nothing
//! is ever written.
//!
//! | invariant | judged on the rows as |
//! |---|---|
//! | `unique_customer` | ≤1 row per (org, env, id); ≤1 id-less row per (org, env, lower(email)) |
//! | `defaults_present` | a customer owed every default holds exactly one product per default group, the selected one |
//! | `usage_conserved` | the usage row lies between the acknowledged sum and the sum that may have been applied (as the answers are judged) |

use std::collections::BTreeMap;

use sqlx::{Connection, PgConnection};

use super::history::{History, Sender};
use super::verdict::{group_of, usage_bounds, Finding};
use super::workload::Call;
use super::CheckError;
use crate::judge::invariants::owed_defaults;

/// Where the rows are.
#[derive(Debug, Clone)]
pub struct RowsSource {
    pub database_url: String,
    /// The Postgres schema the server keeps its tables in.
    pub schema: String,
}

/// A schema name as a quoted identifier, or why it is refused.
pub fn quoted_schema(schema: &str) -> Result<String, String> {
    let plain = !schema.is_empty()
        && schema.len() <= 63
        && schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !schema.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        Ok(format!("\"{schema}\""))
    } else {
        Err(format!("--schema {schema}: expected a Postgres name (letters, digits and _, at most 63)"))
    }
}

struct Customer {
    internal_id: String,
    org_id: String,
    env: String,
    id: Option<String>,
    email: Option<String>,
    default_scope: String,
}

/// What the rows showed: findings, and notes on what could not be judged.
#[derive(Debug, Clone, Default)]
pub struct RowsVerdict {
    pub findings: Vec<Finding>,
    pub notes: Vec<String>,
    /// The run's customers the query matched.
    pub customers: usize,
}

/// Reads the run's rows and judges them. A query that matches no customer
/// of a run that made some is bad input (the wrong database or schema):
/// judging no rows would say nothing, not that they are right.
pub async fn check_rows(source: &RowsSource, history: &History) -> Result<RowsVerdict, CheckError> {
    let schema = quoted_schema(&source.schema).map_err(CheckError::BadInput)?;
    let options = cusim_pg::schema::parse_url(&source.database_url)
        .map_err(|e| CheckError::BadInput(format!("--database-url: {e}")))?;
    let fail = |what: &str, e: sqlx::Error| CheckError::Unreachable(format!("--database-url: {what}: {e}"));
    let mut conn = PgConnection::connect_with(&options).await.map_err(|e| fail("cannot connect", e))?;
    let mut tx = conn.begin().await.map_err(|e| fail("cannot begin", e))?;
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(|e| fail("cannot go read-only", e))?;
    sqlx::query("SELECT set_config('search_path', $1, true)")
        .bind(&schema)
        .execute(&mut *tx)
        .await
        .map_err(|e| fail("cannot set the schema", e))?;
    let id_pattern = format!("{}-%", history.run_id);
    // internal_id, org_id, env, id, email, default_scope
    type CustomerRow = (String, String, String, Option<String>, Option<String>, String);
    let customers: Vec<CustomerRow> = sqlx::query_as(
        "SELECT internal_id, org_id, env, id, email, default_scope FROM customers \
         WHERE id LIKE $1 OR (id IS NULL AND position($2 in lower(email)) > 0) ORDER BY internal_id",
    )
    .bind(&id_pattern)
    .bind(history.run_id.to_lowercase())
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| fail(&format!("cannot read {}.customers", source.schema), e))?;
    let customers: Vec<Customer> = customers
        .into_iter()
        .map(|(internal_id, org_id, env, id, email, default_scope)| Customer {
            internal_id,
            org_id,
            env,
            id,
            email,
            default_scope,
        })
        .collect();
    let internal_ids: Vec<String> = customers.iter().map(|c| c.internal_id.clone()).collect();
    let products: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT internal_customer_id, product_id, \"group\" FROM customer_products \
         WHERE internal_customer_id = ANY($1) ORDER BY internal_customer_id, \"group\", product_id",
    )
    .bind(&internal_ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| fail(&format!("cannot read {}.customer_products", source.schema), e))?;
    let balances: Vec<(String, i64)> = sqlx::query_as(
        "SELECT internal_customer_id, usage FROM balances WHERE internal_customer_id = ANY($1) AND feature_id = $2",
    )
    .bind(&internal_ids)
    .bind(&history.feature)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| fail(&format!("cannot read {}.balances", source.schema), e))?;
    let _ = tx.rollback().await;
    let _ = conn.close().await;
    let made_customers = history.events.iter().any(|e| {
        e.sender != Sender::Readback && e.outcome.ok_body().is_some() && !matches!(e.call, Call::Get { .. })
    });
    if customers.is_empty() && made_customers {
        return Err(CheckError::BadInput(format!(
            "--database-url … --schema {}: the rows query matched no customer of run {} (ids {id_pattern}, or              id-less emails holding it), though the run made some: is this the target's database and schema?",
            source.schema, history.run_id
        )));
    }

    let mut held: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    for (customer, product, group) in &products {
        held.entry(customer.as_str()).or_default().push((group.clone(), product.clone()));
    }
    let usage: BTreeMap<&str, i64> = balances.iter().map(|(c, u)| (c.as_str(), *u)).collect();
    let (findings, notes) = judge_rows(history, &customers, &held, &usage);
    Ok(RowsVerdict { findings, notes, customers: customers.len() })
}

fn judge_rows(
    history: &History,
    customers: &[Customer],
    held: &BTreeMap<&str, Vec<(String, String)>>,
    usage: &BTreeMap<&str, i64>,
) -> (Vec<Finding>, Vec<String>) {
    let mut findings = Vec::new();
    let mut notes = Vec::new();
    let group_at = |id: Option<&str>, email: Option<&str>| {
        group_of(history, id, email).and_then(|g| history.groups.get(g))
    };
    // The calls of the run that named the customer (by id, or by email for id-less ones).
    let calls_of = |id: Option<&str>, email: Option<&str>| -> Vec<usize> {
        history
            .events
            .iter()
            .filter(|e| e.sender != Sender::Readback)
            .filter(|e| match (&e.call, id) {
                (call, Some(id)) => call.customer_id() == Some(id),
                (Call::Create { customer_id: None, email: Some(sent), .. }, None) => {
                    email.is_some_and(|email| sent.eq_ignore_ascii_case(email))
                }
                _ => false,
            })
            .map(|e| e.index)
            .collect()
    };
    // `race`: whether the finding may show a race of the catalog.
    let mut find = |invariant: &str, id: Option<&str>, email: Option<&str>, message: String, race: bool| {
        let group = group_at(id, email);
        findings.push(Finding {
            invariant: invariant.to_owned(),
            group: group.map(|g| g.index),
            block: group.map(|g| g.block),
            customer: id.map(str::to_owned).or_else(|| email.map(str::to_owned)),
            suspects: group.filter(|_| race).map(|g| g.block.suspects(invariant)).unwrap_or_default(),
            events: calls_of(id, email),
            message: format!("committed rows: {message}"),
        });
    };

    let mut by_id: BTreeMap<(&str, &str, &str), Vec<&str>> = BTreeMap::new();
    let mut by_email: BTreeMap<(&str, &str, String), (Vec<&str>, &str)> = BTreeMap::new();
    for c in customers {
        match (&c.id, &c.email) {
            (Some(id), _) => by_id.entry((&c.org_id, &c.env, id)).or_default().push(&c.internal_id),
            (None, Some(email)) => {
                let slot =
                    by_email.entry((&c.org_id, &c.env, email.to_lowercase())).or_insert((Vec::new(), email));
                slot.0.push(&c.internal_id);
            }
            (None, None) => {}
        }
    }
    for ((org, env, id), rows) in &by_id {
        if rows.len() > 1 {
            find(
                "unique_customer",
                Some(id),
                None,
                format!("{} rows with id {id} in {org}/{env}: {}", rows.len(), rows.join(", ")),
                true,
            );
        }
    }
    for ((org, env, email), (rows, sent)) in &by_email {
        if rows.len() > 1 {
            let message =
                format!("{} id-less rows with email {email} in {org}/{env}: {}", rows.len(), rows.join(", "));
            find("unique_customer", None, Some(sent), message, true);
        }
    }

    for c in customers {
        let only_group = match c.default_scope.as_str() {
            "all" => None,
            scope => match scope.strip_prefix("group:") {
                Some(group) => Some(group),
                None => continue, // Owed no defaults.
            },
        };
        let owed = owed_defaults(&history.catalog, false, only_group);
        let mut holds = held.get(c.internal_id.as_str()).cloned().unwrap_or_default();
        holds.sort();
        if holds != owed {
            let show = |list: &[(String, String)]| {
                if list.is_empty() {
                    "none".to_owned()
                } else {
                    list.iter().map(|(g, p)| format!("{p} ({g})")).collect::<Vec<_>>().join(", ")
                }
            };
            let who =
                c.id.clone().unwrap_or_else(|| format!("id-less {}", c.email.as_deref().unwrap_or("?")));
            let message = format!("{who} ({}) holds {}, owed {}", c.internal_id, show(&holds), show(&owed));
            find(
                "defaults_present",
                c.id.as_deref(),
                c.email.as_deref().filter(|_| c.id.is_none()),
                message,
                true,
            );
        }
    }

    let mut unrowed = Vec::new();
    for (customer, bounds) in usage_bounds(history) {
        let rows: Vec<&Customer> =
            customers.iter().filter(|c| c.id.as_deref() == Some(customer.as_str())).collect();
        // Two rows of one id are a unique_customer finding above; none, a note.
        let [row] = rows.as_slice() else {
            if rows.is_empty() {
                unrowed.push(customer);
            }
            continue;
        };
        let used = usage.get(row.internal_id.as_str()).copied().unwrap_or(0);
        let (used, acknowledged, may_have_applied) =
            (i128::from(used), i128::from(bounds.acknowledged), i128::from(bounds.may_have_applied));
        if used < acknowledged || used > may_have_applied {
            let what = if used < acknowledged {
                "below the acknowledged"
            } else {
                "above what may have been applied"
            };
            let message = format!(
                "{customer}: usage of {} is {used} in its row, {what} ({} acknowledged, {} may have been applied)",
                history.feature, bounds.acknowledged, bounds.may_have_applied
            );
            // Counted twice is no race of the catalog.
            find("usage_conserved", Some(&customer), None, message, used < acknowledged);
        }
    }
    if !unrowed.is_empty() {
        notes.push(format!(
            "committed rows: {} tracked customers have no row ({}): usage_conserved did not judge their rows",
            unrowed.len(),
            unrowed.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    (findings, notes)
}
