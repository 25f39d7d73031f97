// Plan file `create-customer-race.test.ts`: cases 18–20 (API level; 16 and 17
// reach into the server's store and cache and are not expressible over HTTP,
// see README.md). Paced servers: every store operation is held PACE_MS so
// concurrent requests interleave.

import {
  BASIC_DEFAULTS,
  PACE_MS,
  assert,
  classifyFailures,
  createWithId,
  emailOf,
  forEachServer,
  freshId,
  raceRounds,
  settle,
} from './helpers.js';
import { judgeDefaults, judgeSameIdCreates, settleRead } from './judge.js';

forEachServer({ catalog: 'basic.json', paceMs: PACE_MS }, (s) => {
  s.test('case 18: race: concurrent same ID (API level)', async (_, t) => {
    await raceRounds(t, {
      caseNo: 18,
      strategy: s.strategy,
      round: async (observation) => {
        const id = freshId('c18');
        const params = { customerId: id, name: 'Eighteen', email: emailOf(id) };
        const settled = await settle([1, 2, 3].map(() => createWithId(s.url, params)));
        classifyFailures(observation, settled, 'create');
        await judgeSameIdCreates(observation, { url: s.url, settled, id, params, expected: BASIC_DEFAULTS });
      },
    });
  });

  s.test('case 19: race: concurrent email+ID update', async (_, t) => {
    await raceRounds(t, {
      caseNo: 19,
      strategy: s.strategy,
      round: async (observation) => {
        const x = freshId('c19x');
        const y = freshId('c19y');
        const email = emailOf(freshId('c19'));
        const idless = await createWithId(s.url, { customerId: null, name: 'Nineteen', email });
        assert.equal(idless.customer.id, null);

        const wanted = [x, y];
        const settled = await settle(wanted.map((id) => createWithId(s.url, { customerId: id, email })));
        classifyFailures(observation, settled, 'create');
        const answers = [];
        settled.forEach((r, i) => {
          if (!r.ok) return;
          answers.push({ ...r.value, wanted: wanted[i] });
          if (r.value.customer.id !== wanted[i]) {
            observation.add('R5', `create {id: ${wanted[i]}} answered id ${r.value.customer.id}`);
          }
          judgeDefaults(observation, r.value.customer, BASIC_DEFAULTS, `answer for ${wanted[i]}`);
        });
        const claims = answers.filter((a) => a.autumnId === idless.autumnId);
        if (claims.length > 1) {
          observation.add('R5', `both creates answered with the id-less customer ${idless.autumnId}`);
        }

        // Settle: each id is found, names itself, and exactly one of them is
        // the claimed customer (which keeps its name and products).
        const reads = [];
        for (const id of wanted) {
          const read = await settleRead(s.url, id, { mayBeMissing: true });
          if (read === null) {
            const answered = answers.some((a) => a.wanted === id);
            if (answered) observation.add('R5', `${id} answered its create but is not found`);
            else observation.note(`${id}: create failed and it does not exist`);
            continue;
          }
          if (read.customer.id !== id) observation.add('R5', `get ${id} shows id ${read.customer.id}`);
          judgeDefaults(observation, read.customer, BASIC_DEFAULTS, `settle read of ${id}`);
          reads.push({ id, ...read });
        }
        const claimedReads = reads.filter((r) => r.autumnId === idless.autumnId);
        if (claimedReads.length > 1) {
          observation.add('R5', `${claimedReads.map((r) => r.id).join(' and ')} both read as ${idless.autumnId}`);
        }
        if (observation.clean) {
          assert.equal(claimedReads.length, 1, `neither ${x} nor ${y} claimed the id-less customer ${idless.autumnId}`);
          assert.equal(claimedReads[0].customer.name, 'Nineteen', 'the claimed customer keeps its name');
          const other = reads.find((r) => r.autumnId !== idless.autumnId);
          assert.ok(other, 'the other create made no customer of its own');
          assert.equal(other.customer.email, email);
        }
      },
    });
  });
});

forEachServer({ catalog: 'paid-forced.json', paceMs: PACE_MS }, (s) => {
  // The paid default needs a Stripe customer first.
  const expected = { plans: { pro: 'active' }, balances: { words: 5000 } };

  s.test('case 20: race: concurrent Stripe customer', async (_, t) => {
    await raceRounds(t, {
      caseNo: 20,
      strategy: s.strategy,
      round: async (observation) => {
        const id = freshId('c20');
        const params = { customerId: id, name: 'Twenty', email: emailOf(id) };
        const settled = await settle([1, 2].map(() => createWithId(s.url, params)));
        classifyFailures(observation, settled, 'create');
        const views = settled.filter((r) => r.ok).map((r, i) => ({ what: `answer ${i + 1}`, ...r.value }));
        const internalIds = new Set(views.map((v) => v.autumnId));
        assert.ok(internalIds.size <= 1, `creates of ${id} answered with ${internalIds.size} internal ids`);
        const read = await settleRead(s.url, id, { mayBeMissing: views.length === 0 });
        if (read) {
          if (views.length > 0) assert.equal(read.autumnId, views[0].autumnId, 'settle read: internal id');
          views.push({ what: 'settle read', ...read });
        }

        const stripeIds = new Set();
        for (const view of views) {
          assert.equal(view.customer.id, id, `${view.what}: id`);
          if (view.customer.stripeId === null) {
            // A view from before the Stripe work: no stripe_id, and the paid
            // default (attached after it) possibly missing with it.
            observation.add('R7', `${view.what} has no stripe_id (plans ${JSON.stringify(view.customer.subscriptions.map((x) => x.planId))})`);
            continue;
          }
          stripeIds.add(view.customer.stripeId);
          judgeDefaults(observation, view.customer, expected, view.what);
        }
        if (stripeIds.size > 1) observation.add('R6', `stripe ids ${[...stripeIds].join(', ')}`);
      },
    });
  });
});
