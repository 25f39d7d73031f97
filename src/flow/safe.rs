//! `safe`: this project's design. It must hold every invariant of SPEC §6
//! under every schedule and every fault.
//!
//! What it adds to `transactional`, and the race each closes:
//! - defaults attached `ON CONFLICT DO NOTHING` under `UNIQUE (customer,
//!   group)`: never two of one group;
//! - healing: every read that finds a customer missing a default it is owed
//!   attaches it (R2, R3: a crash between commit and phase 2 heals);
//! - Stripe idempotency keyed on `internal_id` alone (no clock) and a
//!   conditional `processor` set: one Stripe customer per customer (R6);
//! - every change after phase 1 runs in a transaction that first locks the
//!   customer row `FOR UPDATE` and invalidates the cache *before* commit;
//!   readers that fill the cache read `FOR SHARE` (so they wait for such a
//!   transaction) and write only if no invalidation came since their cache
//!   read (an invalidation counter that never expires). A crash before the
//!   commit rolls back the change; a crash after it is too late to matter
//!   (R7, R8);
//! - usage added atomically at the source of truth, never in the cache (R8, R9).

use crate::backend::{
    Backend, CacheKey, CacheWriteMode, Constraints, CustomerKey, DbError, DeductTarget, Fill, OnConflict,
    RowLock, StripeError, StripeParams,
};
use crate::model::{
    ApiError, CustomerData, CustomerId, CustomerRow, ErrorCode, FullCustomer, Product, ProductKind,
};

use super::shared::{
    cache_key, chosen_defaults, claim_or_insert, default_scope, new_product, read_full, row_with_id,
    ClaimOrInsert,
};
use super::{CreateOptions, Ctx, Design};

/// The `safe` design.
pub struct Safe;

impl Design for Safe {
    /// Id-less emails are unique, and so is each customer's default per group.
    const CONSTRAINTS: Constraints = Constraints { idless_email_unique: true, product_group_unique: true };

