// Plan file `create-customer-defaults.test.ts`: cases 10–15, default product
// attachment. Each case's catalog is its own server (catalogs/*.json).

import {
  BASIC_DEFAULTS,
  assert,
  assertDefaults,
  client,
  createWithId,
  emailOf,
  forEachServer,
  freshId,
} from './helpers.js';

function assertStripeId(customer, what) {
  assert.equal(typeof customer.stripeId, 'string', `${what}: stripe_id ${JSON.stringify(customer.stripeId)}`);
  assert.notEqual(customer.stripeId, '', `${what}: empty stripe_id`);
}

forEachServer({ catalog: 'basic.json' }, (s) => {
  s.test('case 10: defaults: single free product', async () => {
    const c = client(s.url);
    const id = freshId('c10');
    const created = await c.customers.getOrCreate({ customerId: id, name: 'Ten' });
    assertDefaults(created, BASIC_DEFAULTS, 'create answer');
    const sub = created.subscriptions[0];
    assert.equal(sub.planId, 'free');
    assert.equal(sub.status, 'active');
    assert.deepEqual(
      { granted: created.balances.words.granted, remaining: created.balances.words.remaining, usage: created.balances.words.usage },
      { granted: 1000, remaining: 1000, usage: 0 },
    );
    assert.equal(created.stripeId, null, 'a free default needs no Stripe customer');
    assertDefaults(await c.customers.get({ customerId: id }), BASIC_DEFAULTS, 'get');
  });
});

forEachServer({ catalog: 'two-groups.json' }, (s) => {
  s.test('case 11: defaults: multiple groups', async () => {
    const c = client(s.url);
    const id = freshId('c11');
    // One default per group; `addon_extra` is not a default.
    const expected = {
      plans: { free: 'active', addon_free: 'active' },
      balances: { words: 1000, api_calls: 100 },
    };
    const created = await c.customers.getOrCreate({ customerId: id, name: 'Eleven' });
    assertDefaults(created, expected, 'create answer');
    assert.equal(created.subscriptions.length, 2);
    assertDefaults(await c.customers.get({ customerId: id }), expected, 'get');
  });
});

forEachServer({ catalog: 'priority.json' }, (s) => {
  s.test('case 12: defaults: same group priority', async () => {
    const c = client(s.url);
    const id = freshId('c12');
    // main: trial > paid > free → trial_main (trialing);
    // seats: paid counts only with force_paid_default → free_seats;
    // credits: two free, ties by product id ascending → alpha_credits.
    const expected = {
      plans: { trial_main: 'trialing', free_seats: 'active', alpha_credits: 'active' },
      balances: { words: 5000, seats: 2, credits: 10 },
    };
    const created = await c.customers.getOrCreate({ customerId: id, name: 'Twelve', email: emailOf(id) });
    assertDefaults(created, expected, 'create answer');
    assertStripeId(created, 'a trial default needs a Stripe customer');
    const got = await c.customers.get({ customerId: id });
    assertDefaults(got, expected, 'get');
    assert.equal(got.stripeId, created.stripeId);
  });
});

forEachServer({ catalog: 'trial.json' }, (s) => {
  s.test('case 13: defaults: trial product', async () => {
    const c = client(s.url);
    const id = freshId('c13');
    const expected = { plans: { pro_trial: 'trialing' }, balances: { words: 5000 } };
    const created = await c.customers.getOrCreate({ customerId: id, name: 'Thirteen', email: emailOf(id) });
    assertDefaults(created, expected, 'create answer');
    assertStripeId(created, 'a trial default needs a Stripe customer');
    const got = await c.customers.get({ customerId: id });
    assertDefaults(got, expected, 'get');
    assert.equal(got.stripeId, created.stripeId);
  });
});

forEachServer({ catalog: 'paid-forced.json' }, (s) => {
  const expected = { plans: { pro: 'active' }, balances: { words: 5000 } };

  s.test('case 14: defaults: paid product (legacy)', async () => {
    const c = client(s.url);
    const id = freshId('c14');
    // force_paid_default: the paid default outranks the free one in its group.
    const created = await c.customers.getOrCreate({ customerId: id, name: 'Fourteen', email: emailOf(id) });
    assertDefaults(created, expected, 'create answer');
    assert.equal(created.subscriptions.length, 1, 'the free default of the same group is not attached too');
    assertDefaults(await c.customers.get({ customerId: id }), expected, 'get');
  });

  s.test('case 15: defaults: paid requires Stripe customer', async () => {
    const id = freshId('c15');
    const created = await createWithId(s.url, { customerId: id, name: 'Fifteen', email: emailOf(id) });
    assertDefaults(created.customer, expected, 'create answer');
    assertStripeId(created.customer, 'create answer');

    const got = await client(s.url).customers.get({ customerId: id });
    assert.equal(got.stripeId, created.customer.stripeId, 'get: stripe_id');
    assertDefaults(got, expected, 'get');

    // The existing customer again: the same Stripe customer, no new one.
    const again = await createWithId(s.url, { customerId: id });
    assert.equal(again.autumnId, created.autumnId);
    assert.equal(again.customer.stripeId, created.customer.stripeId, 'second create: stripe_id');
    assertDefaults(again.customer, expected, 'second create');
  });
});
