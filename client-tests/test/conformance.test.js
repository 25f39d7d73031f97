// The conformance histories (fixtures/conformance/*.json): this judge
// classifies each one as written, as the oracle and cusim check's verdict
// do (sim/tests/judges.rs). No server is needed.

import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { assert } from './helpers.js';
import { judgeHistory } from './judge.js';

const dir = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/conformance');
const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();

test('the conformance set is there', () => {
  assert.ok(files.length >= 13, `only ${files.length} conformance histories in ${dir}`);
});

for (const file of files) {
  const history = JSON.parse(readFileSync(join(dir, file), 'utf8'));
  test(`conformance: ${history.name}`, () => {
    const broken = [...judgeHistory(history)].sort();
    assert.deepEqual(broken, [...history.broken].sort(), `${file}: ${history.description}`);
  });
}
