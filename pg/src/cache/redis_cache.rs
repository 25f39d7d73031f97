//! The full-customer cache on a real Redis server: each operation of the
//! in-memory [`Cache`](cusim::backend::mem::Cache) as one Lua script (in
//! `lua/`) or one command, run atomically by the server.
//!
//! **Layout.** Every key of a run starts with the run's namespace, so runs
//! share a server without seeing each other:
//! - `{ns}:full:{org}:{env}:{id}`: the entry, a hash: `v` the customer as
//!   JSON, `iid` its internal id, `exp` when it expires (virtual ms), and
//!   `u:{feature}` the usage of each balance. Usage lives in fields of its
//!   own so that a deduction is one `HINCRBY` (the modelled server stores
//!   the document with RedisJSON and adds with `JSON.NUMINCRBY`; Debian's
//!   Redis has no RedisJSON).
//! - `{ns}:count:{org}:{env}:{id}`: the invalidation counter; never expires.
//! - `{ns}:guard:{org}:{env}:{id}`: the stale-write guard,
//!   `"{seq}:{set_at}:{expires}"`.
//! - `{ns}:idem:{org}:{env}:{key}`: a claimed idempotency key, holding when
//!   the claim expires.
//!
//! Each part is escaped (`%` and `:`), so a key names one slot. A script
//! touches the keys of one slot, but they do not share a hash tag: this is
//! a single Redis server, not a cluster.
//!
//! **Time.** The scripts never read Redis's clock: the caller passes its
//! virtual clock, and each value that expires stores when (in virtual ms).
//! A script treats a value past its virtual expiry as absent. Real TTLs
//! (`PEXPIRE`, `PX`) are the virtual TTL plus [`GARBAGE_SLACK_MS`]: they
//! only bound garbage, and never remove a value before the model's clock
//! says it is gone unless a run lasts longer than that slack in real time.
//! ARCHITECTURE.md ("Virtual time on a real Redis") states the limits.

use std::collections::BTreeMap;
use std::time::Duration;

use cusim::backend::mem::services::{CacheSlot, Guard};
use cusim::backend::{
    CacheKey, CacheRead, CacheStamp, CacheWriteMode, CacheWriteOutcome, DeductOutcome, KeyClaim,
};
use cusim::model::{Env, FullCustomer, Scope};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisFuture, Script, Value};

/// What a real TTL adds to a virtual one (1 h of real time).
pub const GARBAGE_SLACK_MS: u64 = 60 * 60 * 1_000;
/// How long a command may take before the cache counts as gone (shorter
/// than the gated replay's patience with a statement, so a hung server is
/// reported as a failure, not as a statement that never answered).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnecting after the server went away: the first wait, and the
/// longest (the waits double in between).
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);
/// Attempts after the first before a command waiting for the connection
/// fails (the next command starts the attempts again): a request while
/// the server is gone is refused within a few tenths of a second.
const RECONNECT_RETRIES: usize = 2;
/// Lua numbers are doubles: times and counts must stay below 2^53.
const LUA_EXACT: u64 = 1 << 53;

/// A Redis command that failed: the server is gone, refused the
/// password, or answered what no script answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RedisError(pub String);

impl From<redis::RedisError> for RedisError {
    fn from(error: redis::RedisError) -> RedisError {
        RedisError(error.to_string())
    }
}

struct Scripts {
    read: Script,
    write: Script,
    invalidate: Script,
    deduct: Script,
    usage: Script,
    claim: Script,
}

impl Scripts {
    fn load() -> Scripts {
        Scripts {
            read: Script::new(include_str!("lua/read.lua")),
            write: Script::new(include_str!("lua/write.lua")),
            invalidate: Script::new(include_str!("lua/invalidate.lua")),
            deduct: Script::new(concat!(
                include_str!("lua/customer_live.lua"),
                include_str!("lua/deduct.lua")
            )),
            usage: Script::new(concat!(include_str!("lua/customer_live.lua"), include_str!("lua/usage.lua"))),
            claim: Script::new(include_str!("lua/claim.lua")),
        }
    }
}

