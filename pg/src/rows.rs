//! Rows as Postgres returns them, and the text forms the schema stores.

use cusim::backend::{DbError, RowLock};
use cusim::model::{CustomerRow, DefaultScope, Env, ProductKind, ProductStatus};
use sqlx::postgres::PgRow;
use sqlx::Row;

pub(crate) const CUSTOMER_COLUMNS: &str =
    "internal_id, org_id, env, id, name, email, fingerprint, metadata, processor, created_at, default_scope, stripe_wanted";

pub(crate) fn db_error(error: sqlx::Error) -> DbError {
    if let sqlx::Error::Database(db) = &error {
        let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
        let constraint = db.constraint().unwrap_or_default().to_owned();
        return match code.as_str() {
            "23505" => DbError::UniqueViolation { constraint },
            "23503" => DbError::ForeignKeyViolation { constraint },
            "40P01" => DbError::Deadlock,
            _ => DbError::Failed { code, message: db.message().to_owned() },
        };
    }
    DbError::Failed { code: "client".into(), message: error.to_string() }
}

pub(crate) fn env_of(text: &str) -> Env {
    if text == "live" {
        Env::Live
    } else {
        Env::Sandbox
    }
}

pub fn default_scope_text(scope: &DefaultScope) -> String {
    match scope {
        DefaultScope::None => "none".into(),
        DefaultScope::All => "all".into(),
        DefaultScope::Group(g) => format!("group:{g}"),
    }
}

pub(crate) fn default_scope_of(text: &str) -> DefaultScope {
    match text {
        "none" => DefaultScope::None,
        "all" => DefaultScope::All,
        other => DefaultScope::Group(other.trim_start_matches("group:").to_owned()),
    }
}

pub fn customer_of(row: &PgRow) -> Result<CustomerRow, sqlx::Error> {
    let metadata: serde_json::Value = row.try_get("metadata")?;
    Ok(CustomerRow {
        internal_id: row.try_get("internal_id")?,
        org_id: row.try_get("org_id")?,
        env: env_of(row.try_get::<String, _>("env")?.as_str()),
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        fingerprint: row.try_get("fingerprint")?,
        metadata: serde_json::from_value(metadata).unwrap_or_default(),
        processor: row.try_get("processor")?,
        created_at: row.try_get::<i64, _>("created_at")? as u64,
        default_scope: default_scope_of(row.try_get::<String, _>("default_scope")?.as_str()),
        stripe_wanted: row.try_get("stripe_wanted")?,
    })
}

pub(crate) fn kind_of(text: &str) -> ProductKind {
    match text {
        "paid" => ProductKind::Paid,
        "trial" => ProductKind::Trial,
        _ => ProductKind::Free,
    }
}

pub(crate) fn status_text(status: ProductStatus) -> &'static str {
    match status {
        ProductStatus::Active => "active",
        ProductStatus::Trialing => "trialing",
    }
}

pub(crate) fn lock_clause(lock: RowLock) -> &'static str {
    match lock {
        RowLock::None => "",
        RowLock::ForShare => " FOR SHARE",
        RowLock::ForUpdate => " FOR UPDATE",
    }
}
