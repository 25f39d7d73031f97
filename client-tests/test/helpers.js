// Shared machinery of the client tests: start `cusim serve`, build autumn-js
// clients against it, read errors, and run race rounds.
//
// Every call goes through the real client, autumn-js 1.3.13, unmodified. Where
// a case needs the internal id (`autumn_id`), `probe` builds a client whose
// HTTP layer (the client's own `HTTPClient` option) adds `with_autumn_id: true`
// to the body and keeps the raw answer; the client still validates the answer
// with its own schemas.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { Autumn, AutumnDefaultError, HTTPClient } from 'autumn-js';

import { policyFor } from './races.js';

export { assert };

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PACKAGE_ROOT = path.resolve(HERE, '..');
const REPO_ROOT = path.resolve(PACKAGE_ROOT, '..');

export const STRATEGIES = ['legacy', 'transactional', 'safe'];
/** A sandbox key (`am_sk_test_…`), mapped to `ORG` on every server start. */
export const KEY = 'am_sk_test_cusim_client_tests';
export const ORG = 'org_1';
export const API_VERSION = '2.4.0';
/** Below 2.1.0: check and track auto-create a missing customer. */
export const AUTO_CREATE_VERSION = '2.0.0';

/** Rounds a race case runs (a racing strategy stops at the first round that shows its race). */
export const ROUNDS = positiveInt('CUSIM_ROUNDS', 10);
/** `--pace` of the servers the race cases use: every store operation is held this long. */
export const PACE_MS = positiveInt('CUSIM_PACE_MS', 20);
const START_TIMEOUT_MS = positiveInt('CUSIM_START_TIMEOUT_MS', 30_000);
const STOP_TIMEOUT_MS = positiveInt('CUSIM_STOP_TIMEOUT_MS', 15_000);
const STDERR_KEEP_CHARS = 1 << 20;
const STDERR_SHOW_CHARS = 8_000;

function positiveInt(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  }
  return value;
}

/** The server binary: `CUSIM_BIN`, absolute, or relative to the working directory or the repository root. */
export const CUSIM_BIN = resolveBin();

function resolveBin() {
  const raw = process.env.CUSIM_BIN;
  if (!raw) {
    throw new Error(
      'CUSIM_BIN is not set: point it at the cusim binary, e.g. `CUSIM_BIN=target/debug/cusim npm test` ' +
        '(relative paths are tried from the working directory, then from the repository root)',
    );
  }
  if (path.isAbsolute(raw)) return raw;
  for (const base of [process.cwd(), REPO_ROOT]) {
    const candidate = path.resolve(base, raw);
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`CUSIM_BIN=${raw}: no such file from ${process.cwd()} or from ${REPO_ROOT}`);
}

/**
 * The backends every strategy runs on: in memory always; Postgres + Redis too
 * when DATABASE_URL and REDIS_URL are both set (integration mode).
 */
export function backends() {
  const list = [{ name: 'memory' }];
  const databaseUrl = process.env.DATABASE_URL;
  const redisUrl = process.env.REDIS_URL;
  if (databaseUrl && redisUrl) list.push({ name: 'postgres+redis', databaseUrl, redisUrl });
  return list;
}

export function catalogPath(name) {
  const file = path.join(PACKAGE_ROOT, 'catalogs', name);
  if (!existsSync(file)) throw new Error(`no catalog ${file}`);
  return file;
}

let serverCounter = 0;

/** One `cusim serve` process. */
export class Server {
  constructor({ strategy, backend, catalog, paceMs }) {
    this.strategy = strategy;
    this.backend = backend;
    this.catalog = catalog;
    this.paceMs = paceMs ?? 0;
    this.url = null;
    this.child = null;
    this.stderrText = ''; // the last STDERR_KEEP_CHARS characters
    this.stderrTotal = 0; // characters received in all
    this.exit = null; // {code, signal} once exited
    this.signalsSent = []; // what the tests sent it, when
    this.exited = null; // promise of the exit
    this.args = null;
  }

  get label() {
    const pace = this.paceMs ? `, pace ${this.paceMs} ms` : '';
    return `${this.strategy} on ${this.backend.name}, catalog ${this.catalog}${pace}`;
  }

