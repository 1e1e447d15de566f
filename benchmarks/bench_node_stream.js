#!/usr/bin/env node
'use strict';
// Node stream throughput: streamFromPieces (byte pieces pushed into the core as reads free
// room: detokenization, 16 stop sequences that never match, 64-slot channel) -> `for await`,
// against
// a pure-JS pipeline doing the same work (an async generator -> TextDecoder({stream: true}) ->
// naive stop search over the withheld tail). Both must release the same text.
// Targets (issue 11): >= 300k tokens/s and >= 3x the baseline with 16 stops.
//
// Throughput counts from the stream's creation to its last event. streamFromPieces first
// packs the piece list into the stream's vocabulary (token i = piece i, so 300k pieces are a
// 300k-entry vocabulary; a model's tokenizer is built once instead): that setup is timed on
// its own and shown, with the ratio it gives when counted in.
//
//   node benchmarks/bench_node_stream.js [--tokens 300000] [--repeats 10] [--also DIR]
// --also DIR measures a second build of the package (e.g. a checkout of an older commit, built)
// in the same run, for before/after ratios.
// (build the addon first: cd bindings-node && npx napi build --platform --release ...)

const os = require('node:os');
const path = require('node:path');

const PACKAGES = [['mullama', path.join(__dirname, '..', 'bindings-node')]];

const BUFFER = 64;
// The same stops and text as bench_stream.py: the text has their first characters (newlines,
// '<', '#', '[') so the withholding logic runs, but never a whole stop.
const STOPS = [
  '<|im_end|>', '<|endoftext|>', '<|eot_id|>', '</s>', '<end_of_turn>', '\n\nHuman:', '\n\nUser:',
  '\nUser:', '###', '[/INST]', '[INST]', 'Observation:', '\nQ:', '<|user|>', '<|assistant|>',
  'END_OF_ANSWER',
];
const WORDS = (
  'the model streams tokens to the consumer while the producer keeps going and ' +
  'nothing is lost or repeated when the buffer fills up so memory stays flat ' +
  'ünïcödé naïve café 東京 数据 流 🙂 🚀 <b> # [x] Obs User Q'
).split(' ');

function argument(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? process.argv[at + 1] : fallback;
}

/** Token-like byte pieces: " word" pieces, newlines, and pieces cutting characters in half. */
function makePieces(count, seed = 1) {
  let state = seed;
  const random = () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
  const vocab = [];
  for (const word of WORDS) {
    const data = Buffer.from(` ${word}`);
    if (data.length !== word.length + 1) {
      const cut = data.length >> 1;
      vocab.push([data.subarray(0, cut), data.subarray(cut)]);
    }
    vocab.push([data]);
  }
  for (const s of ['\n', '\n\n', '.', ',']) vocab.push([Buffer.from(s)]);
  const pieces = [];
  while (pieces.length < count) pieces.push(...vocab[Math.floor(random() * vocab.length)]);
  return pieces.slice(0, count);
}

/** Stream throughput of one package: {setup seconds, stream seconds, characters released}. */
async function runMullama(streamFromPieces, pieces, stops) {
  const start = process.hrtime.bigint();
  const stream = streamFromPieces(pieces, { maxTokens: pieces.length + 1, stopSequences: stops, bufferSize: BUFFER, timeoutMs: 0 });
  const created = process.hrtime.bigint();
  let chars = 0;
  for await (const token of stream) chars += token.text.length;
  const end = process.hrtime.bigint();
  return { setup: Number(created - start) / 1e9, seconds: Number(end - created) / 1e9, result: chars };
}

async function* produce(pieces) {
  for (const piece of pieces) yield piece;
}

async function runJs(pieces, stops) {
  const start = process.hrtime.bigint();
  const result = await runJsPipeline(pieces, stops);
  return { setup: 0, seconds: Number(process.hrtime.bigint() - start) / 1e9, result };
}

async function runJsPipeline(pieces, stops) {
  const decoder = new TextDecoder('utf-8', { fatal: false });
  const longest = Math.max(0, ...stops.map((s) => s.length));
  let held = '';
  let chars = 0;
  for await (const piece of produce(pieces)) {
    const text = held + decoder.decode(piece, { stream: true });
    let cut = -1;
    for (const stop of stops) {
      const at = text.indexOf(stop);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) return chars + cut;
    // Withhold the longest tail that could still begin a stop.
    let keep = 0;
    for (let k = Math.min(longest - 1, text.length); k > 0; k--) {
      const tail = text.slice(-k);
      if (stops.some((stop) => stop.startsWith(tail))) {
        keep = k;
        break;
      }
    }
    held = keep ? text.slice(-keep) : '';
    chars += text.length - keep;
  }
  return chars + held.length + decoder.decode().length;
}

const fmt = (x, width) => Math.round(x).toLocaleString('en').padStart(width);

async function main() {
  const tokens = Number(argument('tokens', 300_000));
  const repeats = Number(argument('repeats', 10));
  const also = argument('also', null);
  const loadBefore = os.loadavg()[0].toFixed(1);
  if (also !== null) PACKAGES.push([`also: ${also}`, path.resolve(also)]);
  const sides = PACKAGES.map(([name, dir]) => [name, require(dir).streamFromPieces]);
  const pieces = makePieces(tokens);
  const rows = [];
  for (const [workload, stops] of [['16 stops', STOPS], ['no stops', []]]) {
    // Best of `repeats`, the sides taking turns so that a change in load hits them alike.
    const runs = [...sides.map(([name, fn]) => [name, () => runMullama(fn, pieces, stops)]), ['pure JS', () => runJs(pieces, stops)]];
    const best = new Map(runs.map(([name]) => [name, { rate: 0, withSetup: 0, setup: Infinity }]));
    let expected = null;
    for (let i = 0; i < repeats; i++) {
      for (const [name, run] of runs) {
        const { setup, seconds, result } = await run();
        if (expected === null) expected = result;
        if (result !== expected) throw new Error(`${workload}: ${name} released ${result} characters, the first side ${expected}`);
        const b = best.get(name);
        b.rate = Math.max(b.rate, tokens / seconds);
        b.withSetup = Math.max(b.withSetup, tokens / (seconds + setup));
        b.setup = Math.min(b.setup, setup);
      }
    }
    rows.push([workload, best]);
  }
  const loadAfter = os.loadavg()[0].toFixed(1);
  console.log(
    `node stream throughput: ${tokens.toLocaleString('en')} tokens, best of ${repeats}, ` +
      `${os.cpus().length} CPUs, load average ${loadBefore} before the run, ${loadAfter} after`,
  );
  console.log('workload  side                       tok/s  setup ms  ratio to pure JS  with setup');
  for (const [workload, best] of rows) {
    const js = best.get('pure JS').rate;
    for (const [name, b] of best) {
      const setup = name === 'pure JS' ? '-' : (b.setup * 1e3).toFixed(1);
      const ratio = name === 'pure JS' ? '' : `${(b.rate / js).toFixed(2)}x`;
      const withSetup = name === 'pure JS' ? '' : `${(b.withSetup / js).toFixed(2)}x`;
      console.log(`${workload.padEnd(10)}${name.padEnd(22)}${fmt(b.rate, 11)}  ${setup.padStart(8)}  ${ratio.padStart(16)}  ${withSetup.padStart(10)}`);
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
