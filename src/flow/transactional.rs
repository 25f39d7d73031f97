//! `transactional`: the modelled server after its fix (SPEC §4).
//!
//! - Create, phase 1, one transaction: claim an id-less row by email, else
//!   `INSERT … ON CONFLICT`, and insert the free and trial defaults. A
//!   23505 rolls it back and the customer is re-read as "existing".
//! - Create, phase 2, after commit: the Stripe customer (5 s-bucketed key,
//!   unconditional `processor` update) and paid defaults. Then the cache,
//!   set-if-absent.
//! - Check and track: the cache, else the DB, else create.
//! - Track: deduct in the cached customer, then sync the absolute usage.
//!
//! Open on purpose: R6 (`create_in_stripe` on the existing path), R7
//! (phase 2 does not invalidate a customer cached after phase 1) and R9.

use crate::backend::{
    Backend, CacheKey, CacheStamp, CacheWriteMode, Constraints, DbError, OnConflict, RowLock,
};
use crate::model::{ApiError, CustomerData, CustomerId, ErrorCode, FullCustomer, Product, ProductKind};

use super::modelled::{
    bucketed_stripe_customer, cached_get_or_create, deduct_in_cache_then_sync, existing_customer, CachedPath,
};
use super::shared::{
    cache_key, chosen_defaults, claim_or_insert, default_scope, new_product, read_full, row_with_id,
    ClaimOrInsert,
};
use super::{CreateOptions, Ctx, Design};

/// The `transactional` design.
pub struct Transactional;

impl Design for Transactional {
    /// A partial unique index guards id-less emails; nothing guards a
    /// group's default.
    const CONSTRAINTS: Constraints = Constraints { idless_email_unique: true, product_group_unique: false };

    async fn create<B: Backend>(
        ctx: &Ctx<'_, B>,
        customer_id: Option<&CustomerId>,
        data: &CustomerData,
        options: &CreateOptions,
    ) -> Result<FullCustomer, ApiError> {
        if let Some(row) = row_with_id(ctx, customer_id, data).await? {
            return existing_customer(ctx, row, data).await;
        }
        let candidates = ctx.db.list_defaults(&ctx.scope).await?;
        let chosen = chosen_defaults(&candidates, &default_scope(data, options));

        let row = match phase_1(ctx, customer_id, data, options, &chosen).await {
            Ok(ClaimOrInsert::Inserted(row)) => row,
            Ok(ClaimOrInsert::Existing(row)) => return existing_customer(ctx, row, data).await,
            Err(error) if error.is_unique_violation() => {
                return reread_existing(ctx, customer_id, data).await
            }
            Err(error) => return Err(error.into()),
        };

        // Phase 2. Between the commit and here, the customer is visible
        // without its Stripe customer and paid defaults.
        let needs_stripe = data.create_in_stripe || chosen.iter().any(|p| p.kind.needs_stripe());
        let mut row = row;
        if needs_stripe && row.processor.is_none() {
            row.processor = Some(bucketed_stripe_customer(ctx, &row).await?);
        }
        for product in chosen.iter().filter(|p| !attaches_in_phase_1(p)) {
            ctx.db.attach_default(&ctx.scope, new_product(&row, product), OnConflict::Error).await?;
        }

        let stamp = ctx.db.read_stamp();
        let full = read_full(ctx, &row.internal_id).await?;
        if let Some(id) = &row.id {
            Transactional::cache_customer(ctx, &cache_key(ctx, id), &full, stamp).await;
        }
        Ok(full)
    }

    async fn get_or_create<B: Backend>(
        ctx: &Ctx<'_, B>,
        customer_id: &CustomerId,
        data: Option<&CustomerData>,
    ) -> Result<Option<FullCustomer>, ApiError> {
        cached_get_or_create::<Transactional, B>(ctx, customer_id, data).await
    }

    async fn record_usage<B: Backend>(
        ctx: &Ctx<'_, B>,
        customer_id: &CustomerId,
        customer: &FullCustomer,
        feature_id: &str,
        value: i64,
    ) -> Result<(), ApiError> {
        deduct_in_cache_then_sync(ctx, customer_id, customer, feature_id, value).await
    }
}

impl CachedPath for Transactional {
    /// Atomic set-if-absent (`CACHE_EXISTS` when present), under the
    /// stale-write guard.
    async fn cache_customer<B: Backend>(
        ctx: &Ctx<'_, B>,
        key: &CacheKey,
        full: &FullCustomer,
        stamp: CacheStamp,
    ) {
        let _ignored = ctx.db.cache_write(key, full, stamp, CacheWriteMode::SetIfAbsent).await;
    }

    async fn autocreate<B: Backend>(
        ctx: &Ctx<'_, B>,
        customer_id: &CustomerId,
        data: &CustomerData,
    ) -> Result<FullCustomer, ApiError> {
        Transactional::create(ctx, Some(customer_id), data, &CreateOptions::default()).await
    }
}

/// Free and trial defaults are inserted with the customer; paid ones need
/// the Stripe customer first, so they wait for phase 2.
fn attaches_in_phase_1(product: &Product) -> bool {
    product.kind != ProductKind::Paid
}

/// Phase 1, one transaction: claim-or-insert, then the phase-1 defaults of
/// a created customer. Any error has rolled the transaction back.
async fn phase_1<B: Backend>(
    ctx: &Ctx<'_, B>,
    customer_id: Option<&CustomerId>,
    data: &CustomerData,
    options: &CreateOptions,
    chosen: &[&Product],
) -> Result<ClaimOrInsert, DbError> {
    let row = match claim_or_insert(ctx, customer_id, data, options).await? {
        ClaimOrInsert::Inserted(row) => row,
        existing @ ClaimOrInsert::Existing(_) => return Ok(existing),
    };
    for product in chosen.iter().filter(|p| attaches_in_phase_1(p)) {
        ctx.db.attach_default(&ctx.scope, new_product(&row, product), OnConflict::Error).await?;
    }
    ctx.db.commit().await?;
    Ok(ClaimOrInsert::Inserted(row))
}

/// After a 23505 (a claim met an id another request had just taken): the
/// customer exists now; return it as "existing".
async fn reread_existing<B: Backend>(
    ctx: &Ctx<'_, B>,
    customer_id: Option<&CustomerId>,
    data: &CustomerData,
) -> Result<FullCustomer, ApiError> {
    let id = customer_id.expect("a 23505 in phase 1 needs an id (id-less inserts take the conflict path)");
    match ctx.db.lookup_id(&ctx.scope, id.as_str(), RowLock::None).await? {
        Some(row) => existing_customer(ctx, row, data).await,
        None => Err(ApiError::new(
            ErrorCode::InternalError,
            format!("customer {id} not found after a unique violation"),
        )),
    }
}
