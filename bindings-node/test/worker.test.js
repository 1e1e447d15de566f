'use strict';
// The engine worker against the default model (SmolLM2-135M through the Python package):
// generation, backpressure, cancel, a dying worker, and no orphan worker after kill -9.
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const mullama = require('..');
const { Model, Context, AsyncModel, StreamConfig, EngineExitedError, ContextLengthError, ConfigError } = mullama;
const { missing, canStartWorker, python, eventually, alive, sleep, REPO_ROOT } = require('./support');

const GREEDY = { temperature: 0, maxTokens: 12, timeoutMs: 120_000 };
const PROMPT = '<|im_start|>user\nName three colors.<|im_end|>\n<|im_start|>assistant\n';

let model = null;
async function defaultModel(t) {
  if (!canStartWorker()) return missing(t, `the worker interpreter cannot import mullama (set MULLAMA_PYTHON)`);
  if (model === null) model = await Model.load();
  return model;
}

test.after(() => model?.close());

test('the greedy reply is the one Python gives for the same prompt', async (t) => {
  const m = await defaultModel(t);
  if (!m) return;
  const result = await new Context(m).generate(PROMPT, GREEDY);
  assert.ok(result.tokens.length > 0);
  assert.ok(['stop', 'length'].includes(result.finishReason));
  assert.equal(result.stats.generationTokens >= result.tokens.length, true);
  const out = python(
    [
      'import json',
      'from mullama import Model, Context, StreamConfig',
      'm = Model.load()',
      `r = Context(m).generate(${JSON.stringify(PROMPT)}, StreamConfig(temperature=0, max_tokens=12))`,
      'print(json.dumps({"text": r.text, "tokens": r.tokens}))',
    ].join('\n'),
    300_000,
  );
  assert.ok(out !== null, 'python generation failed');
  const expected = JSON.parse(out.trim().split('\n').at(-1));
  assert.deepEqual(result.tokens, expected.tokens);
  assert.equal(result.text, expected.text);
});

test('a Context reuses its cached prefix; chat uses the template', async (t) => {
  const m = await defaultModel(t);
  if (!m) return;
  const context = new Context(m);
  const first = await context.generate(PROMPT, { ...GREEDY, maxTokens: 3 });
  const again = await context.generate(PROMPT, { ...GREEDY, maxTokens: 3 });
  assert.deepEqual(again.tokens, first.tokens, 'greedy from a reused cache is the same');
  const chat = context.chat([{ role: 'user', content: 'Name three colors.' }], { ...GREEDY, maxTokens: 3 });
  let text = '';
  for await (const token of chat) text += token.text;
  assert.equal(text, first.text, 'chat renders the same prompt through the template');
  context.close();
});

test('a slow consumer pauses its own generation at bufferSize', async (t) => {
  const m = await defaultModel(t);
  if (!m) return;
  const stream = new Context(m).generateStream(PROMPT, { ...GREEDY, maxTokens: 40, bufferSize: 2 });
  const first = await stream.next();
  assert.equal(first.done, false);
  await sleep(1500); // the worker could make many tokens meanwhile; credits allow 2
  assert.ok(stream.tokensGenerated <= 1 + 2 + 1, `generated ${stream.tokensGenerated} while paused`);
  // Another stream on the same worker is not held up by the paused one.
  const side = await new Context(m).generate(PROMPT, { ...GREEDY, maxTokens: 2 });
  assert.equal(side.tokens.length > 0, true);
  stream.close();
});

test('break cancels: the next generation on the context starts at once', async (t) => {
  const m = await defaultModel(t);
  if (!m) return;
  const context = new Context(m);
  let n = 0;
  for await (const token of context.generateStream(PROMPT, { ...GREEDY, maxTokens: 200 })) {
    void token;
    if (++n === 2) break;
  }
  const result = await context.generate(PROMPT, { ...GREEDY, maxTokens: 2 });
  assert.equal(result.tokens.length, 2);
});

test('a prompt longer than the context is CONTEXT_LENGTH', async (t) => {
  const m = await defaultModel(t);
  if (!m) return;
  const ids = new Array(m.nCtx + 1).fill(28);
  await assert.rejects(new Context(m).generate(ids, 4), (err) => err instanceof ContextLengthError && err.code === 'CONTEXT_LENGTH');
});

