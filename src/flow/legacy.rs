//! `legacy`: the modelled server before its fixes (SPEC §4). Every race
//! window of SPEC §8 is kept open on purpose: this is the specimen the
//! harness must catch. Do not fix anything here.
//!
//! - Create: look up by id → (by email) → plain INSERT → list defaults →
//!   per group, one at a time: a Stripe customer if needed, then attach →
//!   re-read → cache write (check the key, then set).
//! - Check and track: the cache, else the DB, else create; a duplicate
//!   insert there is re-read rather than failed.
//! - Track: deduct in the cached customer, then sync the absolute usage.

use crate::backend::{
    Backend, CacheKey, CacheStamp, CacheWriteMode, ClaimTarget, Constraints, CustomerKey, DbError,
    InsertOutcome, OnConflict, RowLock,
};
use crate::model::{ApiError, CustomerData, CustomerId, CustomerRow, ErrorCode, FullCustomer};

use super::modelled::{
    bucketed_stripe_customer, cached_get_or_create, deduct_in_cache_then_sync, existing_customer, CachedPath,
};
use super::shared::{cache_key, chosen_defaults, new_customer, new_product, read_full};
use super::{CreateOptions, Ctx, Design};

/// The `legacy` design.
pub struct Legacy;

impl Design for Legacy {
    /// No index guards id-less emails (R4), none guards a group's default.
    const CONSTRAINTS: Constraints = Constraints { idless_email_unique: false, product_group_unique: false };

    async fn create<B: Backend>(
        ctx: &Ctx<'_, B>,
        customer_id: Option<&CustomerId>,
        data: &CustomerData,
        options: &CreateOptions,
    ) -> Result<FullCustomer, ApiError> {
        create(ctx, customer_id, data, options).await.map_err(Into::into)
    }

    async fn get_or_create<B: Backend>(
        ctx: &Ctx<'_, B>,
        customer_id: &CustomerId,
        data: Option<&CustomerData>,
    ) -> Result<Option<FullCustomer>, ApiError> {
        cached_get_or_create::<Legacy, B>(ctx, customer_id, data).await
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

impl CachedPath for Legacy {
    /// Checks the key, then sets it: two steps, so another request can set
    /// it in between, and this set overwrites it (R8). The stale-write
    /// guard still applies.
    async fn cache_customer<B: Backend>(
        ctx: &Ctx<'_, B>,
        key: &CacheKey,
        full: &FullCustomer,
        stamp: CacheStamp,
    ) {
        match ctx.db.cache_read(key).await {
            Ok(read) if read.entry.is_none() => {
                let _ignored = ctx.db.cache_write(key, full, stamp, CacheWriteMode::Overwrite).await;
            }
            Ok(_) | Err(_) => {}
        }
    }

    /// A duplicate insert (another request created the customer meanwhile)
    /// is re-read here, where the create endpoint would fail (R1).
    async fn autocreate<B: Backend>(
        ctx: &Ctx<'_, B>,
        customer_id: &CustomerId,
        data: &CustomerData,
    ) -> Result<FullCustomer, ApiError> {
        match create(ctx, Some(customer_id), data, &CreateOptions::default()).await {
            Ok(full) => Ok(full),
            Err(CreateError::Duplicate(_)) => {
                let key = CustomerKey::Id(customer_id.as_str().to_owned());
                ctx.db.db_read(&ctx.scope, key, RowLock::None).await?.ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InternalError,
                        format!("customer {customer_id} vanished after 23505"),
                    )
                })
            }
            Err(CreateError::Api(error)) => Err(error),
        }
    }
}

/// Legacy's create fails in two ways its callers tell apart: the create
/// endpoint reports a duplicate insert as `internal_error` (R1); the cached
/// get-or-create path re-reads instead.
#[derive(Debug)]
pub enum CreateError {
    Duplicate(DbError),
    Api(ApiError),
}

impl From<ApiError> for CreateError {
    fn from(error: ApiError) -> CreateError {
        CreateError::Api(error)
    }
}

impl From<DbError> for CreateError {
    fn from(error: DbError) -> CreateError {
        CreateError::Api(error.into())
    }
}

impl From<CreateError> for ApiError {
    fn from(error: CreateError) -> ApiError {
        match error {
            CreateError::Duplicate(db) => ApiError::new(ErrorCode::InternalError, db.to_string()),
            CreateError::Api(api) => api,
        }
    }
}

async fn create<B: Backend>(
    ctx: &Ctx<'_, B>,
    customer_id: Option<&CustomerId>,
    data: &CustomerData,
    options: &CreateOptions,
) -> Result<FullCustomer, CreateError> {
    match customer_id {
        Some(id) => {
            if let Some(row) = ctx.db.lookup_id(&ctx.scope, id.as_str(), RowLock::None).await? {
                return Ok(existing_customer(ctx, row, data).await?);
            }
            if let Some(email) = data.email() {
                // Only when exactly one id-less row has the email; the claim
                // targets that row by internal id, without re-checking that it
                // is still id-less (R5).
                if let [row] = ctx.db.lookup_email(&ctx.scope, email).await?.as_slice() {
                    let target = ClaimTarget::Row { internal_id: row.internal_id.clone() };
                    let claimed = ctx.db.claim(&ctx.scope, target, id.as_str()).await?;
                    return Ok(existing_customer(ctx, claimed.unwrap_or_else(|| row.clone()), data).await?);
                }
            }
        }
        None => {
            let email = data.email().ok_or_else(ApiError::email_required)?;
            // No unique index guards id-less emails here (R4).
            if let Some(row) = ctx.db.lookup_email(&ctx.scope, email).await?.into_iter().next() {
                return Ok(existing_customer(ctx, row, data).await?);
            }
        }
    }

    let row = match ctx.db.insert(new_customer(ctx, customer_id, data, options), OnConflict::Error).await {
        Ok(InsertOutcome::Inserted(row)) => row,
        // A plain insert inserts or fails; a backend that answered otherwise is broken.
        Ok(other) => {
            let message = format!("a plain insert answered {other:?}");
            return Err(CreateError::Api(ApiError::new(ErrorCode::InternalError, message)));
        }
        Err(error) if error.is_unique_violation() => return Err(CreateError::Duplicate(error)),
        Err(error) => return Err(error.into()),
    };
    // From here until the defaults are attached, other requests see the
    // customer without them (R2); a crash leaves it so for good (R3).
    let row = attach_defaults_one_by_one(ctx, row).await?;
    if data.create_in_stripe && row.processor.is_none() {
        bucketed_stripe_customer(ctx, &row).await?;
    }
    let stamp = ctx.db.read_stamp();
    let full = read_full(ctx, &row.internal_id).await?;
    if let Some(id) = &row.id {
        Legacy::cache_customer(ctx, &cache_key(ctx, id), &full, stamp).await;
    }
    Ok(full)
}

/// Per group, one at a time: a Stripe customer first when the product needs
/// one (and this request has not made one yet), then the attach.
async fn attach_defaults_one_by_one<B: Backend>(
    ctx: &Ctx<'_, B>,
    mut row: CustomerRow,
) -> Result<CustomerRow, ApiError> {
    let candidates = ctx.db.list_defaults(&ctx.scope).await?;
    for product in chosen_defaults(&candidates, &row.default_scope) {
        if product.kind.needs_stripe() && row.processor.is_none() {
            row.processor = Some(bucketed_stripe_customer(ctx, &row).await?);
        }
        ctx.db.attach_default(&ctx.scope, new_product(&row, product), OnConflict::Error).await?;
    }
    Ok(row)
}