/// How a cache reaches its server.
#[derive(Clone)]
enum Link {
    /// Reconnects by itself (with backoff) when the connection breaks, as
    /// after the server restarted: the commands sent while it is gone
    /// fail, and the cache serves again once it is back.
    Managed(ConnectionManager),
    /// One connection, never replaced: a connection the server closed
    /// stays closed ([`RedisCache::cut`], the `cache_down` fault).
    Fixed(MultiplexedConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Managed(conn) => conn.req_packed_command(cmd),
            Link::Fixed(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Managed(conn) => conn.req_packed_commands(pipeline, offset, count),
            Link::Fixed(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Managed(conn) => conn.get_db(),
            Link::Fixed(conn) => conn.get_db(),
        }
    }
}

/// One run's cache on a Redis server: a connection (shared by every
/// request, as one app instance shares its client) and a namespace.
#[derive(Clone)]
pub struct RedisCache {
    client: Client,
    conn: Link,
    namespace: String,
    scripts: std::rc::Rc<Scripts>,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

fn config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
}

/// `%` and `:` escaped, so the parts of a key cannot run into each other.
fn escape(part: &str) -> String {
    part.replace('%', "%25").replace(':', "%3A")
}

fn unescape(part: &str) -> String {
    part.replace("%3A", ":").replace("%25", "%")
}

fn env_of(text: &str) -> Option<Env> {
    [Env::Live, Env::Sandbox].into_iter().find(|e| e.as_str() == text)
}

fn exact(value: u64, what: &str) -> Result<String, RedisError> {
    if value >= LUA_EXACT {
        return Err(RedisError(format!(
            "{what} {value} is beyond what a Lua script compares exactly (2^53)"
        )));
    }
    Ok(value.to_string())
}

/// The real TTL of a value that expires at `expires_ms`, written at `now_ms`.
fn real_ttl_ms(expires_ms: u64, now_ms: u64) -> u64 {
    expires_ms.saturating_sub(now_ms).saturating_add(GARBAGE_SLACK_MS)
}

impl RedisCache {
    /// Connects to the server at `url` and checks that it answers (and
    /// takes the URL's password) before anything else runs. The
    /// connection comes back by itself after the server restarts.
    pub async fn connect(url: &str, namespace: &str) -> Result<RedisCache, RedisError> {
        let client = Client::open(url).map_err(|e| RedisError(format!("not a Redis URL: {e}")))?;
        let managed = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_min_delay(RECONNECT_MIN_DELAY)
            .set_max_delay(RECONNECT_MAX_DELAY)
            .set_number_of_retries(RECONNECT_RETRIES);
        let mut conn = ConnectionManager::new_with_config(client.clone(), managed).await.map_err(|e| {
            if e.kind() == redis::ErrorKind::AuthenticationFailed {
                RedisError(format!("the server refused the password: {e}"))
            } else {
                RedisError(format!("cannot connect: {e}"))
            }
        })?;
        let pong: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| RedisError(format!("the server does not answer PING: {e}")))?;
        if pong != "PONG" {
            return Err(RedisError(format!("the server answered PING with {pong:?}")));
        }
        Ok(RedisCache {
            client,
            conn: Link::Managed(conn),
            namespace: escape(namespace),
            scripts: std::rc::Rc::new(Scripts::load()),
        })
    }

    /// Whether the server answers `PING`.
    pub async fn ping(&self) -> Result<(), RedisError> {
        let pong: String = redis::cmd("PING").query_async(&mut self.conn.clone()).await?;
        if pong != "PONG" {
            return Err(RedisError(format!("the server answered PING with {pong:?}")));
        }
        Ok(())
    }

    /// The same cache, in another namespace.
    pub fn with_namespace(&self, namespace: &str) -> RedisCache {
        RedisCache { namespace: escape(namespace), ..self.clone() }
    }