test('AsyncModel streams run side by side on one worker', async (t) => {
  if (!canStartWorker()) return missing(t, 'the worker interpreter cannot import mullama');
  const am = await AsyncModel.load();
  try {
    const config = new StreamConfig({ ...GREEDY, maxTokens: 4 });
    const [a, b] = await Promise.all([am.generate(PROMPT, config), am.generate(PROMPT, config)]);
    assert.deepEqual(a.tokens, b.tokens);
    const stream = am.generateStream(PROMPT, config);
    for await (const token of stream) void token;
    assert.ok(stream.tokensPerSecond() >= 0);
  } finally {
    am.close();
  }
});

test('a worker that dies mid-stream fails the stream with ENGINE_EXITED', async (t) => {
  if (!canStartWorker()) return missing(t, 'the worker interpreter cannot import mullama');
  const m = await Model.load();
  const stream = new Context(m).generateStream(PROMPT, { ...GREEDY, maxTokens: 200, bufferSize: 1 });
  await stream.next();
  process.kill(m.workerPid, 'SIGKILL');
  await assert.rejects(
    (async () => {
      for await (const token of stream) void token;
    })(),
    (err) => err instanceof EngineExitedError && err.code === 'ENGINE_EXITED' && /SIGKILL/.test(err.message),
  );
  assert.throws(() => new Context(m).generateStream(PROMPT, 2), { code: 'ENGINE_EXITED' });
});

test('generateStream on a closed model is a typed error', async (t) => {
  if (!canStartWorker()) return missing(t, 'the worker interpreter cannot import mullama');
  const m = await Model.load();
  const context = new Context(m);
  m.close();
  assert.throws(() => context.generateStream(PROMPT, 2), (err) => err instanceof mullama.GenerationError && /closed/.test(err.message));
  assert.ok(await eventually(() => !alive(m.workerPid), 10_000), 'close() ends the worker');
});

