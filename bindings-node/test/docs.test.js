'use strict';
// Every ```javascript example of docs/node.md runs, as a user would run it (an ES module that
// imports 'mullama'), against the default model, and must exit 0.
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { REPO_ROOT, canStartWorker, missing } = require('./support');

const DOC = fs.readFileSync(path.join(REPO_ROOT, 'docs', 'node.md'), 'utf8');
const EXAMPLES = [...DOC.matchAll(/^## (.+)$|^```javascript\n([\s\S]*?)^```$/gm)].reduce(
  (found, match) => {
    if (match[1] !== undefined) found.section = match[1];
    else found.list.push({ section: found.section, code: match[2] });
    return found;
  },
  { section: '', list: [] },
).list;

const EXAMPLE_TIMEOUT_MS = 240_000;

test('the guide has its examples', () => {
  assert.ok(EXAMPLES.length >= 8, `${EXAMPLES.length} examples`);
});

for (const [i, { section, code }] of EXAMPLES.entries()) {
  test(`docs/node.md example ${i + 1}: ${section}`, (t) => {
    const needsModel = /Model\.load/.test(code);
    if (needsModel && !canStartWorker()) return missing(t, 'the worker interpreter cannot import mullama');
    // Inside the package, so `import 'mullama'` resolves to it (package self-reference).
    const dir = fs.mkdtempSync(path.join(__dirname, '.docs-'));
    try {
      const file = path.join(dir, `example-${i + 1}.mjs`);
      fs.writeFileSync(file, code);
      const run = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: EXAMPLE_TIMEOUT_MS });
      assert.equal(run.status, 0, `exit ${run.status} ${run.signal ?? ''}\n${run.stdout}\n${run.stderr}`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}
