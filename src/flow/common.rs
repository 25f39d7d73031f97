//! Pieces the modelled strategies (`legacy`, `transactional`) share: the
//! cached get-or-create path, the existing-customer path, Stripe customers
//! keyed by 5 s buckets, and usage deducted in the cache then synced.

use crate::backend::{
    Backend, CacheError, CacheKey, CacheStamp, CacheWriteMode, CustomerKey, DeductOutcome, DeductTarget,
    Fill, NewCustomer, RowLock, StripeParams,
};
use crate::model::{
    select_defaults, ApiError, CustomerData, CustomerId, CustomerRow, DefaultScope, ErrorCode, FullCustomer,
    Product,
};

use super::{legacy, transactional, CreateOptions, Ctx, Strategy};

/// The modelled server buckets Stripe idempotency keys by 5 s of clock time.
pub const STRIPE_KEY_BUCKET_MS: u64 = 5_000;

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

pub fn new_product(row: &CustomerRow, product: &Product) -> crate::backend::NewCustomerProduct {
    crate::backend::NewCustomerProduct {
        internal_customer_id: row.internal_id.clone(),
        product_id: product.id.clone(),
        group: product.group.clone(),
        status: product.kind.attach_status(),
    }
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
pub async fn invalidate_best_effort<B: Backend>(ctx: &Ctx<'_, B>, key: &CacheKey) {
    let _ignored: Result<(), CacheError> = ctx.db.cache_invalidate(key).await;
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

/// Caches a customer the way each modelled strategy does: `legacy` checks
/// the key, then sets it (two steps: another request can set it in between,
/// and this set overwrites it, R8); `transactional` sets it if absent,
/// atomically. Both honour the stale-write guard. Cache failures are ignored.
pub async fn cache_customer<B: Backend>(
    ctx: &Ctx<'_, B>,
    key: &CacheKey,
    full: &FullCustomer,
    stamp: CacheStamp,
) {
    let mode = match ctx.strategy {
        Strategy::Legacy => match ctx.db.cache_read(key).await {
            Ok(read) if read.entry.is_none() => CacheWriteMode::Overwrite,
            Ok(_) | Err(_) => return,
        },
        Strategy::Transactional => CacheWriteMode::SetIfAbsent,
        Strategy::Safe => unreachable!("safe caches through its own path"),
    };
    let _ignored = ctx.db.cache_write(key, full, stamp, mode).await;
}

/// The modelled servers' get-or-create over the cache (SPEC §3): the cache,
/// else the DB, else create (only when `data` is given). Then fill empty
/// fields from `data`, and cache what was read on a miss.
pub async fn cached_get_or_create<B: Backend>(
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
        (None, Some(data)) => create_for_cached_path(ctx, customer_id, data).await?,
    };
    let full = match data {
        Some(data) => with_filled_fields(ctx, full, Some(data)).await?,
        None => full,
    };
    cache_customer(ctx, &key, &full, stamp).await;
    Ok(Some(full))
}

/// Auto-creation from the cached path. `legacy` re-reads when its insert
/// met a duplicate, where its create endpoint would fail (R1).
async fn create_for_cached_path<B: Backend>(
    ctx: &Ctx<'_, B>,
    customer_id: &CustomerId,
    data: &CustomerData,
) -> Result<FullCustomer, ApiError> {
    let options = CreateOptions::default();
    match ctx.strategy {
        Strategy::Legacy => match legacy::create(ctx, Some(customer_id), data, &options).await {
            Ok(full) => Ok(full),
            Err(legacy::CreateError::Duplicate(_)) => {
                let key = CustomerKey::Id(customer_id.as_str().to_owned());
                ctx.db.db_read(&ctx.scope, key, RowLock::None).await?.ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InternalError,
                        format!("customer {customer_id} vanished after 23505"),
                    )
                })
            }
            Err(legacy::CreateError::Api(error)) => Err(error),
        },
        Strategy::Transactional => transactional::create(ctx, Some(customer_id), data, &options).await,
        Strategy::Safe => unreachable!("safe has its own get-or-create"),
    }
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
    let in_cache =
        ctx.db.deduct(&ctx.scope, internal_id, feature_id, value, DeductTarget::Cache(key.clone())).await;
    match in_cache {
        Ok(DeductOutcome::Applied { .. }) => {
            // The batched sync; a failure here loses nothing the cache still holds.
            let _ = ctx.db.sync_usage(&key, internal_id, feature_id).await;
            Ok(())
        }
        Ok(DeductOutcome::CacheMissing) | Err(crate::backend::BackendError::Cache(_)) => {
            ctx.db.deduct(&ctx.scope, internal_id, feature_id, value, DeductTarget::Db).await?;
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}
