#!/usr/bin/env node
'use strict';
// End to end on the default model: Node (native core + engine worker) against Python
// (Context.generate_stream in-process), same prompt, same engine, greedy. Rounds alternate
// between the two so both see the same machine load; medians are compared.
// Targets (issue 11): tok/s ratio Node/Python >= 0.95, TTFT ratio Node/Python <= 1.1.
//
//   MULLAMA_PYTHON=.venv/bin/python node benchmarks/bench_node_e2e.js [--rounds 5] [--max-tokens 48]

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

async function main() {
  const rounds = argument('rounds', 5);
  const maxTokens = argument('max-tokens', 48);
  const python = process.env.MULLAMA_PYTHON || 'python3';
  const child = spawn(python, ['-c', PYTHON_ROUNDS], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const nextLine = async () => (await lines.next()).value;
  const model = await Model.load();
  if ((await nextLine()) !== 'ready') throw new Error('the Python side did not start');
  const results = { node: [], python: [] };
  try {
    // One warm-up round each (first-call costs), then alternating measured rounds.
    await nodeRound(model, 4);
    child.stdin.write('4\n');
    await nextLine();
    for (let i = 0; i < rounds; i++) {
      results.node.push(await nodeRound(model, maxTokens));
      child.stdin.write(`${maxTokens}\n`);
      results.python.push(JSON.parse(await nextLine()));
    }
  } finally {
    model.close();
    child.stdin.end();
  }
  const row = (side) => ({
    tps: median(results[side].map((r) => r.tps)),
    ttft: median(results[side].map((r) => r.ttft)),
    tokens: median(results[side].map((r) => r.tokens)),
  });
  const node = row('node');
  const py = row('python');
  console.log(
    `end to end, default model, greedy, ${maxTokens} max tokens, median of ${rounds} alternating rounds, ` +
      `${os.cpus().length} CPUs, load average ${os.loadavg()[0].toFixed(1)}`,
  );
  console.log('side        tok/s   TTFT ms   tokens');
  for (const [name, r] of [['Node', node], ['Python', py]]) {
    console.log(`${name.padEnd(8)}${r.tps.toFixed(1).padStart(8)}${(r.ttft * 1e3).toFixed(1).padStart(10)}${String(r.tokens).padStart(9)}`);
  }
  console.log(`ratio Node/Python: tok/s ${(node.tps / py.tps).toFixed(3)} (target >= 0.95), TTFT ${(node.ttft / py.ttft).toFixed(3)} (target <= 1.1)`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
