// `cusim drive` against a server in another stack: the Node specimen
// (specimen/server.mjs, the `legacy` flow over postgres.js and ioredis),
// started by the drive with its stores behind the proxies. The drive must
// find R1, R4 and R2 there by schedule within 50 pct schedules each, show
// the real statements, and replay each finding 9 times in 10 or better:
// the proxies are not tuned to `cusim serve`. Needs DATABASE_URL and
// REDIS_URL (integration mode); skipped without them.

import { spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { CUSIM_BIN } from './helpers.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SPECIMEN = path.resolve(HERE, '..', 'specimen', 'server.mjs');
const REPO_ROOT = path.resolve(HERE, '..', '..');
const KEY = 'am_sk_test_specimen';
const { DATABASE_URL, REDIS_URL } = process.env;

/** A port nobody listens on now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

let runs = 0;

/**
 * `cusim drive --json` on `scenario` against the specimen, with `extra`
 * flags, and `serverExtra` flags for the specimen.
 */
async function drive(scenario, extra, serverExtra = []) {
  const port = await freePort();
  runs += 1;
  const schema = `specimen_${process.pid}_${runs}`;
  const args = [
    'drive', '--scenario', scenario, '--target', `http://127.0.0.1:${port}`, '--secret-key', KEY,
    '--database-url', DATABASE_URL, '--redis-url', REDIS_URL, '--json', ...extra, '--',
    process.execPath, SPECIMEN, '--listen', `127.0.0.1:${port}`, '--key', KEY,
    '--catalog', `fixtures/scenarios/${scenario}.json`, '--schema', schema, ...serverExtra,
  ];
  const run = spawnSync(CUSIM_BIN, args, { cwd: REPO_ROOT, encoding: 'utf8', timeout: 300_000 });
  let report = null;
  try {
    report = JSON.parse(run.stdout);
  } catch {
    // the assertions below show what it printed
  }
  return { code: run.status, report, output: `${run.stdout}\n${run.stderr}` };
}

const CASES = [
  { scenario: 'r1-same-id-create', race: 'R1', invariant: 'no_internal_error' },
  { scenario: 'r4-idless-duplicates', race: 'R4', invariant: 'unique_customer' },
  { scenario: 'r2-stale-cache', race: 'R2', invariant: 'defaults_present' },
];

describe('cusim drive against the Node specimen (postgres.js + ioredis)', { skip: !(DATABASE_URL && REDIS_URL) && 'needs DATABASE_URL and REDIS_URL' }, () => {
  for (const { scenario, race, invariant } of CASES) {
    test(`finds ${race} (${invariant}) in ${scenario} within 50 schedules and replays it`, async () => {
      const found = await drive(scenario, ['--seeds', '50']);
      assert.equal(found.code, 1, found.output);
      const finding = found.report.findings.find((f) => f.invariant === invariant && f.races.includes(race));
      assert.ok(finding, `no ${invariant} finding suspecting ${race}: ${found.output}`);
      // The specimen's real statements, of both requests.
      for (const request of [0, 1]) {
        assert.ok(
          finding.statements.some((s) => s.request === request && s.store === 'postgres'),
          `request ${request} ran no statement: ${JSON.stringify(finding, null, 1)}`,
        );
      }
      const replayed = await drive(scenario, ['--replay', finding.schedule, '--repeat', '10']);
      assert.equal(replayed.code, 1, replayed.output);
      assert.ok(replayed.report.reproduced >= 9, `${replayed.report.reproduced} of 10 reproduced: ${replayed.output}`);
      console.log(
        `${race} (${scenario}) at ${finding.schedule}: ${replayed.report.reproduced} of 10 gave its verdict, ` +
          `${replayed.report.same_order} of 10 its statement order`,
      );
    });
  }

  test('schedules the work the server goes on with after an answer as a mover of its own', async () => {
    // Every order without preemption: among them those where the query
    // the specimen leaves running after a create goes before the other
    // request moves.
    const exhaustive = ['--scheduler', 'exhaustive', '--max-preemptions', '0', '--seeds', '200'];
    const withJob = await drive('r1-same-id-create', exhaustive, ['--after-create-job']);
    assert.ok([0, 1].includes(withJob.code), withJob.output);
    assert.equal(withJob.report.search.complete, true, withJob.output);
    assert.ok(withJob.report.server_steps > 0, `no step of the server's own: ${withJob.output}`);
    // Without the job every step is a request's.
    const without = await drive('r1-same-id-create', exhaustive);
    assert.ok([0, 1].includes(without.code), without.output);
    assert.equal(without.report.server_steps, 0, without.output);
    assert.ok(withJob.report.schedules_run > without.report.schedules_run, 'the server is one mover more');
    console.log(
      `after-create job: ${withJob.report.server_steps} server steps in ${withJob.report.schedules_run} orders ` +
        `(${without.report.schedules_run} without it)`,
    );
  });
});