  async start() {
    serverCounter += 1;
    const args = [
      'serve',
      '--strategy', this.strategy,
      '--listen', '127.0.0.1:0',
      '--catalog', catalogPath(this.catalog),
      '--key', `${KEY}=${ORG}`,
    ];
    if (this.paceMs) args.push('--pace', String(this.paceMs));
    if (this.backend.databaseUrl) {
      const schema = `cs_${this.strategy}_${serverCounter}_${process.pid}`;
      args.push('--database-url', this.backend.databaseUrl, '--redis-url', this.backend.redisUrl, '--schema', schema);
    }
    this.args = args;
    const child = spawn(CUSIM_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      this.stderrText += chunk;
      this.stderrTotal += chunk.length;
      if (this.stderrText.length > STDERR_KEEP_CHARS) {
        this.stderrText = this.stderrText.slice(-STDERR_KEEP_CHARS);
      }
    });
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
    const spawnError = new Promise((_, reject) => child.on('error', reject));

    const firstLine = new Promise((resolve, reject) => {
      let buffered = '';
      let done = false;
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (chunk) => {
        if (done) return; // later lines are drained and dropped
        buffered += chunk;
        const newline = buffered.indexOf('\n');
        if (newline >= 0) {
          done = true;
          resolve(buffered.slice(0, newline).replace(/\r$/, ''));
        }
      });
      child.stdout.on('end', () => {
        if (!done) reject(new Error(`stdout closed before a first line (got ${JSON.stringify(buffered)})`));
      });
    });
    const early = this.exited.then((exit) => {
      throw new Error(`exited before listening (code ${exit.code}, signal ${exit.signal})`);
    });
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no first stdout line within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
    });
    try {
      const line = await Promise.race([firstLine, early, timeout, spawnError]);
      const match = /^listening on (http:\/\/127\.0\.0\.1:(\d+))$/.exec(line);
      if (!match) {
        throw new Error(`first stdout line is ${JSON.stringify(line)}, not "listening on http://127.0.0.1:<port>"`);
      }
      this.url = match[1];
    } catch (err) {
      await this.stop({ quiet: true }).catch(() => {});
      throw new Error(`cusim serve (${this.label}) did not start: ${err.message}\n${this.diagnosis()}`);
    } finally {
      clearTimeout(timer);
      early.catch(() => {});
      spawnError.catch(() => {});
    }
  }

  /** SIGTERM, then await the exit (the server finishes in-flight requests first). */
  async stop({ quiet = false } = {}) {
    if (!this.child || this.exit) return this.exit;
    this.signalsSent.push(`SIGTERM at ${new Date().toISOString()}`);
    this.child.kill('SIGTERM');
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(() => resolve(null), STOP_TIMEOUT_MS);
    });
    const exit = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (exit === null) {
      this.signalsSent.push(`SIGKILL at ${new Date().toISOString()}`);
      this.child.kill('SIGKILL');
      await this.exited;
      throw new Error(`cusim serve (${this.label}) did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM\n${this.diagnosis()}`);
    }
    if (!quiet && exit.code !== 0 && exit.signal !== 'SIGTERM') {
      process.stderr.write(
        `note: cusim serve (${this.label}) exited with code ${exit.code}, signal ${exit.signal} after SIGTERM\n${this.stderrTail()}\n`,
      );
    }
    return exit;
  }

  /** What the server wrote to stderr since `fromTotal` (a value of `stderrTotal`), its last part if long. */
  stderrTail(fromTotal = 0) {
    const dropped = this.stderrTotal - this.stderrText.length;
    let text = this.stderrText.slice(Math.max(0, fromTotal - dropped));
    if (text.length > STDERR_SHOW_CHARS) text = `…${text.slice(-STDERR_SHOW_CHARS)}`;
    return text;
  }

  diagnosis(fromOffset = 0) {
    const lines = [`server: ${CUSIM_BIN} ${(this.args ?? []).join(' ')}`];
    if (this.exit) lines.push(`server exited: code ${this.exit.code}, signal ${this.exit.signal}`);
    lines.push(`signals sent by the tests: ${this.signalsSent.length ? this.signalsSent.join(', ') : 'none'}`);
    const tail = this.stderrTail(fromOffset);
    lines.push(tail ? `server stderr:\n${tail}` : 'server stderr: (empty)');
    return lines.join('\n');
  }
}