test('the worker never outlives Node (kill -9 the Node process)', async (t) => {
  if (!canStartWorker()) return missing(t, 'the worker interpreter cannot import mullama');
  const script = `
    const { Model, Context } = require(${JSON.stringify(path.join(REPO_ROOT, 'bindings-node'))});
    Model.load().then((m) => {
      console.log(String(m.workerPid));
      const s = new Context(m).generateStream('Hi', { maxTokens: 1000, timeoutMs: 0 });
      (async () => { for await (const t of s) void t; })();
    });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const pid = await new Promise((resolve, reject) => {
    child.stdout.once('data', (d) => resolve(Number(String(d).trim())));
    child.once('exit', (code) => reject(new Error(`node child exited early (${code})`)));
  });
  assert.ok(alive(pid));
  child.kill('SIGKILL');
  assert.ok(await eventually(() => !alive(pid), 10_000), `worker ${pid} outlived its Node process`);
});

test('a worker that cannot start is MODEL_LOAD naming the command', async () => {
  const saved = process.env.MULLAMA_PYTHON;
  process.env.MULLAMA_PYTHON = '/nonexistent/python3';
  try {
    await assert.rejects(Model.load(), (err) => err.code === 'MODEL_LOAD' && /nonexistent\/python3 -m mullama worker/.test(err.message) && /pip install mullama/.test(err.message));
  } finally {
    if (saved === undefined) delete process.env.MULLAMA_PYTHON;
    else process.env.MULLAMA_PYTHON = saved;
  }
});

test('an interpreter without mullama is MODEL_LOAD naming the install command', async (t) => {
  const bare = '/usr/bin/python3';
  if (python('import sys') === null || !require('node:fs').existsSync(bare)) return missing(t, `no ${bare}`);
  const saved = { python: process.env.MULLAMA_PYTHON, path: process.env.PYTHONPATH };
  process.env.MULLAMA_PYTHON = bare;
  delete process.env.PYTHONPATH;
  try {
    await assert.rejects(Model.load(), (err) => err.code === 'MODEL_LOAD' && /No module named/.test(err.message) && /pip install mullama/.test(err.message));
  } finally {
    for (const [name, value] of [['MULLAMA_PYTHON', saved.python], ['PYTHONPATH', saved.path]]) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
});

test('a missing model file is MODEL_LOAD', async (t) => {
  if (!canStartWorker()) return missing(t, 'the worker interpreter cannot import mullama');
  await assert.rejects(Model.load('/nonexistent/model.gguf'), (err) => err.code === 'MODEL_LOAD' && /model\.gguf/.test(err.message));
});

test('progress callbacks run while the stream does, and stop after it', async (t) => {
  const m = await defaultModel(t);
  if (!m) return;
  const seen = [];
  const stream = new Context(m).generateStream(PROMPT, { ...GREEDY, maxTokens: 24 }, {
    onProgress: (progress) => seen.push(progress.tokensGenerated),
    progressIntervalMs: 20,
  });
  for await (const token of stream) {
    void token;
    await sleep(10);
  }
  const calls = seen.length;
  assert.ok(calls >= 1, 'at least one progress call');
  assert.deepEqual([...seen].sort((a, b) => a - b), seen, 'counts only grow');
  await sleep(100);
  assert.equal(seen.length, calls, 'no calls after the end');
});

test('events carry topLogprobs and the statistics, as Python tokens do', async (t) => {
  const m = await defaultModel(t);
  if (!m) return;
  const stream = new Context(m).generateStream(PROMPT, { ...GREEDY, maxTokens: 4 }, { topLogprobs: 3 });
  const events = [];
  for await (const token of stream) events.push(token);
  const tokens = events.filter((e) => e.id !== undefined && e.topLogprobs.length > 0);
  assert.ok(tokens.length >= 1, 'the generated tokens carry alternatives');
  for (const token of tokens) {
    assert.equal(token.topLogprobs.length, 3);
    const [best] = token.topLogprobs;
    assert.equal(best[0], token.id, 'greedy picks the most likely alternative');
    assert.ok(Math.abs(best[1] - token.logprob) < 1e-4, `${best[1]} vs ${token.logprob}`);
    assert.ok(token.topLogprobs.every(([, lp], i, all) => i === 0 || all[i - 1][1] >= lp), 'best first');
    assert.equal(token.promptTokens, stream.stats().promptTokens);
    assert.ok(token.peakMemory > 0, 'the worker reports the engine peak memory');
  }
  assert.deepEqual(tokens.map((e) => e.generationTokens), tokens.map((_, i) => i + 1));
  assert.ok(stream.stats().peakMemory > 0, 'stats().peakMemory comes from the engine');
  const out = python(
    [
      'import json',
      'from mullama import Model, Context, StreamConfig',
      'm = Model.load()',
      `s = Context(m).generate_stream(${JSON.stringify(PROMPT)}, StreamConfig(temperature=0, max_tokens=4), top_logprobs=3)`,
      'print(json.dumps([[t for t, _ in e.top_logprobs] for e in s if e.top_logprobs]))',
    ].join('\n'),
    300_000,
  );
  assert.ok(out !== null, 'python generation failed');
  assert.deepEqual(
    tokens.map((e) => e.topLogprobs.map(([id]) => id)),
    JSON.parse(out.trim().split('\n').at(-1)),
    'the same alternatives as Python',
  );
});

test('topLogprobs beyond the engine limit is a ConfigError naming it', async (t) => {
  const m = await defaultModel(t);
  if (!m) return;
  for (const bad of [21, -1, 1.5, '3']) {
    assert.throws(
      () => new Context(m).generateStream(PROMPT, 2, { topLogprobs: bad }),
      (err) => err instanceof ConfigError && err.field === 'topLogprobs' && err.value === String(bad),
    );
  }
});

test('an MLX model folder loads and generates what Python generates from it', async (t) => {
  if (!canStartWorker()) return missing(t, 'the worker interpreter cannot import mullama');
  if (python('import mlx.core, mlx_lm') === null) return missing(t, 'the worker interpreter has no mlx / mlx-lm');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mullama-node-mlx-'));
  try {
    const folder = path.join(dir, 'tiny-mlx');
    const made = python(
      `from mullama.testing.tiny_models import write_tiny_mlx_folder\nprint(write_tiny_mlx_folder(${JSON.stringify(folder)}))`,
    );
    assert.ok(made !== null, 'writing the tiny MLX folder failed');
    const m = await Model.load(folder);
    try {
      assert.equal(m.engine, 'mlx');
      assert.equal(m.path, folder);
      assert.ok(m.tokenizer.vocabSize > 0, 'the folder tokenizer (tokenizer.json) loaded');
      const config = { temperature: 0, maxTokens: 6, timeoutMs: 120_000 };
      const result = await new Context(m).generate([1, 5, 9, 12], config);
      assert.equal(result.tokens.length, 6);
      const out = python(
        [
          'import json',
          'from mullama import Model, Context, StreamConfig',
          `m = Model.load(${JSON.stringify(folder)})`,
          'r = Context(m).generate([1, 5, 9, 12], StreamConfig(temperature=0, max_tokens=6))',
          'print(json.dumps({"engine": m.engine.name, "tokens": r.tokens, "text": r.text}))',
        ].join('\n'),
        300_000,
      );
      assert.ok(out !== null, 'python generation from the folder failed');
      const expected = JSON.parse(out.trim().split('\n').at(-1));
      assert.equal(expected.engine, 'mlx');
      assert.deepEqual(result.tokens, expected.tokens);
      assert.equal(result.text, expected.text);
    } finally {
      m.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
