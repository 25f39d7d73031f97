// Plan files `check-race-condition2.test.ts` and
// `track-race-condition5.test.ts`: cases 21–22, concurrent check / track
// calls that auto-create the same customer. Auto-create happens only for API
// versions below 2.1.0, so these calls go through a client constructed with
// `xApiVersion: "2.0.0"`; the settle read uses the default version.

import {
  AUTO_CREATE_VERSION,
  BASIC_DEFAULTS,
  PACE_MS,
  assert,
  classifyFailures,
  client,
  forEachServer,
  freshId,
  mayHaveApplied,
  raceRounds,
  settle,
} from './helpers.js';
import { judgeDefaults, settleRead } from './judge.js';

const CHECKS = 3;
const TRACKS = 5;

forEachServer({ catalog: 'basic.json', paceMs: PACE_MS }, (s) => {
  s.test('case 21: check-autocreate: concurrent same customer_id', async (_, t) => {
    const old = client(s.url, { version: AUTO_CREATE_VERSION });
    await raceRounds(t, {
      caseNo: 21,
      strategy: s.strategy,
      round: async (observation) => {
        const id = freshId('c21');
        const calls = Array.from({ length: CHECKS }, () => old.check({ customerId: id, featureId: 'words' }));
        const settled = await settle(calls);
        classifyFailures(observation, settled, 'check');
        const answers = settled.filter((r) => r.ok).map((r) => r.value);
        for (const [i, answer] of answers.entries()) {
          assert.equal(answer.customerId, id, `check ${i + 1}: customer_id`);
          if (answer.balance === null) {
            observation.add('R2', `check ${i + 1}: no words balance, allowed ${answer.allowed}`);
            continue;
          }
          if (answer.balance.granted > 1000) {
            assert.fail(`check ${i + 1}: words granted ${answer.balance.granted}, more than the one default's 1000`);
          }
          if (answer.balance.granted < 1000 || !answer.allowed) {
            observation.add('R2', `check ${i + 1}: allowed ${answer.allowed}, granted ${answer.balance.granted}`);
          }
        }
        const read = await settleRead(s.url, id, { mayBeMissing: answers.length === 0 });
        if (read === null) {
          observation.note(`no check of ${id} succeeded and it does not exist`);
          return;
        }
        assert.equal(read.customer.id, id);
        judgeDefaults(observation, read.customer, BASIC_DEFAULTS, 'settle read');
        if (observation.clean) {
          assert.equal(read.customer.balances.words.usage, 0, 'checks record no usage');
        }
      },
    });
  });

  s.test('case 22: track-autocreate: concurrent same customer_id', async (_, t) => {
    const old = client(s.url, { version: AUTO_CREATE_VERSION });
    await raceRounds(t, {
      caseNo: 22,
      strategy: s.strategy,
      round: async (observation) => {
        const id = freshId('c22');
        const calls = Array.from({ length: TRACKS }, () => old.track({ customerId: id, featureId: 'words', value: 1 }));
        const settled = await settle(calls);
        classifyFailures(observation, settled, 'track');
        const answers = settled.filter((r) => r.ok).map((r) => r.value);
        for (const [i, answer] of answers.entries()) {
          assert.equal(answer.customerId, id, `track ${i + 1}: customer_id`);
          assert.equal(answer.value, 1, `track ${i + 1}: value`);
        }
        const acknowledged = answers.length;
        const read = await settleRead(s.url, id, { mayBeMissing: acknowledged === 0 });
        if (read === null) {
          observation.note(`no track of ${id} succeeded and it does not exist`);
          return;
        }
        assert.equal(read.customer.id, id);
        judgeDefaults(observation, read.customer, BASIC_DEFAULTS, 'settle read');
        const balance = read.customer.balances.words;
        if (!balance) return; // R2 already noted: no balance to judge usage by
        // usage_conserved (docs/SPEC.md §6): between the acknowledged tracks
        // and those that may have applied (a 4xx refused a track).
        const mayHave = settled.filter(mayHaveApplied).length;
        assert.ok(balance.usage <= mayHave, `usage ${balance.usage} is more than the ${mayHave} tracks that may have applied`);
        if (balance.usage < acknowledged) {
          observation.add('R8', `usage ${balance.usage} < ${acknowledged} acknowledged tracks`);
        }
        assert.equal(balance.remaining, balance.granted - balance.usage, `remaining: ${JSON.stringify(balance)}`);
        if (observation.clean) {
          assert.equal(acknowledged, TRACKS, 'every track is acknowledged');
          assert.equal(balance.usage, TRACKS, 'usage equals the acknowledged tracks');
        }
      },
    });
  });
});
