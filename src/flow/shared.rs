//! What every design shares: the cache key, which defaults a new customer
//! is owed, the rows a create writes, and the first lookup and the re-read
//! of a create. It imports no design.

use crate::backend::{
    Backend, CacheKey, ClaimTarget, CustomerKey, DbError, InsertOutcome, NewCustomer, NewCustomerProduct,
    OnConflict, RowLock,
};
use crate::model::{
    select_defaults, ApiError, CustomerData, CustomerId, CustomerRow, DefaultScope, ErrorCode, FullCustomer,
    Product,
};

use super::{CreateOptions, Ctx};

pub fn cache_key<B>(ctx: &Ctx<'_, B>, id: &str) -> CacheKey {
    CacheKey { scope: ctx.scope.clone(), id: id.to_owned() }
}

/// Which defaults a new customer is owed.
pub fn default_scope(data: &CustomerData, options: &CreateOptions) -> DefaultScope {
    if data.disable_default || !options.create_default_products {
        DefaultScope::None
    } else {
        match &options.default_group {
            Some(group) => DefaultScope::Group(group.clone()),
            None => DefaultScope::All,
        }
    }
}

/// The default products owed under `scope`, one per group (SPEC §3).
pub fn chosen_defaults<'p>(candidates: &'p [Product], scope: &DefaultScope) -> Vec<&'p Product> {
    match scope.group_filter() {
        None => Vec::new(),
        Some(only_group) => select_defaults(candidates, only_group),
    }
}

/// The row a create inserts.
pub fn new_customer<B>(
    ctx: &Ctx<'_, B>,
    id: Option<&CustomerId>,
    data: &CustomerData,
    options: &CreateOptions,
) -> NewCustomer {
    NewCustomer {
        scope: ctx.scope.clone(),
        id: id.map(|id| id.as_str().to_owned()),
        name: data.name.clone(),
        email: data.email.clone(),
        fingerprint: data.fingerprint.clone(),
        metadata: data.metadata.clone().unwrap_or_default(),
        processor: None,
        default_scope: default_scope(data, options),
        stripe_wanted: data.create_in_stripe,
    }
}

/// The `customer_products` row that attaches `product` to `row`.
pub fn new_product(row: &CustomerRow, product: &Product) -> NewCustomerProduct {
    NewCustomerProduct {
        internal_customer_id: row.internal_id.clone(),
        product_id: product.id.clone(),
        group: product.group.clone(),
        status: product.kind.attach_status(),
    }
}

/// Create's first step: the customer with this id, if there is one. An
/// id-less create must name an email (`invalid_customer`).
pub async fn row_with_id<B: Backend>(
    ctx: &Ctx<'_, B>,
    customer_id: Option<&CustomerId>,
    data: &CustomerData,
) -> Result<Option<CustomerRow>, ApiError> {
    match customer_id {
        Some(id) => Ok(ctx.db.lookup_id(&ctx.scope, id.as_str(), RowLock::None).await?),
        None => {
            data.email().ok_or_else(ApiError::email_required)?;
            Ok(None)
        }
    }
}

/// Re-reads a customer known to exist.
pub async fn read_full<B: Backend>(ctx: &Ctx<'_, B>, internal_id: &str) -> Result<FullCustomer, ApiError> {
    ctx.db
        .db_read(&ctx.scope, CustomerKey::InternalId(internal_id.to_owned()), RowLock::None)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::InternalError, format!("customer {internal_id} vanished")))
}

/// What phase 1's claim-or-insert found.
pub enum ClaimOrInsert {
    /// A new row; its transaction is still open, for the caller's defaults.
    Inserted(CustomerRow),
    /// Claimed by email, or the insert met the row that holds the key; the
    /// transaction is committed.
    Existing(CustomerRow),
}

/// Phase 1's claim-or-insert (SPEC §4), in a transaction it begins: claim
/// an id-less row by email (`WHERE id IS NULL AND lower(email) = …`,
/// re-checked after any wait), else `INSERT … ON CONFLICT DO UPDATE`, which
/// returns (and locks) the row that holds the key. Any error has rolled
/// the transaction back.
pub async fn claim_or_insert<B: Backend>(
    ctx: &Ctx<'_, B>,
    customer_id: Option<&CustomerId>,
    data: &CustomerData,
    options: &CreateOptions,
) -> Result<ClaimOrInsert, DbError> {
    ctx.db.begin().await?;
    if let (Some(id), Some(email)) = (customer_id, data.email()) {
        let target = ClaimTarget::IdlessEmail { email: email.to_owned() };
        if let Some(claimed) = ctx.db.claim(&ctx.scope, target, id.as_str()).await? {
            ctx.db.commit().await?;
            return Ok(ClaimOrInsert::Existing(claimed));
        }
    }
    let new = new_customer(ctx, customer_id, data, options);
    match ctx.db.insert(new, OnConflict::ReturnExisting).await? {
        InsertOutcome::Inserted(row) => Ok(ClaimOrInsert::Inserted(row)),
        InsertOutcome::Existing(row) => {
            ctx.db.commit().await?;
            Ok(ClaimOrInsert::Existing(row))
        }
        // `ON CONFLICT … DO UPDATE` never skips; a backend that did is broken.
        InsertOutcome::Skipped => {
            ctx.db.rollback().await?;
            Err(DbError::Failed { code: "XX000".into(), message: "ON CONFLICT DO UPDATE skipped".into() })
        }
    }
}