    /// The same cache, reached through a connection the server has closed:
    /// every command on it fails as on a cache that is down. (`CLIENT
    /// KILL` needs a user that may run it: the default user may.)
    pub async fn cut(&self) -> Result<RedisCache, RedisError> {
        let mut conn = self.client.get_multiplexed_async_connection_with_config(&config()).await?;
        let id: i64 = redis::cmd("CLIENT").arg("ID").query_async(&mut conn).await?;
        let killed: i64 =
            redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id).query_async(&mut self.conn.clone()).await?;
        if killed != 1 {
            return Err(RedisError(format!("CLIENT KILL ID {id} closed {killed} connections")));
        }
        Ok(RedisCache { conn: Link::Fixed(conn), ..self.clone() })
    }

    fn key(&self, kind: &str, scope: &Scope, name: &str) -> String {
        format!("{}:{kind}:{}:{}:{}", self.namespace, escape(&scope.org_id), scope.env.as_str(), escape(name))
    }

    fn entry_key(&self, key: &CacheKey) -> String {
        self.key("full", &key.scope, &key.id)
    }

    fn count_key(&self, key: &CacheKey) -> String {
        self.key("count", &key.scope, &key.id)
    }

    fn guard_key(&self, key: &CacheKey) -> String {
        self.key("guard", &key.scope, &key.id)
    }

    fn claim_key_name(&self, scope: &Scope, key: &str) -> String {
        self.key("idem", scope, key)
    }

    /// The kind and the scope and name of one of this namespace's keys.
    fn parse_key<'k>(&self, key: &'k str) -> Option<(&'k str, Scope, String)> {
        let rest = key.strip_prefix(&self.namespace)?.strip_prefix(':')?;
        let mut parts = rest.split(':');
        let (kind, org, env, name) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some((kind, Scope { org_id: unescape(org), env: env_of(env)? }, unescape(name)))
    }

    /// A read at logical time `seq` and virtual time `now_ms`.
    pub async fn read(&self, key: &CacheKey, seq: u64, now_ms: u64) -> Result<CacheRead, RedisError> {
        let reply: Vec<String> = self
            .scripts
            .read
            .key(self.entry_key(key))
            .key(self.count_key(key))
            .arg(exact(now_ms, "the clock")?)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let epoch = number(reply.first().map(String::as_str), "the invalidation count")?;
        let entry = match reply.get(1) {
            None => None,
            Some(json) => Some(customer(json, &reply[2..])?),
        };
        Ok(CacheRead { entry, stamp: CacheStamp { seq, epoch, time_ms: now_ms } })
    }

    /// `CACHE_EXISTS` unless overwriting; `STALE_WRITE` when an
    /// invalidation came after the stamp's read.
    pub async fn write(
        &self,
        key: &CacheKey,
        value: &FullCustomer,
        stamp: CacheStamp,
        mode: CacheWriteMode,
        now_ms: u64,
    ) -> Result<CacheWriteOutcome, RedisError> {
        let expires_ms = now_ms.saturating_add(cusim::backend::mem::services::CACHE_TTL_MS);
        let json = serde_json::to_string(value).map_err(|e| RedisError(format!("cannot encode: {e}")))?;
        let mode_arg = match mode {
            CacheWriteMode::Overwrite => "overwrite",
            CacheWriteMode::SetIfAbsent => "set_if_absent",
            CacheWriteMode::Versioned => "versioned",
        };
        let mut invocation = self.scripts.write.prepare_invoke();
        invocation
            .key(self.entry_key(key))
            .key(self.count_key(key))
            .key(self.guard_key(key))
            .arg(mode_arg)
            .arg(exact(stamp.seq, "the read's seq")?)
            .arg(exact(stamp.epoch, "the read's invalidation count")?)
            .arg(exact(stamp.time_ms, "the read's time")?)
            .arg(exact(now_ms, "the clock")?)
            .arg(exact(expires_ms, "the entry's expiry")?)
            .arg(real_ttl_ms(expires_ms, now_ms))
            .arg(json)
            .arg(&value.customer.internal_id);
        for (feature, balance) in &value.balances {
            invocation.arg(format!("u:{feature}")).arg(balance.usage);
        }
        let answer: String = invocation.invoke_async(&mut self.conn.clone()).await?;
        match answer.as_str() {
            "OK" => Ok(CacheWriteOutcome::Written),
            "CACHE_EXISTS" => Ok(CacheWriteOutcome::Exists),
            "STALE_WRITE" => Ok(CacheWriteOutcome::Stale),
            other => Err(RedisError(format!("the write script answered {other:?}"))),
        }
    }

    /// Deletes the entry, counts the invalidation and sets the guard,
    /// stamped `at_ms` by the invalidating instance's clock.
    pub async fn invalidate(
        &self,
        key: &CacheKey,
        seq: u64,
        at_ms: u64,
        now_ms: u64,
    ) -> Result<(), RedisError> {
        let expires_ms = now_ms.saturating_add(cusim::backend::mem::services::GUARD_TTL_MS);
        let _count: i64 = self
            .scripts
            .invalidate
            .key(self.entry_key(key))
            .key(self.count_key(key))
            .key(self.guard_key(key))
            .arg(exact(seq, "the invalidation's seq")?)
            .arg(exact(at_ms, "the invalidating clock")?)
            .arg(exact(expires_ms, "the guard's expiry")?)
            .arg(real_ttl_ms(expires_ms, now_ms))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// `DEL` of the entry (an eviction): no invalidation is counted and no
    /// guard is set.
    pub async fn evict(&self, key: &CacheKey) -> Result<(), RedisError> {
        let _: i64 = redis::cmd("DEL").arg(self.entry_key(key)).query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Adds `value` to the cached usage of customer `internal_id`.
    pub async fn deduct(
        &self,
        key: &CacheKey,
        internal_id: &str,
        feature_id: &str,
        value: i64,
        now_ms: u64,
    ) -> Result<DeductOutcome, RedisError> {
        let usage: Option<i64> = self
            .scripts
            .deduct
            .key(self.entry_key(key))
            .arg(exact(now_ms, "the clock")?)
            .arg(internal_id)
            .arg(feature_id)
            .arg(value)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(usage.map_or(DeductOutcome::CacheMissing, |usage| DeductOutcome::Applied { usage }))
    }

    /// The cached usage of one feature of customer `internal_id`.
    pub async fn usage(
        &self,
        key: &CacheKey,
        internal_id: &str,
        feature_id: &str,
        now_ms: u64,
    ) -> Result<Option<i64>, RedisError> {
        Ok(self
            .scripts
            .usage
            .key(self.entry_key(key))
            .arg(exact(now_ms, "the clock")?)
            .arg(internal_id)
            .arg(feature_id)
            .invoke_async(&mut self.conn.clone())
            .await?)
    }

    /// Claims idempotency key `key` unless a live claim holds it.
    pub async fn claim_key(&self, scope: &Scope, key: &str, now_ms: u64) -> Result<KeyClaim, RedisError> {
        let expires_ms = now_ms.saturating_add(cusim::backend::mem::services::IDEMPOTENCY_KEY_TTL_MS);
        let answer: String = self
            .scripts
            .claim
            .key(self.claim_key_name(scope, key))
            .arg(exact(now_ms, "the clock")?)
            .arg(exact(expires_ms, "the claim's expiry")?)
            .arg(real_ttl_ms(expires_ms, now_ms))
            .invoke_async(&mut self.conn.clone())
            .await?;
        match answer.as_str() {
            "CLAIMED" => Ok(KeyClaim::Claimed),
            "TAKEN" => Ok(KeyClaim::Taken),
            other => Err(RedisError(format!("the claim script answered {other:?}"))),
        }
    }

    /// `DEL` of a claimed idempotency key.
    pub async fn release_key(&self, scope: &Scope, key: &str) -> Result<(), RedisError> {
        let _: i64 = redis::cmd("DEL")
            .arg(self.claim_key_name(scope, key))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Every key of this namespace.
    async fn keys(&self) -> Result<Vec<String>, RedisError> {
        let mut conn = self.conn.clone();
        // The namespace as a glob: its own `\\`, `[`, `*` and `?` escaped.
        let mut glob = String::new();
        for c in self.namespace.chars() {
            if matches!(c, '\\' | '[' | ']' | '*' | '?') {
                glob.push('\\');
            }
            glob.push(c);
        }
        let pattern = format!("{glob}:*");
        let mut cursor = 0u64;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// The cache as the model keeps it, at virtual time `now_ms`: each
    /// slot's live entry, invalidation count and live guard (slots with
    /// none of these left out), and the live idempotency claims.
    pub async fn snapshot(&self, now_ms: u64) -> Result<CacheSnapshot, RedisError> {
        let mut snapshot = CacheSnapshot::default();
        let mut conn = self.conn.clone();
        for name in self.keys().await? {
            let Some((kind, scope, id)) = self.parse_key(&name) else {
                return Err(RedisError(format!("{name:?} is not a key this cache writes")));
            };
            let key = CacheKey { scope: scope.clone(), id: id.clone() };
            match kind {
                "full" => {
                    if let Some(entry) = self.read(&key, 0, now_ms).await?.entry {
                        snapshot.slots.entry(key).or_default().entry = Some(entry);
                    }
                }
                "count" => {
                    let count: Option<String> = redis::cmd("GET").arg(&name).query_async(&mut conn).await?;
                    snapshot.slots.entry(key).or_default().epoch = number(count.as_deref(), "a count")?;
                }
                "guard" => {
                    let guard: Option<String> = redis::cmd("GET").arg(&name).query_async(&mut conn).await?;
                    let Some(text) = guard else { continue };
                    let guard = parse_guard(&text)
                        .ok_or_else(|| RedisError(format!("{name:?} holds {text:?}, not a guard")))?;
                    if now_ms < guard.expires_at_ms {
                        snapshot.slots.entry(key).or_default().guard = Some(guard);
                    }
                }
                "idem" => {
                    let expires: Option<String> = redis::cmd("GET").arg(&name).query_async(&mut conn).await?;
                    let expires = number(expires.as_deref(), "a claim's expiry")?;
                    if now_ms < expires {
                        snapshot.claims.insert((scope, id), expires);
                    }
                }
                _ => return Err(RedisError(format!("{name:?} is not a key this cache writes"))),
            }
        }
        snapshot.slots.retain(|_, s| !s.is_empty());
        Ok(snapshot)
    }

    /// Deletes every key of this namespace.
    pub async fn clear(&self) -> Result<(), RedisError> {
        let keys = self.keys().await?;
        for batch in keys.chunks(500) {
            let _: i64 = redis::cmd("DEL").arg(batch).query_async(&mut self.conn.clone()).await?;
        }
        Ok(())
    }
}

fn number(text: Option<&str>, what: &str) -> Result<u64, RedisError> {
    match text {
        None => Ok(0),
        Some(text) => text.parse().map_err(|_| RedisError(format!("{what} is {text:?}, not a count"))),
    }
}

fn parse_guard(text: &str) -> Option<Guard> {
    let mut parts = text.split(':').map(str::parse::<u64>);
    let guard = Guard {
        seq: parts.next()?.ok()?,
        set_at_ms: parts.next()?.ok()?,
        expires_at_ms: parts.next()?.ok()?,
    };
    parts.next().is_none().then_some(guard)
}

/// The customer of a read's reply: its JSON, then `u:{feature}`, usage pairs.
fn customer(json: &str, usage: &[String]) -> Result<FullCustomer, RedisError> {
    let mut full: FullCustomer = serde_json::from_str(json)
        .map_err(|e| RedisError(format!("a cached customer does not decode: {e}")))?;
    for pair in usage.chunks(2) {
        let [field, value] = pair else {
            return Err(RedisError("the read script answered an odd list".into()));
        };
        let feature = field.strip_prefix("u:").unwrap_or(field);
        let value: i64 = value.parse().map_err(|_| RedisError(format!("usage of {feature} is {value:?}")))?;
        full.balances.entry(feature.to_owned()).or_default().usage = value;
    }
    Ok(full)
}

/// The cache's state as the model keeps it (see [`RedisCache::snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheSnapshot {
    pub slots: BTreeMap<CacheKey, SlotState>,
    /// Live idempotency claims: when each expires.
    pub claims: BTreeMap<(Scope, String), u64>,
}

/// One slot: its live entry, its invalidation count, its live guard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotState {
    pub entry: Option<FullCustomer>,
    pub epoch: u64,
    pub guard: Option<Guard>,
}

impl SlotState {
    fn is_empty(&self) -> bool {
        self.entry.is_none() && self.epoch == 0 && self.guard.is_none()
    }

    /// The model's slot, as a snapshot at `now_ms` sees it.
    pub fn of(slot: &CacheSlot, now_ms: u64) -> SlotState {
        SlotState {
            entry: slot.live(now_ms).cloned(),
            epoch: slot.epoch,
            guard: slot.guard.filter(|g| now_ms < g.expires_at_ms),
        }
    }
}

impl CacheSnapshot {
    /// The live entries, by key.
    pub fn into_entries(self) -> Vec<(CacheKey, FullCustomer)> {
        self.slots.into_iter().filter_map(|(key, slot)| slot.entry.map(|entry| (key, entry))).collect()
    }

    /// The in-memory model's cache, as a snapshot at `now_ms` sees it.
    pub fn of(cache: &cusim::backend::mem::Cache, now_ms: u64) -> CacheSnapshot {
        let mut slots: BTreeMap<CacheKey, SlotState> =
            cache.slots().map(|(key, slot)| (key.clone(), SlotState::of(slot, now_ms))).collect();
        slots.retain(|_, s| !s.is_empty());
        let claims =
            cache.claims().filter(|(_, expires)| now_ms < **expires).map(|(k, e)| (k.clone(), *e)).collect();
        CacheSnapshot { slots, claims }
    }
}
