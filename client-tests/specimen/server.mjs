// A second server in another stack, for `cusim drive` to find races in:
// the `legacy` create flow of SPEC §4 (look up by id, then by email, a
// plain INSERT, then the defaults one at a time, then the cache written
// after checking it), with check and track reading the customer through
// the cache and creating it when missing, over postgres.js (the extended
// protocol, as production TypeScript servers use it) and ioredis. It
// speaks generation 2026-01 of the API (docs/API.md): `POST /v1/customers`,
// `GET /v1/customers/{id}`, `POST /v1/check`, `POST /v1/track`, up to
// x-api-version 2.0.0. A specimen for tests only: its races are kept on
// purpose.
//
//   node specimen/server.mjs --listen 127.0.0.1:3200 --key am_sk_test_x \
//        --catalog ../fixtures/scenarios/r1-same-id-create.json --schema specimen
//
// With --after-create-job, each create that inserts a customer leaves a
// query running after its answer (the server's own work).
//
// DATABASE_URL and REDIS_URL name the stores. The first line on stdout is
// `listening on http://ADDR`.

import http from 'node:http';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import Redis from 'ioredis';

function arg(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  if (at >= 0 && at + 1 < process.argv.length) return process.argv[at + 1];
  if (fallback !== undefined) return fallback;
  console.error(`error: --${name} is required`);
  process.exit(2);
}

const listen = arg('listen', '127.0.0.1:3200');
const secretKey = arg('key');
const schema = arg('schema', 'specimen');
const afterCreateJob = process.argv.includes('--after-create-job');
const catalog = JSON.parse(readFileSync(arg('catalog'), 'utf8'));
const ORG = 'org_1';
const ENV = secretKey.startsWith('am_sk_test_') ? 'sandbox' : 'live';
if (!/^[a-z_][a-z0-9_]*$/.test(schema)) {
  console.error(`error: --schema ${schema}: lower-case letters, digits and _`);
  process.exit(2);
}
if (!process.env.DATABASE_URL || !process.env.REDIS_URL) {
  console.error('error: DATABASE_URL and REDIS_URL must name the stores');
  process.exit(2);
}

// The defaults a new customer gets: per group, its first default product
// (a paid one only when the catalog forces it).
const products = catalog.products ?? [];
const defaults = [];
for (const product of products) {
  const allowed = product.is_default && (product.kind !== 'paid' || catalog.force_paid_default);
  if (allowed && !defaults.some((d) => d.group === product.group)) defaults.push(product);
}
const features = new Set(products.flatMap((p) => Object.keys(p.features ?? {})));

// Type fetching off: a connection's first statements are then the
// server's own, whenever the pool opens it.
const sql = postgres(process.env.DATABASE_URL, {
  max: 4,
  fetch_types: false,
  onnotice: () => {},
  connection: { search_path: schema, application_name: 'cusim-specimen' },
});
const redis = new Redis(process.env.REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });

