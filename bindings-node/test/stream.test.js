'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const {
  streamFromPieces,
  StreamConfig,
  CancelledError,
  StreamTimeoutError,
  MullamaError,
  ConfigError,
} = require('..');

const WORDS = ['Hello', ',', ' wor', 'ld', '!'];

async function readAll(stream) {
  const events = [];
  for await (const token of stream) events.push(token);
  return events;
}

test('for await yields every piece, then the stream tells how it ended', async () => {
  const stream = streamFromPieces(WORDS, { timeoutMs: 5000 });
  const events = await readAll(stream);
  assert.equal(events.map((e) => e.text).join(''), 'Hello, world!');
  assert.deepEqual(
    events.filter((e) => e.id !== undefined).map((e) => e.id),
    [0, 1, 2, 3, 4],
  );
  assert.equal(events.at(-1).finishReason, 'stop');
  assert.equal(stream.finishReason, 'stop');
  assert.equal(stream.tokensGenerated, 5);
  assert.ok(stream.tokensPerSecond() >= 0);
  const stats = stream.stats();
  assert.equal(stats.generationTokens, 5);
  assert.equal(typeof stats.timeToFirstToken, 'number');
});

test('a stop sequence split across tokens ends the stream without its text', async () => {
  const stream = streamFromPieces(['one ', 'tw', 'o EN', 'D three'], { stopSequences: ['END'] });
  assert.equal(await stream.text(), 'one two ');
  assert.equal(stream.finishReason, 'stop');
  assert.equal(stream.stopSequence, 'END');
});

test('maxTokens ends with finishReason "length"', async () => {
  const stream = streamFromPieces(WORDS, 2);
  assert.equal(await stream.text(), 'Hello,');
  assert.equal(stream.finishReason, 'length');
});

test('a character split across byte pieces comes out whole', async () => {
  const bytes = Buffer.from('👋 世界', 'utf8');
  const pieces = [...bytes].map((b) => Buffer.from([b]));
  const events = await readAll(streamFromPieces(pieces));
  assert.equal(events.map((e) => e.text).join(''), '👋 世界');
  assert.ok(events.every((e) => !e.text.includes('\ufffd')));
});

test('break closes the stream and stops its producer', async () => {
  const pieces = Array.from({ length: 10_000 }, (_, i) => `${i} `);
  const stream = streamFromPieces(pieces, { bufferSize: 4, maxTokens: 10_000 });
  let seen = 0;
  for await (const token of stream) {
    void token;
    if (++seen === 3) break;
  }
  assert.equal(stream.finishReason, 'cancelled');
  // Backpressure: the producer never ran more than the buffer (and one batch) ahead.
  assert.ok(stream.tokensGenerated <= seen + 2 * 4 + 1, `generated ${stream.tokensGenerated}`);
  assert.deepEqual(await stream.next(), { value: undefined, done: true });
});

test('return() ends iteration; close() is idempotent', async () => {
  const stream = streamFromPieces(WORDS);
  assert.equal((await stream.next()).value.text, 'Hello');
  assert.deepEqual(await stream.return(), { value: undefined, done: true });
  stream.close();
  assert.deepEqual(await stream.next(), { value: undefined, done: true });
});

test('an AbortSignal ends a waiting read with CancelledError', async () => {
  const controller = new AbortController();
  const stream = streamFromPieces(WORDS, { timeoutMs: 0 }, { delayMs: 60_000, signal: controller.signal });
  const pending = stream.next();
  setTimeout(() => controller.abort(new Error('user left')), 20);
  await assert.rejects(pending, (err) => {
    assert.ok(err instanceof CancelledError && err instanceof MullamaError);
    assert.equal(err.code, 'CANCELLED');
    assert.match(err.message, /user left/);
    return true;
  });
  assert.equal(stream.finishReason, 'cancelled');
});

test('an already aborted signal fails the first read', async () => {
  const stream = streamFromPieces(WORDS, {}, { signal: AbortSignal.abort() });
  await assert.rejects(stream.next(), { code: 'CANCELLED' });
});

test('a stalled producer ends at the deadline with STREAM_TIMEOUT', async () => {
  const stream = streamFromPieces(WORDS, { timeoutMs: 50 }, { delayMs: 60_000 });
  await assert.rejects(readAll(stream), (err) => {
    assert.ok(err instanceof StreamTimeoutError);
    assert.equal(err.code, 'STREAM_TIMEOUT');
    assert.equal(err.timeoutMs, 50);
    assert.match(err.message, /timeoutMs=50/);
    return true;
  });
  assert.equal(stream.finishReason, 'timeout');
});

test('many streams read side by side each get their own text', async () => {
  const streams = Array.from({ length: 20 }, (_, i) => streamFromPieces([`s${i}`, '-', 'end'], { bufferSize: 1 }));
  const texts = await Promise.all(streams.map((s) => s.text()));
  assert.deepEqual(texts, streams.map((_, i) => `s${i}-end`));
});

test('bad arguments are typed errors', () => {
  assert.throws(() => streamFromPieces(WORDS, { maxTokens: 0 }), ConfigError);
  assert.throws(() => streamFromPieces('abc'), TypeError);
  assert.throws(() => streamFromPieces(WORDS, new StreamConfig(), { delayMs: -1 }));
});

test('each event carries the statistics at that point, as Python tokens do', async () => {
  const events = await readAll(streamFromPieces(WORDS));
  // Five tokens, then the closing event (no token of its own).
  assert.deepEqual(
    events.map((e) => e.generationTokens),
    [1, 2, 3, 4, 5, 5],
  );
  for (const [i, event] of events.entries()) {
    assert.equal(typeof event.timeToFirstToken, 'number');
    assert.ok(event.elapsed >= (i > 0 ? events[i - 1].elapsed : 0), 'elapsed never goes back');
    assert.equal(event.promptTokens, 0);
    assert.equal(event.peakMemory, 0, 'no engine, no memory report');
    assert.deepEqual(event.topLogprobs, [], 'no alternatives unless asked for');
    assert.equal(event.logprob, undefined);
  }
  const last = JSON.parse(JSON.stringify(events.at(-1)));
  assert.equal(last.finishReason, 'stop');
  assert.equal(last.generationTokens, 5);
});

test('a batch larger than one read is handed out whole, in order', async () => {
  // 64 events per read at most; 3000 one-byte pieces with bufferSize 1000 take many reads,
  // more than one array of copied statistics holds (16 full reads).
  const pieces = Array.from({ length: 3000 }, (_, i) => String.fromCharCode(97 + (i % 26)));
  const events = await readAll(streamFromPieces(pieces, { bufferSize: 1000, maxTokens: 5000 }));
  assert.equal(events.map((e) => e.text).join(''), pieces.join(''));
  assert.deepEqual(events.slice(0, 3000).map((e) => e.id), pieces.map((_, i) => i));
  // Each event keeps its own statistics after later reads overwrote the read columns.
  assert.deepEqual(events.slice(0, 3000).map((e) => e.generationTokens), pieces.map((_, i) => i + 1));
});

test('a piece that is neither text nor bytes is a TypeError naming it', () => {
  assert.throws(() => streamFromPieces(['a', 5]), (err) => err instanceof TypeError && /pieces\[1\]/.test(err.message));
});