    async fn create<B: Backend>(
        ctx: &Ctx<'_, B>,
        customer_id: Option<&CustomerId>,
        data: &CustomerData,
        options: &CreateOptions,
    ) -> Result<FullCustomer, ApiError> {
        if let Some(row) = row_with_id(ctx, customer_id, data).await? {
            return existing_customer(ctx, row, data, None).await;
        }
        let candidates = ctx.db.list_defaults(&ctx.scope).await?;
        let chosen = chosen_defaults(&candidates, &default_scope(data, options));

        match phase_1(ctx, customer_id, data, options, &chosen).await {
            Ok(ClaimOrInsert::Inserted(row)) => {
                let full = read_full(ctx, &row.internal_id).await?;
                complete(ctx, full, Some(&candidates)).await
            }
            Ok(ClaimOrInsert::Existing(row)) => existing_customer(ctx, row, data, Some(&candidates)).await,
            Err(error) if error.is_unique_violation() => {
                // A claim met an id taken meanwhile: that customer is ours to return.
                let id = customer_id.expect("only a claim, which needs an id, can meet 23505 in phase 1");
                match ctx.db.lookup_id(&ctx.scope, id.as_str(), RowLock::None).await? {
                    Some(row) => existing_customer(ctx, row, data, Some(&candidates)).await,
                    None => Err(ApiError::new(
                        ErrorCode::InternalError,
                        format!("customer {id} vanished after 23505"),
                    )),
                }
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Through the cache; without `data`, a plain read (the settle read).
    /// Whatever it returns has every default it is owed.
    async fn get_or_create<B: Backend>(
        ctx: &Ctx<'_, B>,
        customer_id: &CustomerId,
        data: Option<&CustomerData>,
    ) -> Result<Option<FullCustomer>, ApiError> {
        let key = cache_key(ctx, customer_id.as_str());
        // A cache that is down is a miss that must not be filled afterwards.
        let cache_read = ctx.db.cache_read(&key).await.ok();
        if let Some(cached) = cache_read.as_ref().and_then(|read| read.entry.clone()) {
            return match data {
                Some(data) if fills_something(&cached.customer, data) => {
                    Ok(Some(existing_customer(ctx, cached.customer, data, None).await?))
                }
                _ => Ok(Some(cached)),
            };
        }
        let by_id = CustomerKey::Id(customer_id.as_str().to_owned());
        let full = match (ctx.db.db_read(&ctx.scope, by_id, RowLock::ForShare).await?, data) {
            (Some(full), Some(data)) if fills_something(&full.customer, data) => {
                existing_customer(ctx, full.customer, data, None).await?
            }
            (Some(full), _) => complete(ctx, full, None).await?,
            (None, None) => return Ok(None),
            (None, Some(data)) => {
                Safe::create(ctx, Some(customer_id), data, &CreateOptions::default()).await?
            }
        };
        if let Some(read) = cache_read {
            // Refused (and harmlessly so) if anything invalidated the key since our read.
            let _ignored = ctx.db.cache_write(&key, &full, read.stamp, CacheWriteMode::Versioned).await;
        }
        Ok(Some(full))
    }

    /// At the source of truth, under the customer's row lock, invalidating
    /// the cache before the commit.
    async fn record_usage<B: Backend>(
        ctx: &Ctx<'_, B>,
        _customer_id: &CustomerId,
        customer: &FullCustomer,
        feature_id: &str,
        value: i64,
    ) -> Result<(), ApiError> {
        let row = &customer.customer;
        let id = row.id.as_deref().expect("check and track customers have an id");
        transaction(ctx, async {
            if ctx.db.lookup_id(&ctx.scope, id, RowLock::ForUpdate).await?.is_none() {
                return Err(ApiError::not_found(id));
            }
            // A keyed track counts once, however often it is retried (a key
            // sent again with another value is another track).
            let key = ctx.idempotency_key.as_ref().map(|k| format!("{k}:{value}"));
            ctx.db.deduct(&ctx.scope, &row.internal_id, feature_id, value, DeductTarget::Db, key).await?;
            invalidate(ctx, &cache_key(ctx, id)).await
        })
        .await
    }
}

/// Phase 1, one transaction: claim-or-insert, then the defaults of a new
/// customer that are not paid, `ON CONFLICT DO NOTHING`. Any error has
/// rolled the transaction back.
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
    // Paid defaults need the Stripe customer first: `complete` attaches them.
    for product in chosen.iter().filter(|p| p.kind != ProductKind::Paid) {
        ctx.db.attach_default(&ctx.scope, new_product(&row, product), OnConflict::DoNothing).await?;
    }
    ctx.db.commit().await?;
    Ok(ClaimOrInsert::Inserted(row))
}

/// Runs `body` between `BEGIN` and `COMMIT`; if it fails, rolls back (a
/// failed statement has already rolled back; other failures have not).
async fn transaction<B: Backend, T>(
    ctx: &Ctx<'_, B>,
    body: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    ctx.db.begin().await?;
    match body.await {
        Ok(value) => {
            ctx.db.commit().await?;
            Ok(value)
        }
        Err(error) => {
            ctx.db.rollback().await?;
            Err(error)
        }
    }
}

/// What `data` would fill in on `row`: empty name and email, and the wish
/// for a Stripe customer (recorded before Stripe is asked).
fn fill_for(data: &CustomerData) -> Fill {
    Fill {
        name: data.name.clone().filter(|n| !n.is_empty()),
        email: data.email().map(str::to_owned),
        stripe_wanted: data.create_in_stripe,
    }
}

fn fills_something(row: &CustomerRow, data: &CustomerData) -> bool {
    fill_for(data).changes(row)
}

/// The existing-customer path: fill empty fields (in a locked transaction
/// that invalidates the cache), then complete the customer.
async fn existing_customer<B: Backend>(
    ctx: &Ctx<'_, B>,
    row: CustomerRow,
    data: &CustomerData,
    candidates: Option<&[Product]>,
) -> Result<FullCustomer, ApiError> {
    if fills_something(&row, data) {
        transaction(ctx, async {
            let updated = ctx.db.fill_fields(&ctx.scope, &row.internal_id, fill_for(data)).await?;
            match updated.as_ref().and_then(|r| r.id.as_deref()) {
                Some(id) => invalidate(ctx, &cache_key(ctx, id)).await,
                None => Ok(()),
            }
        })
        .await?;
    }
    let full = read_full(ctx, &row.internal_id).await?;
    complete(ctx, full, candidates).await
}

/// Makes the customer whole: every default it is owed, and a Stripe
/// customer when one was asked for (`stripe_wanted`) or an owed default
/// (trial, paid) needs one. Idempotent; a no-op (no writes) for a customer
/// that is already whole.
async fn complete<B: Backend>(
    ctx: &Ctx<'_, B>,
    full: FullCustomer,
    candidates: Option<&[Product]>,
) -> Result<FullCustomer, ApiError> {
    let listed;
    let candidates = match candidates {
        Some(candidates) => candidates,
        None => {
            listed = ctx.db.list_defaults(&ctx.scope).await?;
            &listed
        }
    };
    let missing = missing_defaults(&full, candidates);
    let owed = chosen_defaults(candidates, &full.customer.default_scope);
    let needs_stripe = full.customer.processor.is_none()
        && (full.customer.stripe_wanted || owed.iter().any(|p| p.kind.needs_stripe()));
    if missing.is_empty() && !needs_stripe {
        return Ok(full);
    }
    let stripe_id = match needs_stripe {
        true => Some(stripe_customer(ctx, &full.customer).await?),
        false => None,
    };

    let internal_id = full.customer.internal_id.clone();
    transaction(ctx, async {
        let by_internal_id = CustomerKey::InternalId(internal_id.clone());
        let Some(locked) = ctx.db.db_read(&ctx.scope, by_internal_id, RowLock::ForUpdate).await? else {
            return Err(ApiError::new(ErrorCode::InternalError, format!("customer {internal_id} vanished")));
        };
        if let Some(stripe_id) = &stripe_id {
            if locked.customer.processor.is_none() {
                ctx.db.set_processor(&ctx.scope, &internal_id, stripe_id, true).await?;
            }
        }
        for product in missing_defaults(&locked, candidates) {
            let product = new_product(&locked.customer, product);
            ctx.db.attach_default(&ctx.scope, product, OnConflict::DoNothing).await?;
        }
        match &locked.customer.id {
            Some(id) => invalidate(ctx, &cache_key(ctx, id)).await,
            None => Ok(()),
        }
    })
    .await?;
    read_full(ctx, &internal_id).await
}

/// The defaults `full` is owed but lacks, by group.
fn missing_defaults<'p>(full: &FullCustomer, candidates: &'p [Product]) -> Vec<&'p Product> {
    chosen_defaults(candidates, &full.customer.default_scope)
        .into_iter()
        .filter(|product| !full.has_product_in_group(&product.group))
        .collect()
}

