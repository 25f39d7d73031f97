// Plan file `create-customer.test.ts`: cases 1–9, basic creation and the
// email flows. Catalog: one free default (`free`, 1000 words).

import {
  BASIC_DEFAULTS,
  PACE_MS,
  assert,
  assertDefaults,
  classifyFailures,
  client,
  createWithId,
  emailOf,
  expectApiError,
  forEachServer,
  freshId,
  raceRounds,
  settle,
} from './helpers.js';
import { judgeDefaults, judgeSameIdCreates } from './judge.js';

const CATALOG = 'basic.json';

// ─── one request at a time ──────────────────────────────────────────────────

forEachServer({ catalog: CATALOG }, (s) => {
  s.test('case 1: create: basic with ID', async () => {
    const c = client(s.url);
    const id = freshId('c1');
    const params = {
      customerId: id,
      name: 'Ann Example',
      email: emailOf(id),
      fingerprint: `fp-${id}`,
      metadata: { source: 'client-tests', n: 1 },
    };
    const created = await c.customers.getOrCreate(params);
    assert.equal(created.id, id);
    assert.equal(created.name, params.name);
    assert.equal(created.email, params.email);
    assert.equal(created.fingerprint, params.fingerprint);
    assert.deepEqual(created.metadata, params.metadata);
    assert.equal(created.env, 'sandbox');
    assert.equal(created.stripeId, null, 'a free default needs no Stripe customer');
    assert.ok(Number.isInteger(created.createdAt) && created.createdAt >= 0, `created_at ${created.createdAt}`);
    assertDefaults(created, BASIC_DEFAULTS, 'create answer');
    assert.equal(created.balances.words.usage, 0);
    assert.equal(created.balances.words.remaining, 1000);

    const got = await c.customers.get({ customerId: id });
    for (const key of ['id', 'name', 'email', 'fingerprint', 'env', 'createdAt', 'stripeId']) {
      assert.deepEqual(got[key], created[key], `get: ${key}`);
    }
    assert.deepEqual(got.metadata, params.metadata);
    assertDefaults(got, BASIC_DEFAULTS, 'get');
  });

  s.test('case 2: create: idempotent with same ID', async () => {
    const id = freshId('c2');
    const email = emailOf(id);
    const first = await createWithId(s.url, { customerId: id, name: 'First Name' });
    assert.equal(first.customer.id, id);
    assert.equal(first.customer.email, null);
    assertDefaults(first.customer, BASIC_DEFAULTS, 'first create');

    // The same id again: the existing customer; an empty email is filled,
    // a set name is kept (SPEC §3), and no second set of defaults.
    const second = await createWithId(s.url, { customerId: id, name: 'Second Name', email });
    assert.equal(second.autumnId, first.autumnId, 'second create: another internal id');
    assert.equal(second.customer.id, id);
    assert.equal(second.customer.createdAt, first.customer.createdAt);
    assert.equal(second.customer.name, 'First Name', 'a set name is not overwritten');
    assert.equal(second.customer.email, email, 'an empty email is filled');
    assertDefaults(second.customer, BASIC_DEFAULTS, 'second create');

    const third = await createWithId(s.url, { customerId: id });
    assert.equal(third.autumnId, first.autumnId, 'third create: another internal id');
    assert.equal(third.customer.name, 'First Name');
    assert.equal(third.customer.email, email);
    assertDefaults(third.customer, BASIC_DEFAULTS, 'third create');

    const got = await client(s.url).customers.get({ customerId: id });
    assert.equal(got.name, 'First Name');
    assert.equal(got.email, email);
    assertDefaults(got, BASIC_DEFAULTS, 'get');
  });

  s.test('case 3: create: with expand params', async () => {
    const c = client(s.url);
    const id = freshId('c3');
    const expand = ['invoices', 'trials_used', 'entities'];
    const created = await c.customers.getOrCreate({ customerId: id, name: 'Expand', email: emailOf(id), expand });
    assert.equal(created.id, id);
    assertDefaults(created, BASIC_DEFAULTS, 'create answer');
    // A free default: no invoice, no trial used, no entity, but each list present.
    assert.deepEqual(created.invoices, [], 'invoices');
    assert.deepEqual(created.trialsUsed, [], 'trials_used');
    assert.deepEqual(created.entities, [], 'entities');

    // The existing path expands too.
    const again = await c.customers.getOrCreate({ customerId: id, expand });
    assert.equal(again.id, id);
    assert.deepEqual(again.invoices, []);
    assert.deepEqual(again.trialsUsed, []);
    assert.deepEqual(again.entities, []);
  });

  s.test('case 5: create: null ID with email', async () => {
    const email = emailOf(freshId('c5'));
    const { customer, autumnId } = await createWithId(s.url, { customerId: null, name: 'No Id', email });
    assert.equal(customer.id, null);
    assert.equal(customer.name, 'No Id');
    assert.equal(customer.email, email);
    assert.equal(customer.env, 'sandbox');
    assert.ok(autumnId);
    assertDefaults(customer, BASIC_DEFAULTS, 'create answer');
  });

  s.test('case 6: create: null ID no email (error)', async () => {
    const c = client(s.url);
    for (const params of [{ customerId: null }, { customerId: null, name: 'No Email' }]) {
      const err = await expectApiError(c.customers.getOrCreate(params));
      const what = JSON.stringify(params);
      assert.equal(err.status, 400, `${what}: status (body ${err.body})`);
      assert.equal(err.code, 'invalid_request', `${what}: code (body ${err.body})`);
      assert.equal(err.message, 'Either customer ID or email is required', `${what}: message`);
    }
  });

  s.test('case 7: create: null ID idempotent', async () => {
    const email = emailOf(freshId('c7'));
    const first = await createWithId(s.url, { customerId: null, name: 'Seven', email });
    const second = await createWithId(s.url, { customerId: null, email });
    assert.equal(second.autumnId, first.autumnId, 'the same email made a second id-less customer');
    assert.equal(second.customer.id, null);
    assert.equal(second.customer.email, email);
    assert.equal(second.customer.name, 'Seven');
    assertDefaults(second.customer, BASIC_DEFAULTS, 'second create');

    // Emails match case-insensitively (SPEC §3).
    const shouted = await createWithId(s.url, { customerId: null, email: email.toUpperCase() });
    assert.equal(shouted.autumnId, first.autumnId, 'the upper-cased email made another id-less customer');
    assertDefaults(shouted.customer, BASIC_DEFAULTS, 'upper-cased create');
  });

  s.test('case 8: create: null ID then add ID', async () => {
    const id = freshId('c8');
    const email = emailOf(id);
    const idless = await createWithId(s.url, { customerId: null, name: 'Eight', email });
    assert.equal(idless.customer.id, null);

    // {id, email}: the one id-less row with that email is claimed: it gets
    // the id and keeps its name and products; no new defaults.
    const claimed = await createWithId(s.url, { customerId: id, email });
    assert.equal(claimed.autumnId, idless.autumnId, 'the id-less customer was not claimed');
    assert.equal(claimed.customer.id, id);
    assert.equal(claimed.customer.name, 'Eight');
    assert.equal(claimed.customer.email, email);
    assert.equal(claimed.customer.createdAt, idless.customer.createdAt);
    assertDefaults(claimed.customer, BASIC_DEFAULTS, 'claim answer');

    const got = await createWithId(s.url, { customerId: id });
    assert.equal(got.autumnId, idless.autumnId);
    assert.equal(got.customer.id, id);
    assertDefaults(got.customer, BASIC_DEFAULTS, 'create of the claimed id');
    const read = await client(s.url).customers.get({ customerId: id });
    assert.equal(read.name, 'Eight');
    assertDefaults(read, BASIC_DEFAULTS, 'get');

    // No id-less row with that email is left: an id-less create makes a new one.
    const fresh = await createWithId(s.url, { customerId: null, email });
    assert.notEqual(fresh.autumnId, idless.autumnId, 'the claimed customer still answers an id-less create');
    assert.equal(fresh.customer.id, null);
    assertDefaults(fresh.customer, BASIC_DEFAULTS, 'new id-less create');
  });
});