/**
 * A describe block with one server (strategy, backend, catalog, pace) started
 * before its tests and stopped after them. `body(s)` declares the tests with
 * `s.test(name, fn)`; `fn(s, t)` runs with `s.server` started. A failing test
 * gets the server's stderr (what it wrote during the test) in its message.
 */
export function withServer({ strategy, backend, catalog, paceMs = 0 }, body) {
  const server = new Server({ strategy, backend, catalog, paceMs });
  const scope = {
    server,
    strategy,
    backend,
    get url() {
      return server.url;
    },
    test(name, fn) {
      test(name, async (t) => {
        if (!server.url) throw new Error(`server (${server.label}) is not running`);
        const offset = server.stderrTotal;
        try {
          await fn(scope, t);
        } catch (err) {
          if (err && typeof err === 'object' && typeof err.message === 'string') {
            try {
              err.message += `\n--- ${server.label}\n${server.diagnosis(offset)}`;
            } catch {
              // a read-only message: leave it
            }
          }
          throw err;
        }
        if (server.exit) {
          throw new Error(`server exited during the test\n${server.diagnosis(offset)}`);
        }
      });
    },
  };
  describe(server.label, () => {
    before(() => server.start());
    after(() => server.stop());
    body(scope);
  });
}

/** For every backend and strategy: `withServer` of that pair. */
export function forEachServer({ catalog, paceMs = 0, strategies = STRATEGIES }, body) {
  for (const backend of backends()) {
    for (const strategy of strategies) {
      withServer({ strategy, backend, catalog, paceMs }, body);
    }
  }
}

// ─── clients ────────────────────────────────────────────────────────────────

/** The real client, fail-open off (a 5xx on check/track must not pass as success). */
export function client(url, { version = API_VERSION, httpClient } = {}) {
  return new Autumn({
    serverURL: url,
    secretKey: KEY,
    failOpen: false,
    xApiVersion: version,
    ...(httpClient ? { httpClient } : {}),
  });
}

/**
 * Runs `call(client)` on a fresh client whose requests carry
 * `with_autumn_id: true`; returns `{ value, autumnId, raw }`, `value` being
 * what the client returned (validated by its schemas) and `autumnId` the
 * internal id of the raw answer. A rejection of `call` is passed on.
 */
export async function probe(url, call, { version = API_VERSION } = {}) {
  let raw = null;
  const httpClient = new HTTPClient({
    fetcher: async (request) => {
      const text = await request.text();
      const body = text ? JSON.parse(text) : {};
      body.with_autumn_id = true;
      const response = await fetch(request.url, {
        method: request.method,
        headers: request.headers,
        body: JSON.stringify(body),
        signal: request.signal,
      });
      raw = { status: response.status, text: await response.clone().text() };
      return response;
    },
  });
  const value = await call(client(url, { version, httpClient }));
  let parsed;
  try {
    parsed = JSON.parse(raw.text);
  } catch {
    throw new Error(`answer is not JSON: ${raw.text}`);
  }
  if (typeof parsed.autumn_id !== 'string' || parsed.autumn_id === '') {
    throw new Error(`with_autumn_id: true was sent, but the answer has no autumn_id: ${raw.text}`);
  }
  return { value, autumnId: parsed.autumn_id, raw: parsed };
}

/** `customers.getOrCreate` with the internal id: `{ customer, autumnId }`. */
export async function createWithId(url, params) {
  const { value, autumnId } = await probe(url, (c) => c.customers.getOrCreate(params));
  return { customer: value, autumnId };
}

/** `customers.get` with the internal id: `{ customer, autumnId }`. */
export async function getWithId(url, customerId) {
  const { value, autumnId } = await probe(url, (c) => c.customers.get({ customerId }));
  return { customer: value, autumnId };
}

