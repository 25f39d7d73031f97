// Judging the rounds of the race cases: what the answers and the settle read
// (a `customers.get` after every request has answered, the next read a real
// client would make) show, sorted into race symptoms (see races.js) or thrown
// as failures no race explains.

import { assert, apiError, defaultsProblem, describeError, getWithId } from './helpers.js';

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