/// The customer's one Stripe customer: the idempotency key names the
/// customer and nothing else, so every caller, at any time within Stripe's
/// 24 h window, gets the same one. A timeout may hide a success: asking
/// again with the same key is safe.
///
/// Stripe forgets a key after 24 h: a Stripe customer made by a request
/// that then failed to record it would be made again by a request more
/// than 24 h later. So the search comes first: it finds every customer
/// older than a minute, and the key covers the minute the index lags.
async fn stripe_customer<B: Backend>(ctx: &Ctx<'_, B>, row: &CustomerRow) -> Result<String, ApiError> {
    let key = format!("cusim-safe:{}", row.internal_id);
    let params = StripeParams { internal_id: row.internal_id.clone(), name: None, email: None };
    // Every create follows its own search: a create is in flight at most
    // its timeout (80 s), so the search (which sees customers older than a
    // minute) and the key (live 24 h) cover every earlier create together.
    let mut tries = 0;
    loop {
        tries += 1;
        if let Some(found) = ctx.db.stripe_search(row.internal_id.clone()).await? {
            return Ok(found);
        }
        match ctx.db.stripe_create(&key, params.clone()).await {
            Err(StripeError::Timeout) if tries < 2 => continue,
            other => return Ok(other?),
        }
    }
}

/// Invalidates inside an open transaction. If the cache is down this fails,
/// and the transaction rolls back: committing would leave the cache stale.
/// The client may retry (503).
async fn invalidate<B: Backend>(ctx: &Ctx<'_, B>, key: &CacheKey) -> Result<(), ApiError> {
    ctx.db
        .cache_invalidate(key, ctx.db.guard_time_ms())
        .await
        .map_err(|_| ApiError::new(ErrorCode::DbUnavailable, "cache unavailable; nothing was changed"))
}