// ─── errors ─────────────────────────────────────────────────────────────────

/**
 * The API error in `err` (`AutumnDefaultError`): `{ status, code, message, body }`,
 * or null when `err` is something else (a validation error of the client, a
 * network error).
 */
export function apiError(err) {
  if (!(err instanceof AutumnDefaultError)) return null;
  let body = null;
  try {
    body = JSON.parse(err.body);
  } catch {
    // not JSON
  }
  return { status: err.statusCode, code: body?.code, message: body?.message, body: err.body };
}

/**
 * Whether a track answered with HTTP `status` (`null`: no answer, a lost
 * connection or a timeout) may have applied, as docs/SPEC.md §6 defines it
 * from outside: answered 2xx or 5xx, or not at all; a 4xx refused it.
 */
export function statusMayHaveApplied(status) {
  return status === null || status < 400 || status >= 500;
}

/** Whether a track that settled as `result` may have applied (see above). */
export function mayHaveApplied(result) {
  if (result.ok) return true;
  const info = apiError(result.error);
  return statusMayHaveApplied(info ? info.status : null);
}

/** Awaits `promise`, which must reject with an API error; returns it. */
export async function expectApiError(promise) {
  let value;
  try {
    value = await promise;
  } catch (err) {
    const info = apiError(err);
    if (!info) throw err;
    return info;
  }
  assert.fail(`expected an API error, got success: ${JSON.stringify(value)}`);
}

export function isInternalError(err) {
  const info = apiError(err);
  return info !== null && info.status === 500 && info.code === 'internal_error';
}

/** Describes any error for a failure message. */
export function describeError(err) {
  const info = apiError(err);
  if (info) return `HTTP ${info.status} ${info.body}`;
  return err && err.stack ? err.stack : String(err);
}

// ─── customers ──────────────────────────────────────────────────────────────

let idCounter = 0;
const RUN_TAG = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;

/** A fresh customer id (valid: letters, digits, `_`, `-`). */
export function freshId(prefix) {
  idCounter += 1;
  return `${prefix}_${RUN_TAG}_${idCounter}`;
}

export function emailOf(id) {
  return `${id.toLowerCase().replace(/_/g, '-')}@example.com`;
}

/** The plan ids of a customer's subscriptions (attached products). */
export function planIds(customer) {
  return customer.subscriptions.map((s) => s.planId).sort();
}

export function subscription(customer, planId) {
  return customer.subscriptions.find((s) => s.planId === planId);
}

/**
 * What is wrong with a customer's defaults, or null: `expected` maps each
 * default plan id to its status ('active' | 'trialing'); `balances` maps a
 * feature id to its granted amount. Returns `{ kind: 'missing' | 'duplicate'
 * | 'unexpected' | 'status' | 'balance', detail }`.
 */
export function defaultsProblem(customer, { plans, balances = {} }) {
  const counts = new Map();
  for (const s of customer.subscriptions) counts.set(s.planId, (counts.get(s.planId) ?? 0) + 1);
  for (const planId of Object.keys(plans)) {
    if (!counts.has(planId)) {
      return { kind: 'missing', detail: `no subscription to ${planId} (has ${JSON.stringify(planIds(customer))})` };
    }
    if (counts.get(planId) > 1) {
      return { kind: 'duplicate', detail: `${counts.get(planId)} subscriptions to ${planId}` };
    }
  }
  for (const planId of counts.keys()) {
    if (!(planId in plans)) {
      return { kind: 'unexpected', detail: `unexpected subscription to ${planId} (has ${JSON.stringify(planIds(customer))})` };
    }
  }
  for (const [planId, status] of Object.entries(plans)) {
    const got = subscription(customer, planId).status;
    if (got !== status) return { kind: 'status', detail: `${planId} is ${JSON.stringify(got)}, not ${status}` };
  }
  for (const [featureId, granted] of Object.entries(balances)) {
    const balance = customer.balances[featureId];
    if (!balance) return { kind: 'missing', detail: `no balance for ${featureId}` };
    if (balance.granted !== granted) {
      return { kind: balance.granted > granted ? 'duplicate' : 'balance', detail: `${featureId} granted ${balance.granted}, not ${granted}` };
    }
  }
  return null;
}

