//! `--database-url`: read-only checks of the committed rows, in one of two
//! layouts ([`Layout`]): SPEC §1's (`cusim serve`'s, or one laid out the
//! same way) or the modelled server's own (docs/API.md, "Generations":
//! `customers`, `customer_products`, `customer_entitlements`,
//! `entitlements`, `events`). Only the run's own customers are read (their
//! ids and emails carry the run's id), inside a `READ ONLY` transaction:
//! nothing is ever written.
//!
//! | invariant | judged on the rows as |
//! |---|---|
//! | `unique_customer` | ≤1 row per (org, env, id); ≤1 id-less row per (org, env, lower(email)) |
//! | `defaults_present` | a customer owed every default holds exactly one product per default group, the selected one (`autumn`: its `active`, `trialing` or `past_due` products) |
//! | `usage_conserved` | `cusim`: the usage row lies between the acknowledged sum and the sum that may have been applied (as the answers are judged); `autumn`: the usage the balance shows (the entitlements' allowance minus their balance) and the sum of the customer's `events` each lie within those bounds, and agree with each other |

use std::collections::BTreeMap;

use sqlx::{Connection, PgConnection};

use super::history::{History, Sender};
use super::verdict::{group_of, usage_bounds, Finding, UsageBounds};
use super::workload::Call;
use super::CheckError;
use crate::judge::invariants::owed_defaults;

/// Where the rows are.
#[derive(Debug, Clone)]
pub struct RowsSource {
    pub database_url: String,
    /// The Postgres schema the server keeps its tables in.
    pub schema: String,
    /// How its tables are laid out; none: found from the tables the
    /// schema holds.
    pub layout: Option<Layout>,
}

/// The layout of the server's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// SPEC §1's: `customers`, `customer_products` (with `group`), `balances`.
    Cusim,
    /// The modelled server's own: `customers`, `customer_products`,
    /// `customer_entitlements`, `entitlements`, `events`.
    Autumn,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Cusim => "cusim",
            Layout::Autumn => "autumn",
        }
    }

    pub fn parse(text: &str) -> Option<Layout> {
        match text {
            "cusim" => Some(Layout::Cusim),
            "autumn" => Some(Layout::Autumn),
            _ => None,
        }
    }

    /// The tables the layout reads.
    fn tables(self) -> &'static [&'static str] {
        match self {
            Layout::Cusim => &["customers", "customer_products", "balances"],
            Layout::Autumn => {
                &["customers", "customer_products", "customer_entitlements", "entitlements", "events"]
            }
        }
    }
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
    /// SPEC §1's `default_scope`; `all` in the autumn layout.
    default_scope: String,
}

/// A customer's usage of the feature as the autumn layout holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ledger {
    /// The allowance its entitlements of the feature grant.
    allowance: i64,
    /// Their balance.
    balance: i64,
    /// The sum of its tracked events of the feature.
    events: i64,
}

/// What the rows showed: findings, and notes on what could not be judged.
#[derive(Debug, Clone, Default)]
pub struct RowsVerdict {
    pub findings: Vec<Finding>,
    pub notes: Vec<String>,
    /// The run's customers the query matched.
    pub customers: usize,
}

