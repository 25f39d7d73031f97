// Judging the rounds of the race cases: what the answers and the settle read
// (a `customers.get` after every request has answered, the next read a real
// client would make) show, sorted into race symptoms (see races.js) or thrown
// as failures no race explains.

import { assert, apiError, defaultsProblem, describeError, getWithId, statusMayHaveApplied } from './helpers.js';

/**
 * Judges a conformance history (fixtures/conformance/*.json) as docs/SPEC.md
 * §6 gives each invariant its one meaning from outside: the set of those it
 * breaks, among no_internal_error, unique_customer, claim_correct and
 * usage_conserved. A customer id the calls name and `read_back` does not
 * list was read back and not found. (The race cases judge their answers
 * with the helpers above and the same usage rule, `statusMayHaveApplied`.)
 */
export function judgeHistory(history) {
  const broken = new Set();
  const succeeded = (call) => call.answer !== null && call.answer.status < 300;
  // no_internal_error: a 500 or internal_error (a 503 may be retried).
  if (history.calls.some((c) => c.answer && (c.answer.status === 500 || c.answer.code === 'internal_error'))) {
    broken.add('no_internal_error');
  }
  // unique_customer: one internal id per customer id over every answer and
  // read-back that shows one; one per email over the id-less creates.
  const shown = new Map();
  const see = (key, autumnId) => {
    if (key === null || autumnId == null) return;
    if (!shown.has(key)) shown.set(key, new Set());
    shown.get(key).add(autumnId);
  };
  for (const call of history.calls.filter((c) => c.op === 'create' && succeeded(c))) {
    see(call.answer.id == null ? null : `id ${call.answer.id}`, call.answer.autumn_id);
    if (call.customer_id === null && call.email) see(`email ${call.email.toLowerCase()}`, call.answer.autumn_id);
  }
  for (const [id, read] of Object.entries(history.read_back)) see(`id ${id}`, read.autumn_id);
  if ([...shown.values()].some((ids) => ids.size > 1)) broken.add('unique_customer');
  // claim_correct: a create of X answers a customer whose id is X, and that
  // customer is still X at the end (the read-back of X finds it, by its
  // internal id).
  for (const call of history.calls.filter((c) => c.op === 'create' && c.customer_id !== null && succeeded(c))) {
    const read = history.read_back[call.customer_id];
    const stillX = read !== undefined && (call.answer.autumn_id == null || read.autumn_id === call.answer.autumn_id);
    if (call.answer.id !== call.customer_id || !stillX) broken.add('claim_correct');
  }
  // usage_conserved: per customer, acknowledged <= usage <= acknowledged +
  // what may have applied, over logical tracks (one key, customer and value
  // is one, whoever sent it; an unkeyed attempt is one of its own).
  const logical = new Map();
  history.calls.forEach((call, index) => {
    if (call.op !== 'track') return;
    const id = call.key != null ? `key ${call.customer_id} ${call.key} ${call.value}` : `call ${index}`;
    if (!logical.has(id)) logical.set(id, []);
    logical.get(id).push(call);
  });
  const bounds = new Map();
  for (const attempts of logical.values()) {
    const { customer_id: customer, value } = attempts[0];
    const acknowledged = attempts.some((a) => a.answer && a.answer.status === 200);
    const mayHave = acknowledged || attempts.some((a) => statusMayHaveApplied(a.answer ? a.answer.status : null));
    const b = bounds.get(customer) ?? { low: 0, high: 0 };
    if (acknowledged) b.low += value;
    if (mayHave) b.high += value;
    bounds.set(customer, b);
  }
  // A customer not found at the end holds no usage.
  for (const [customer, { low, high }] of bounds) {
    const usage = history.read_back[customer]?.usage ?? 0;
    if (usage < low || usage > high) broken.add('usage_conserved');
  }
  return broken;
}

/**
 * Sorts a view of a customer (an answer or the settle read) by its defaults:
 * missing → R2; anything else wrong (duplicates, wrong plan or balance) is no
 * catalogued race and fails.
 */
export function judgeDefaults(observation, customer, expected, what) {
  const problem = defaultsProblem(customer, expected);
  if (!problem) return;
  if (problem.kind === 'missing') {
    observation.add('R2', `${what}: ${problem.detail}`);
    return;
  }
  assert.fail(`${what}: ${problem.detail} (no catalogued race explains it): ${JSON.stringify(customer)}`);
}

/**
 * The settle read of `customerId` with its internal id, or null when it is
 * not found (404 customer_not_found) and `mayBeMissing`.
 */
export async function settleRead(url, customerId, { mayBeMissing = false } = {}) {
  try {
    return await getWithId(url, customerId);
  } catch (err) {
    const info = apiError(err);
    if (mayBeMissing && info && info.status === 404 && info.code === 'customer_not_found') return null;
    throw new Error(`settle read of ${customerId} failed: ${describeError(err)}`, { cause: err });
  }
}

/**
 * Concurrent creates of one id (cases 4 and 18): `settled` holds
 * `createWithId` results. Every success names the id and one internal id;
 * answers and the settle read carry the defaults.
 */
export async function judgeSameIdCreates(observation, { url, settled, id, params, expected }) {
  const answers = settled.filter((r) => r.ok).map((r) => r.value);
  for (const [i, { customer }] of answers.entries()) {
    assert.equal(customer.id, id, `answer ${i + 1} names ${customer.id}, not ${id}`);
    if (params.name !== undefined) assert.equal(customer.name, params.name, `answer ${i + 1}: name`);
    if (params.email !== undefined) assert.equal(customer.email, params.email, `answer ${i + 1}: email`);
    judgeDefaults(observation, customer, expected, `answer ${i + 1}`);
  }
  const internalIds = new Set(answers.map((a) => a.autumnId));
  assert.ok(internalIds.size <= 1, `creates of ${id} answered with ${internalIds.size} internal ids: ${[...internalIds]}`);
  const createdAts = new Set(answers.map((a) => a.customer.createdAt));
  assert.ok(createdAts.size <= 1, `creates of ${id} answered with different created_at: ${[...createdAts]}`);

  const read = await settleRead(url, id, { mayBeMissing: answers.length === 0 });
  if (read === null) {
    observation.note(`no create of ${id} succeeded and it does not exist`);
    return;
  }
  if (answers.length > 0) {
    assert.equal(read.autumnId, answers[0].autumnId, `settle read of ${id}: internal id differs from the answers'`);
  }
  judgeDefaults(observation, read.customer, expected, 'settle read');
}
