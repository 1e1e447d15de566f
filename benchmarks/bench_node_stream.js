#!/usr/bin/env node
'use strict';
// Node stream throughput: streamFromPieces (a Rust thread pushes byte pieces -> core:
// detokenization, 16 stop sequences that never match, 64-slot channel) -> `for await`, against
// a pure-JS pipeline doing the same work (an async generator -> TextDecoder({stream: true}) ->
// naive stop search over the withheld tail). Both must release the same text.
// Targets (issue 11): >= 300k tokens/s and >= 3x the baseline with 16 stops.
//
//   node benchmarks/bench_node_stream.js [--tokens 300000] [--repeats 5]
// (build the addon first: cd bindings-node && npx napi build --platform --release ...)

const os = require('node:os');
const path = require('node:path');
const { streamFromPieces } = require(path.join(__dirname, '..', 'bindings-node'));

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
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
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

async function runMullama(pieces, stops) {
  const stream = streamFromPieces(pieces, { maxTokens: pieces.length + 1, stopSequences: stops, bufferSize: BUFFER, timeoutMs: 0 });
  let chars = 0;
  for await (const token of stream) chars += token.text.length;
  return chars;
}

async function* produce(pieces) {
  for (const piece of pieces) yield piece;
}

async function runJs(pieces, stops) {
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

async function bestRate(run, tokens, repeats) {
  let best = 0;
  let result = 0;
  for (let i = 0; i < repeats; i++) {
    const start = process.hrtime.bigint();
    result = await run();
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    best = Math.max(best, tokens / seconds);
  }
  return { rate: best, result };
}

async function main() {
  const tokens = argument('tokens', 300_000);
  const repeats = argument('repeats', 5);
  const pieces = makePieces(tokens);
  const rows = [];
  for (const [name, stops] of [['16 stops', STOPS], ['no stops', []]]) {
    const mullama = await bestRate(() => runMullama(pieces, stops), tokens, repeats);
    const js = await bestRate(() => runJs(pieces, stops), tokens, repeats);
    if (mullama.result !== js.result) {
      throw new Error(`${name}: mullama released ${mullama.result} characters, the baseline ${js.result}`);
    }
    rows.push([name, mullama.rate, js.rate]);
  }
  const load = os.loadavg()[0].toFixed(1);
  console.log(`node stream throughput: ${tokens.toLocaleString('en')} tokens, best of ${repeats}, ${os.cpus().length} CPUs, load average ${load}`);
  console.log('workload     mullama tok/s  pure JS tok/s   ratio');
  for (const [name, ours, theirs] of rows) {
    const fmt = (x) => Math.round(x).toLocaleString('en').padStart(13);
    console.log(`${name.padEnd(10)}${fmt(ours)}  ${fmt(theirs)}  ${(ours / theirs).toFixed(1).padStart(5)}x`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
