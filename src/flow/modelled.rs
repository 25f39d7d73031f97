//! The modelled server's pieces, which `legacy` and `transactional` share
//! (SPEC §4): the cached get-or-create path, the existing-customer path,
//! Stripe customers keyed by 5 s buckets, and usage deducted in the cache
//! then synced. Where the two differ, they say so through [`CachedPath`].
//! It imports no design.

use crate::backend::{
    Backend, BackendError, CacheError, CacheKey, CacheStamp, CustomerKey, DeductOutcome, DeductTarget, Fill,
    RowLock, StripeParams,
};
use crate::model::{ApiError, CustomerData, CustomerId, CustomerRow, FullCustomer};

use super::shared::{cache_key, read_full};
use super::Ctx;

/// The modelled server buckets Stripe idempotency keys by 5 s of clock time.
pub const STRIPE_KEY_BUCKET_MS: u64 = 5_000;

/// What a modelled design does its own way on the cached path.
#[allow(async_fn_in_trait)]
pub trait CachedPath {
    /// Caches a customer read at `stamp`. Cache failures are ignored.
    async fn cache_customer<B: Backend>(
        ctx: &Ctx<'_, B>,
        key: &CacheKey,
        full: &FullCustomer,
        stamp: CacheStamp,
    );

    /// Creates the customer a check or track did not find.
    async fn autocreate<B: Backend>(
        ctx: &Ctx<'_, B>,
        customer_id: &CustomerId,
        data: &CustomerData,
    ) -> Result<FullCustomer, ApiError>;
}

/// The modelled server's Stripe customer: idempotency key bucketed by 5 s
/// of clock time, then an unconditional `processor` update. Two calls in
/// different buckets make two Stripe customers, and the last update wins
/// (R6).
pub async fn bucketed_stripe_customer<B: Backend>(
    ctx: &Ctx<'_, B>,
    row: &CustomerRow,
) -> Result<String, ApiError> {
    let bucket = ctx.db.now_ms() / STRIPE_KEY_BUCKET_MS;
    let customer = row.id.as_deref().unwrap_or(&row.internal_id);
    let key =
        format!("stripe-create-cus:{customer}:{}:{}:{bucket}", ctx.scope.org_id, ctx.scope.env.as_str());
    let params = StripeParams {
        internal_id: row.internal_id.clone(),
        name: row.name.clone(),
        email: row.email.clone(),
    };
    let stripe_id = ctx.db.stripe_create(&key, params).await?;
    ctx.db.set_processor(&ctx.scope, &row.internal_id, &stripe_id, false).await?;
    Ok(stripe_id)
}

/// Fills the customer's empty name and email from `data`; a change
/// invalidates the cached customer. Returns the updated row, if any.
pub async fn fill_empty_fields<B: Backend>(
    ctx: &Ctx<'_, B>,
    row: &CustomerRow,
    data: &CustomerData,
) -> Result<Option<CustomerRow>, ApiError> {
    let fill = Fill {
        name: data.name.clone().filter(|n| !n.is_empty()),
        email: data.email().map(str::to_owned),
        stripe_wanted: false,
    };
    if !fill.changes(row) {
        return Ok(None);
    }
    let updated = ctx.db.fill_fields(&ctx.scope, &row.internal_id, fill).await?;
    if let Some(id) = updated.as_ref().and_then(|r| r.id.as_deref()) {
        invalidate_best_effort(ctx, &cache_key(ctx, id)).await;
    }
    Ok(updated)
}

/// A failed invalidation is logged by the modelled server and ignored.
async fn invalidate_best_effort<B: Backend>(ctx: &Ctx<'_, B>, key: &CacheKey) {
    let _ignored: Result<(), CacheError> = ctx.db.cache_invalidate(key, ctx.db.guard_time_ms()).await;
}

/// The "existing customer" path of create: fill empty fields, make sure of
/// a Stripe customer when asked, and return the customer as the DB has it.
pub async fn existing_customer<B: Backend>(
    ctx: &Ctx<'_, B>,
    row: CustomerRow,
    data: &CustomerData,
) -> Result<FullCustomer, ApiError> {
    let row = fill_empty_fields(ctx, &row, data).await?.unwrap_or(row);
    if data.create_in_stripe && row.processor.is_none() {
        bucketed_stripe_customer(ctx, &row).await?;
    }
    read_full(ctx, &row.internal_id).await
}

/// The modelled servers' get-or-create over the cache (SPEC §3): the cache,
/// else the DB, else create (only when `data` is given). Then fill empty
/// fields from `data`, and cache what was read on a miss.
pub async fn cached_get_or_create<D: CachedPath, B: Backend>(
    ctx: &Ctx<'_, B>,
    customer_id: &CustomerId,
    data: Option<&CustomerData>,
) -> Result<Option<FullCustomer>, ApiError> {
    let key = cache_key(ctx, customer_id.as_str());
    let stamp = ctx.db.read_stamp();
    if let Ok(read) = ctx.db.cache_read(&key).await {
        if let Some(cached) = read.entry {
            return Ok(Some(with_filled_fields(ctx, cached, data).await?));
        }
    }
    let found =
        ctx.db.db_read(&ctx.scope, CustomerKey::Id(customer_id.as_str().to_owned()), RowLock::None).await?;
    let full = match (found, data) {
        (Some(full), _) => full,
        (None, None) => return Ok(None),
        (None, Some(data)) => D::autocreate(ctx, customer_id, data).await?,
    };
    let full = match data {
        Some(data) => with_filled_fields(ctx, full, Some(data)).await?,
        None => full,
    };
    D::cache_customer(ctx, &key, &full, stamp).await;
    Ok(Some(full))
}

async fn with_filled_fields<B: Backend>(
    ctx: &Ctx<'_, B>,
    mut full: FullCustomer,
    data: Option<&CustomerData>,
) -> Result<FullCustomer, ApiError> {
    if let Some(data) = data {
        if let Some(updated) = fill_empty_fields(ctx, &full.customer, data).await? {
            full.customer = updated;
        }
    }
    Ok(full)
}

/// The modelled servers' track: deduct in the cached customer, then write
/// the cached absolute usage to the DB. An invalidation in between drops
/// the deduction (R9). Without a cache entry, usage goes to the DB directly.
pub async fn deduct_in_cache_then_sync<B: Backend>(
    ctx: &Ctx<'_, B>,
    customer_id: &CustomerId,
    customer: &FullCustomer,
    feature_id: &str,
    value: i64,
) -> Result<(), ApiError> {
    let key = cache_key(ctx, customer_id.as_str());
    let internal_id = customer.internal_id();
    let in_cache = ctx
        .db
        .deduct(&ctx.scope, internal_id, feature_id, value, DeductTarget::Cache(key.clone()), None::<String>)
        .await;
    match in_cache {
        Ok(DeductOutcome::Applied { .. } | DeductOutcome::Duplicate { .. }) => {
            // The batched sync; a failure here loses nothing the cache still holds.
            let _ = ctx.db.sync_usage(&key, internal_id, feature_id).await;
            Ok(())
        }
        Ok(DeductOutcome::CacheMissing) | Err(BackendError::Cache(_)) => {
            ctx.db
                .deduct(&ctx.scope, internal_id, feature_id, value, DeductTarget::Db, None::<String>)
                .await?;
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}