async function migrate() {
  await sql.unsafe(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
  await sql.unsafe(`
    CREATE TABLE IF NOT EXISTS ${schema}.customers (
      internal_id text PRIMARY KEY, org_id text NOT NULL, env text NOT NULL, id text,
      name text, email text, created_at bigint NOT NULL, seq bigserial,
      UNIQUE (org_id, env, id));
    CREATE TABLE IF NOT EXISTS ${schema}.customer_products (
      id text PRIMARY KEY, internal_customer_id text NOT NULL, product_id text NOT NULL,
      "group" text NOT NULL, status text NOT NULL, created_at bigint NOT NULL);
    CREATE TABLE IF NOT EXISTS ${schema}.balances (
      internal_customer_id text NOT NULL, feature_id text NOT NULL, usage bigint NOT NULL,
      PRIMARY KEY (internal_customer_id, feature_id));`);
}

const newId = (prefix) => `${prefix}_${randomBytes(6).toString('hex')}`;
const cacheKey = (id) => `${schema}:full:${ORG}:${ENV}:${id}`;

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The customer with its products and balances, as the API shows it. */
async function readFull(internalId) {
  const [customer] = await sql`SELECT * FROM customers WHERE internal_id = ${internalId}`;
  if (!customer) return null;
  const attached = await sql`
    SELECT product_id, status, created_at FROM customer_products
    WHERE internal_customer_id = ${internalId} ORDER BY "group", product_id`;
  const usage = await sql`SELECT feature_id, usage FROM balances WHERE internal_customer_id = ${internalId}`;
  return { customer, attached: [...attached], usage: Object.fromEntries(usage.map((u) => [u.feature_id, Number(u.usage)])) };
}

function shown(full, withAutumnId) {
  const { customer, attached, usage } = full;
  const balances = {};
  for (const row of attached) {
    const product = products.find((p) => p.id === row.product_id);
    for (const [feature, granted] of Object.entries(product?.features ?? {})) {
      const used = usage[feature] ?? 0;
      const balance = balances[feature] ?? { feature_id: feature, granted: 0, remaining: 0, usage: used };
      balance.granted += granted;
      balance.remaining = balance.granted - used;
      Object.assign(balance, { unlimited: false, overage_allowed: false, max_purchase: null, next_reset_at: null });
      balances[feature] = balance;
    }
  }
  const body = {
    id: customer.id,
    name: customer.name,
    email: customer.email,
    created_at: Number(customer.created_at),
    fingerprint: null,
    stripe_id: null,
    env: customer.env,
    metadata: {},
    send_email_receipts: false,
    billing_controls: {},
    subscriptions: attached.map((a) => ({
      plan_id: a.product_id,
      status: a.status,
      started_at: Number(a.created_at),
      auto_enable: true,
      add_on: false,
      canceled_at: null,
      expires_at: null,
      trial_ends_at: null,
      current_period_start: null,
      current_period_end: null,
      quantity: 1,
    })),
    purchases: [],
    licenses: [],
    balances,
    flags: {},
  };
  if (withAutumnId) body.autumn_id = customer.internal_id;
  return body;
}

/** Legacy's cache write: check the key, then set it. */
async function cacheCustomer(id, full) {
  const cached = await redis.get(cacheKey(id));
  if (cached === null) await redis.set(cacheKey(id), JSON.stringify(full), 'EX', 3 * 24 * 3600);
}

class Duplicate extends Error {}

/** Legacy's create (SPEC §4): every window of SPEC §8 left open. */
async function create(id, data) {
  if (id !== null) {
    const [row] = await sql`SELECT * FROM customers WHERE org_id = ${ORG} AND env = ${ENV} AND id = ${id}`;
    if (row) return readFull(row.internal_id);
    if (data.email) {
      const rows = await sql`
        SELECT * FROM customers WHERE org_id = ${ORG} AND env = ${ENV} AND id IS NULL
        AND lower(email) = lower(${data.email}) ORDER BY seq`;
      if (rows.length === 1) {
        await sql`UPDATE customers SET id = ${id} WHERE internal_id = ${rows[0].internal_id}`;
        return readFull(rows[0].internal_id);
      }
    }
  } else {
    if (!data.email) throw new ApiError(400, 'invalid_request', 'Either customer ID or email is required');
    // No unique index guards id-less emails (R4).
    const [row] = await sql`
      SELECT * FROM customers WHERE org_id = ${ORG} AND env = ${ENV} AND id IS NULL
      AND lower(email) = lower(${data.email}) ORDER BY seq LIMIT 1`;
    if (row) return readFull(row.internal_id);
  }
  const internalId = newId('cus');
  const now = Date.now();
  try {
    await sql`
      INSERT INTO customers (internal_id, org_id, env, id, name, email, created_at)
      VALUES (${internalId}, ${ORG}, ${ENV}, ${id}, ${data.name ?? null}, ${data.email ?? null}, ${now})`;
  } catch (error) {
    if (error.code === '23505') throw new Duplicate(error.message);
    throw error;
  }
  // Until the defaults are attached, others see the customer without them (R2).
  for (const product of defaults) {
    await sql`
      INSERT INTO customer_products (id, internal_customer_id, product_id, "group", status, created_at)
      VALUES (${newId('cus_prod')}, ${internalId}, ${product.id}, ${product.group}, 'active', ${now})`;
  }
  const full = await readFull(internalId);
  if (id !== null) await cacheCustomer(id, full);
  // With --after-create-job, work the server goes on with on its own
  // after the answer, as servers queue jobs after a create.
  if (afterCreateJob) {
    sql`SELECT count(*) FROM customer_products WHERE internal_customer_id = ${internalId}`.catch(() => {});
  }
  return full;
}

/** Check's and track's path: the cache, else the DB, else create. */
async function getOrCreate(id, data) {
  const cached = await redis.get(cacheKey(id));
  if (cached !== null) return JSON.parse(cached);
  const [row] = await sql`SELECT internal_id FROM customers WHERE org_id = ${ORG} AND env = ${ENV} AND id = ${id}`;
  let full = row ? await readFull(row.internal_id) : null;
  if (!full) {
    try {
      full = await create(id, data);
    } catch (error) {
      if (!(error instanceof Duplicate)) throw error;
      const [again] = await sql`SELECT internal_id FROM customers WHERE org_id = ${ORG} AND env = ${ENV} AND id = ${id}`;
      full = await readFull(again.internal_id);
    }
  }
  await cacheCustomer(id, full);
  return full;
}

function version(req) {
  const raw = req.headers['x-api-version'] ?? '2.0.0';
  const parts = /^(\d+)\.(\d+)(?:\.(\d+))?$/.exec(raw);
  const known = parts && (Number(parts[1]) < 2 || (Number(parts[1]) === 2 && Number(parts[2]) === 0));
  if (!known) throw new ApiError(400, 'invalid_api_version', `"${raw}" is not a valid API version`);
}

function authenticate(req) {
  const header = req.headers.authorization;
  if (!header) throw new ApiError(401, 'no_secret_key', 'Secret key not found in Authorization header');
  const token = header.replace(/^Bearer /, '');
  if (!token.startsWith('am_sk')) throw new ApiError(401, 'invalid_request', 'Invalid authorization token prefix');
  if (token !== secretKey) throw new ApiError(401, 'invalid_secret_key', `Invalid secret key: ${token.slice(0, 15)}***`);
}

function field(body, name) {
  const value = body[name];
  if (value !== undefined && value !== null && typeof value !== 'string') {
    throw new ApiError(400, 'invalid_inputs', `${name}: expected a string`);
  }
  return value ?? null;
}

async function route(req, url, body) {
  const withAutumnId = url.searchParams.get('with_autumn_id') === 'true';
  const byId = /^\/v1\/customers\/([^/]+)$/.exec(url.pathname);
  if (req.method === 'GET' && byId) {
    const id = decodeURIComponent(byId[1]);
    const cached = await redis.get(cacheKey(id));
    let full = cached === null ? null : JSON.parse(cached);
    if (!full) {
      const [row] = await sql`SELECT internal_id FROM customers WHERE org_id = ${ORG} AND env = ${ENV} AND id = ${id}`;
      if (!row) throw new ApiError(404, 'customer_not_found', `Customer ${id} not found`);
      full = await readFull(row.internal_id);
      await cacheCustomer(id, full);
    }
    return shown(full, withAutumnId);
  }
  if (req.method !== 'POST') return null;
  if (url.pathname === '/v1/customers') {
    if (!('id' in body)) throw new ApiError(400, 'invalid_inputs', 'id: required (null for a customer without one)');
    const data = { name: field(body, 'name'), email: field(body, 'email') };
    try {
      return shown(await create(field(body, 'id'), data), withAutumnId);
    } catch (error) {
      if (error instanceof Duplicate) throw new ApiError(500, 'internal_error', `23505 unique violation: ${error.message}`);
      throw error;
    }
  }
  if (url.pathname === '/v1/check' || url.pathname === '/v1/track') {
    const id = field(body, 'customer_id');
    const feature = field(body, 'feature_id');
    if (!id) throw new ApiError(400, 'invalid_inputs', 'customer_id: required');
    if (!features.has(feature)) throw new ApiError(404, 'feature_not_found', `Feature ${feature} not found`);
    const data = body.customer_data ?? {};
    const full = await getOrCreate(id, { name: field(data, 'name'), email: field(data, 'email') });
    const shownFull = shown(full, false);
    const balance = shownFull.balances[feature] ?? null;
    if (url.pathname === '/v1/check') {
      const required = Number(body.required_balance ?? 1);
      return { allowed: balance !== null && balance.remaining >= required, customer_id: id, balance, flag: null };
    }
    const value = Number(body.value ?? 1);
    await sql`
      INSERT INTO balances (internal_customer_id, feature_id, usage)
      VALUES (${full.customer.internal_id}, ${feature}, ${value})
      ON CONFLICT (internal_customer_id, feature_id) DO UPDATE SET usage = balances.usage + ${value}`;
    await redis.del(cacheKey(id));
    return { customer_id: id, value, balance };
  }
  return null;
}

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', async () => {
    const url = new URL(req.url, 'http://specimen');
    try {
      authenticate(req);
      version(req);
      let body = {};
      if (req.method === 'POST') {
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
        } catch {
          throw new ApiError(400, 'invalid_inputs', 'the body is not JSON');
        }
        if (body === null || typeof body !== 'object' || Array.isArray(body)) {
          throw new ApiError(400, 'invalid_inputs', 'the body is not a JSON object');
        }
      }
      const answer = await route(req, url, body);
      if (answer === null) send(res, 404, { code: 'not_found', message: `No route ${req.method} ${url.pathname}`, env: ENV });
      else send(res, 200, answer);
    } catch (error) {
      if (error instanceof ApiError) send(res, error.status, { code: error.code, message: error.message, env: ENV });
      else send(res, 500, { code: 'internal_error', message: String(error.message ?? error), env: ENV });
    }
  });
});

await migrate();
await redis.connect();
// Every connection of the pool opened now, before anything is held.
await Promise.all([0, 1, 2, 3].map(() => sql`SELECT pg_sleep(0.05)`));
const [host, port] = listen.split(':');
server.listen(Number(port), host, () => {
  const address = server.address();
  console.log(`listening on http://${address.address}:${address.port}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close();
    Promise.allSettled([sql.end({ timeout: 1 }), redis.quit()]).then(() => process.exit(0));
  });
}