export function assertDefaults(customer, expected, what = 'customer') {
  const problem = defaultsProblem(customer, expected);
  assert.equal(problem, null, `${what}: ${problem?.detail}: ${JSON.stringify(customer)}`);
}

/** The customer of the basic catalog: one free default, 1000 words. */
export const BASIC_DEFAULTS = { plans: { free: 'active' }, balances: { words: 1000 } };

// ─── race rounds ────────────────────────────────────────────────────────────

/** What one round saw: the race symptoms (SPEC §8 ids) and notes. */
export class Observation {
  constructor(round) {
    this.round = round;
    this.symptoms = new Map(); // symptom -> [detail]
    this.notes = [];
  }

  add(symptom, detail) {
    if (!this.symptoms.has(symptom)) this.symptoms.set(symptom, []);
    this.symptoms.get(symptom).push(detail);
  }

  note(text) {
    this.notes.push(text);
  }

  get clean() {
    return this.symptoms.size === 0;
  }

  toString() {
    if (this.clean) return `round ${this.round}: clean`;
    const parts = [...this.symptoms].map(([s, details]) => `${s} (${details.join('; ')})`);
    return `round ${this.round}: ${parts.join(', ')}`;
  }
}

/**
 * Runs `round(observation)` up to ROUNDS times, each with fresh ids, and
 * judges the rounds by the race table (races.js) for `caseNo` under the
 * strategy:
 * - a racing strategy: the round that first shows one of the expected
 *   symptoms ends the test (pass); none in ROUNDS rounds fails;
 * - every other strategy: all rounds run and every round must be clean;
 * - in every round, a symptom the table neither expects nor tolerates for the
 *   strategy fails at once.
 * An error that is no race symptom is thrown by `round` and fails the test.
 */
export async function raceRounds(t, { caseNo, strategy, round, rounds = ROUNDS }) {
  const policy = policyFor(caseNo, strategy);
  const seen = [];
  for (let i = 1; i <= rounds; i += 1) {
    const observation = new Observation(i);
    await round(observation);
    seen.push(observation.toString());
    const unexpected = [...observation.symptoms.keys()].filter((s) => !policy.allowed.includes(s));
    if (unexpected.length > 0) {
      assert.fail(
        `case ${caseNo} under ${strategy}: ${unexpected.join(', ')} must not happen ` +
          `(${policy.describe})\n${seen.join('\n')}`,
      );
    }
    if (policy.shows.some((s) => observation.symptoms.has(s))) {
      t.diagnostic(`expected race shown: ${observation}`);
      return seen;
    }
  }
  if (policy.shows.length > 0) {
    assert.fail(
      `case ${caseNo} under ${strategy}: expected ${policy.shows.join(' or ')} within ${rounds} rounds ` +
        `(pace ${PACE_MS} ms), saw none\n${seen.join('\n')}`,
    );
  }
  for (const line of seen.filter((l) => !l.endsWith(': clean'))) t.diagnostic(`tolerated: ${line}`);
  return seen;
}

/**
 * Settles an array of promises: `[{ ok: true, value } | { ok: false, error }]`
 * in the same order.
 */
export async function settle(promises) {
  const results = await Promise.allSettled(promises);
  return results.map((r) => (r.status === 'fulfilled' ? { ok: true, value: r.value } : { ok: false, error: r.reason }));
}

/**
 * Sorts the failures of `settled` into the observation: a 500
 * `internal_error` is `symptomOf500` (R1 by default); any other failure is no
 * race symptom and is thrown.
 */
export function classifyFailures(observation, settled, label, { symptomOf500 = 'R1' } = {}) {
  settled.forEach((r, i) => {
    if (r.ok) return;
    if (isInternalError(r.error)) {
      observation.add(symptomOf500, `${label} #${i + 1}: 500 internal_error`);
      return;
    }
    const wrapped = new Error(`${label} #${i + 1} failed with no race to explain it: ${describeError(r.error)}`);
    wrapped.cause = r.error;
    throw wrapped;
  });
}