/// Judges one customer's ledger (the autumn layout): the usage its balance
/// shows and the sum of its events each within `bounds`, and equal to each
/// other. A balance at or below 0 may have been capped there, so only the
/// events are held to the bounds then. The message, and whether usage was
/// lost (a race of the catalog may show it; counted twice none does).
fn judge_ledger(
    customer: &str,
    internal_id: &str,
    feature: &str,
    ledger: Ledger,
    bounds: &UsageBounds,
) -> Option<(String, bool)> {
    let Ledger { allowance, balance, events } = ledger;
    let by_balance = i128::from(allowance) - i128::from(balance);
    let (acknowledged, may_have_applied) =
        (i128::from(bounds.acknowledged), i128::from(bounds.may_have_applied));
    let capped = balance <= 0;
    let mut wrong = Vec::new();
    let mut lost = false;
    let events = i128::from(events);
    for (what, used) in [("its events sum to", events), ("its balance shows", by_balance)] {
        if capped && what == "its balance shows" {
            continue;
        }
        if used < acknowledged {
            wrong.push(format!("{what} {used} used, below the {acknowledged} acknowledged"));
            lost = true;
        } else if used > may_have_applied {
            wrong
                .push(format!("{what} {used} used, above the {may_have_applied} that may have been applied"));
        }
    }
    if !capped && by_balance != events {
        wrong.push(format!(
            "its balance ({balance} of {allowance} granted: {by_balance} used) disagrees with its events ledger ({events})"
        ));
        lost |= by_balance < events;
    }
    if wrong.is_empty() {
        return None;
    }
    Some((
        format!("{customer} ({internal_id}), {feature}: balance {balance} of {allowance}, events sum {events}: {}", wrong.join("; ")),
        lost,
    ))
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
    let present: Vec<(String,)> =
        sqlx::query_as("SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1")
            .bind(&source.schema)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| fail("cannot list the schema's tables", e))?;
    let present: Vec<String> = present.into_iter().map(|(t,)| t).collect();
    let holds = |layout: Layout| layout.tables().iter().all(|t| present.iter().any(|p| p == t));
    let layout = match source.layout {
        Some(layout) if holds(layout) => layout,
        Some(layout) => {
            let missing: Vec<&str> =
                layout.tables().iter().copied().filter(|t| !present.iter().any(|p| p == t)).collect();
            return Err(CheckError::BadInput(format!(
                "--rows-schema {}: schema {} has no table {}",
                layout.as_str(),
                source.schema,
                missing.join(", ")
            )));
        }
        None if holds(Layout::Autumn) => Layout::Autumn,
        None if holds(Layout::Cusim) => Layout::Cusim,
        None => {
            return Err(CheckError::BadInput(format!(
                "--schema {}: its tables ({}) are neither layout's (cusim: {}; autumn: {})",
                source.schema,
                if present.is_empty() { "none".to_owned() } else { present.join(", ") },
                Layout::Cusim.tables().join(", "),
                Layout::Autumn.tables().join(", ")
            )))
        }
    };
    // The groups' ids and emails carry `RUN-g` (the preflight's own
    // customers, `RUN-pre…`, belong to no group and are not judged).
    let id_pattern = format!("{}-g%", history.run_id);
    let run_lower = format!("{}-g", history.run_id.to_lowercase());
    // internal_id, org_id, env, id, email, default_scope
    type CustomerRow = (String, String, String, Option<String>, Option<String>, String);
    let query = match layout {
        Layout::Cusim => {
            "SELECT internal_id, org_id, env, id, email, default_scope FROM customers \
             WHERE id LIKE $1 OR (id IS NULL AND position($2 in lower(email)) > 0) ORDER BY internal_id"
        }
        Layout::Autumn => {
            "SELECT internal_id, org_id, env, id, email, 'all' FROM customers \
             WHERE id LIKE $1 OR (id IS NULL AND position($2 in lower(email)) > 0) ORDER BY internal_id"
        }
    };
    let customers: Vec<CustomerRow> = sqlx::query_as(query)
        .bind(&id_pattern)
        .bind(&run_lower)
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
    let products: Vec<(String, String, String)> = match layout {
        Layout::Cusim => {
            sqlx::query_as(
                "SELECT internal_customer_id, product_id, \"group\" FROM customer_products \
             WHERE internal_customer_id = ANY($1) ORDER BY internal_customer_id, \"group\", product_id",
            )
            .bind(&internal_ids)
            .fetch_all(&mut *tx)
            .await
        }
        Layout::Autumn => sqlx::query_as::<_, (String, String)>(
            "SELECT internal_customer_id, product_id FROM customer_products \
             WHERE internal_customer_id = ANY($1) AND status IN ('active', 'trialing', 'past_due') \
             ORDER BY internal_customer_id, product_id",
        )
        .bind(&internal_ids)
        .fetch_all(&mut *tx)
        .await
        .map(|rows| {
            // The product's group is the catalog's (the rows name none).
            rows.into_iter()
                .map(|(customer, product)| {
                    let group =
                        history.catalog.product(&product).map_or("?", |p| p.group.as_str()).to_owned();
                    (customer, product, group)
                })
                .collect()
        }),
    }
    .map_err(|e| fail(&format!("cannot read {}.customer_products", source.schema), e))?;
    let (usage, ledgers) = match layout {
        Layout::Cusim => {
            let balances: Vec<(String, i64)> = sqlx::query_as(
                "SELECT internal_customer_id, usage FROM balances WHERE internal_customer_id = ANY($1) AND feature_id = $2",
            )
            .bind(&internal_ids)
            .bind(&history.feature)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| fail(&format!("cannot read {}.balances", source.schema), e))?;
            (balances.into_iter().collect::<BTreeMap<String, i64>>(), BTreeMap::new())
        }
        Layout::Autumn => {
            // Per customer: the allowance and balance of its entitlements of
            // the feature, and the sum of its events of it (numeric columns,
            // read as whole numbers: the workload tracks whole values).
            let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
                "SELECT c.internal_id, \
                   COALESCE((SELECT SUM(e.allowance) FROM customer_entitlements ce \
                     JOIN entitlements e ON e.id = ce.entitlement_id \
                     WHERE ce.internal_customer_id = c.internal_id AND ce.feature_id = $2), 0)::bigint, \
                   COALESCE((SELECT SUM(ce.balance) FROM customer_entitlements ce \
                     WHERE ce.internal_customer_id = c.internal_id AND ce.feature_id = $2), 0)::bigint, \
                   COALESCE((SELECT SUM(ev.value) FROM events ev \
                     WHERE ev.internal_customer_id = c.internal_id AND ev.event_name = $2), 0)::bigint \
                 FROM customers c WHERE c.internal_id = ANY($1) ORDER BY c.internal_id",
            )
            .bind(&internal_ids)
            .bind(&history.feature)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| fail(&format!("cannot read {}'s entitlements and events", source.schema), e))?;
            let ledgers: BTreeMap<String, Ledger> = rows
                .into_iter()
                .map(|(customer, allowance, balance, events)| {
                    (customer, Ledger { allowance, balance, events })
                })
                .collect();
            (BTreeMap::new(), ledgers)
        }
    };
    let _ = tx.rollback().await;
    let _ = conn.close().await;
    let made_customers = history.events.iter().any(|e| {
        e.sender != Sender::Readback && e.outcome.ok_body().is_some() && !matches!(e.call, Call::Get { .. })
    });
    if customers.is_empty() && made_customers {
        return Err(CheckError::BadInput(format!(
            "--database-url … --schema {}: the rows query matched no customer of run {} (ids {id_pattern}, or id-less emails holding it), though the run made some: is this the target's database and schema?",
            source.schema, history.run_id
        )));
    }

    let mut held: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    for (customer, product, group) in &products {
        held.entry(customer.as_str()).or_default().push((group.clone(), product.clone()));
    }
    let usage: BTreeMap<&str, i64> = usage.iter().map(|(c, u)| (c.as_str(), *u)).collect();
    let ledgers: BTreeMap<&str, Ledger> = ledgers.iter().map(|(c, l)| (c.as_str(), *l)).collect();
    let (findings, mut notes) = judge_rows(history, &customers, &held, &usage, &ledgers, layout);
    notes.insert(
        0,
        format!("committed rows: {} layout, {} of the run's customers", layout.as_str(), customers.len()),
    );
    Ok(RowsVerdict { findings, notes, customers: customers.len() })
}

fn judge_rows(
    history: &History,
    customers: &[Customer],
    held: &BTreeMap<&str, Vec<(String, String)>>,
    usage: &BTreeMap<&str, i64>,
    ledgers: &BTreeMap<&str, Ledger>,
    layout: Layout,
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
        if layout == Layout::Autumn {
            let ledger = ledgers.get(row.internal_id.as_str()).copied().unwrap_or(Ledger {
                allowance: 0,
                balance: 0,
                events: 0,
            });
            if let Some((message, lost)) =
                judge_ledger(&customer, &row.internal_id, &history.feature, ledger, &bounds)
            {
                find("usage_conserved", Some(&customer), None, message, lost);
            }
            continue;
        }
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
