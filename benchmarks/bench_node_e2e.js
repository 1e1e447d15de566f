#!/usr/bin/env node
'use strict';
// End to end on the default model: Node (native core + engine worker) against Python
// (Context.generate_stream in-process), same prompt, same engine, greedy. Rounds alternate
// between the two so both see the same machine load, in several fresh process pairs; the
// paired ratios' medians are compared.
// Targets (issue 11): tok/s ratio Node/Python >= 0.95, TTFT ratio Node/Python <= 1.1.
//
//   MULLAMA_PYTHON=.venv/bin/python node benchmarks/bench_node_e2e.js [--processes 3] [--rounds 5]
//                                                                    [--max-tokens 48]

const { spawn } = require('node:child_process');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { Model, Context } = require(path.join(__dirname, '..', 'bindings-node'));

const PROMPT = '<|im_start|>user\nWrite a short poem about the sea.<|im_end|>\n<|im_start|>assistant\n';

function argument(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
}

// One round per input line: a fresh Context (no cached prefix), greedy, timed like Node's.
const PYTHON_ROUNDS = `
import json, sys, time
from mullama import Model, Context, StreamConfig
model = Model.load()
print("ready", flush=True)
for line in sys.stdin:
    max_tokens = int(line)
    config = StreamConfig(temperature=0, max_tokens=max_tokens, timeout_ms=0)
    start = time.perf_counter()
    first = None
    n = 0
    stream = Context(model).generate_stream(${JSON.stringify(PROMPT)}, config)
    for token in stream:
        if first is None:
            first = time.perf_counter() - start
        n += 1
    print(json.dumps({"ttft": first, "tps": stream.tokens_per_second(), "tokens": stream.tokens_generated}), flush=True)
`;

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function nodeRound(model, maxTokens) {
  const start = process.hrtime.bigint();
  let first = null;
  const stream = new Context(model).generateStream(PROMPT, { temperature: 0, maxTokens, timeoutMs: 0 });
  for await (const token of stream) {
    void token;
    if (first === null) first = Number(process.hrtime.bigint() - start) / 1e9;
  }
  return { ttft: first, tps: stream.tokensPerSecond(), tokens: stream.tokensGenerated };
}

/** One pair of fresh processes (Node's engine worker, the Python side): its rounds. */
async function processPair(rounds, maxTokens, python) {
  const child = spawn(python, ['-c', PYTHON_ROUNDS], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const nextLine = async () => (await lines.next()).value;
  const pythonRound = async (n) => {
    child.stdin.write(`${n}\n`);
    return JSON.parse(await nextLine());
  };
  const model = await Model.load();
  const pairs = [];
  try {
    if ((await nextLine()) !== 'ready') throw new Error('the Python side did not start');
    // One warm-up round each (first-call costs), then measured rounds, alternating which
    // side goes first.
    await nodeRound(model, 4);
    await pythonRound(4);
    for (let i = 0; i < rounds; i++) {
      const pair = {};
      if (i % 2 === 0) {
        pair.node = await nodeRound(model, maxTokens);
        pair.python = await pythonRound(maxTokens);
      } else {
        pair.python = await pythonRound(maxTokens);
        pair.node = await nodeRound(model, maxTokens);
      }
      pairs.push(pair);
    }
  } finally {
    model.close();
    child.stdin.end();
  }
  return pairs;
}

async function main() {
  // Several fresh process pairs: one process's forward pass can stay a few percent faster
  // than another's throughout (see bench_engine.py), which a single pair would report as
  // the stack's difference.
  const processes = argument('processes', 3);
  const rounds = argument('rounds', 5);
  const maxTokens = argument('max-tokens', 48);
  const python = process.env.MULLAMA_PYTHON || 'python3';
  const pairs = [];
  const byProcess = [];
  for (let p = 0; p < processes; p++) {
    const these = await processPair(rounds, maxTokens, python);
    pairs.push(...these);
    byProcess.push(median(these.map((r) => r.node.tps / r.python.tps)));
  }
  const row = (side) => ({
    tps: median(pairs.map((r) => r[side].tps)),
    ttft: median(pairs.map((r) => r[side].ttft)),
    tokens: median(pairs.map((r) => r[side].tokens)),
  });
  const node = row('node');
  const py = row('python');
  const paired = (key) => median(pairs.map((r) => r.node[key] / r.python[key]));
  console.log(
    `end to end, default model, greedy, ${maxTokens} max tokens, ${processes} fresh process pairs of ` +
      `${rounds} alternating rounds, medians, ${os.cpus().length} CPUs, load average ${os.loadavg()[0].toFixed(1)}`,
  );
  console.log('side        tok/s   TTFT ms   tokens');
  for (const [name, r] of [['Node', node], ['Python', py]]) {
    console.log(`${name.padEnd(8)}${r.tps.toFixed(1).padStart(8)}${(r.ttft * 1e3).toFixed(1).padStart(10)}${String(r.tokens).padStart(9)}`);
  }
  console.log(
    `ratio Node/Python (median of ${pairs.length} paired rounds): tok/s ${paired('tps').toFixed(3)} (target >= 0.95), ` +
      `TTFT ${paired('ttft').toFixed(3)} (target <= 1.1); tok/s by process pair: ${byProcess.map((x) => x.toFixed(3)).join(', ')}`,
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
