'use strict';
// The shared stream vectors (testdata/stream_vectors.jsonl), read by the Rust and Python tests
// too: Node streams give the same text, byte for byte, and the same ending.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { streamFromPieces } = require('..');
const { REPO_ROOT } = require('./support');

const VECTORS = fs
  .readFileSync(path.join(REPO_ROOT, 'testdata', 'stream_vectors.jsonl'), 'utf8')
  .split('\n')
  .filter((line) => line !== '')
  .map((line) => JSON.parse(line));

const camel = (name) => name.replace(/_([a-z])/g, (_, c) => c.toUpperCase());

test('there are vectors', () => assert.ok(VECTORS.length >= 10));

for (const vector of VECTORS) {
  test(`vector: ${vector.name}`, async () => {
    const config = Object.fromEntries(Object.entries(vector.config).map(([k, v]) => [camel(k), v]));
    const pieces = vector.pieces_hex.map((hex) => Buffer.from(hex, 'hex'));
    const stream = streamFromPieces(pieces, config);
    const text = await stream.text();
    assert.equal(Buffer.from(text).toString('hex'), Buffer.from(vector.text).toString('hex'));
    assert.equal(stream.finishReason, vector.finish_reason);
    assert.equal(stream.stopSequence, vector.stop_sequence);
  });
}