// ─── concurrent requests (paced servers) ────────────────────────────────────

forEachServer({ catalog: CATALOG, paceMs: PACE_MS }, (s) => {
  s.test('case 4: create: concurrent same ID', async (_, t) => {
    await raceRounds(t, {
      caseNo: 4,
      strategy: s.strategy,
      round: async (observation) => {
        const id = freshId('c4');
        const params = { customerId: id, name: 'Four', email: emailOf(id) };
        const settled = await settle([1, 2].map(() => createWithId(s.url, params)));
        classifyFailures(observation, settled, 'create');
        await judgeSameIdCreates(observation, { url: s.url, settled, id, params, expected: BASIC_DEFAULTS });
      },
    });
  });

  s.test('case 9: create: concurrent null ID same email', async (_, t) => {
    await raceRounds(t, {
      caseNo: 9,
      strategy: s.strategy,
      round: async (observation) => {
        const email = emailOf(freshId('c9'));
        const settled = await settle([1, 2].map(() => createWithId(s.url, { customerId: null, name: 'Nine', email })));
        classifyFailures(observation, settled, 'create');
        const answers = settled.filter((r) => r.ok).map((r) => r.value);
        for (const [i, { customer }] of answers.entries()) {
          assert.equal(customer.id, null, `answer ${i + 1}: id`);
          assert.equal(customer.email, email, `answer ${i + 1}: email`);
          judgeDefaults(observation, customer, BASIC_DEFAULTS, `answer ${i + 1}`);
        }
        const internalIds = [...new Set(answers.map((a) => a.autumnId))];
        if (internalIds.length > 1) observation.add('R4', `two id-less customers for ${email}: ${internalIds.join(', ')}`);

        // Settle: a later id-less create with that email finds one of them.
        const later = await createWithId(s.url, { customerId: null, email });
        if (answers.length > 0) {
          assert.ok(
            internalIds.includes(later.autumnId),
            `a later create of ${email} answered ${later.autumnId}, none of ${internalIds.join(', ')}`,
          );
        }
        judgeDefaults(observation, later.customer, BASIC_DEFAULTS, 'later create');
      },
    });
  });
});
