'use strict';
// Tokenizer: the core tokenizer (the same ids as Python and llama.cpp), errors as classes.

const binding = require('./binding');
const { native } = require('./errors');

class Tokenizer {
  #native;

  /** @internal use Tokenizer.fromGguf / Tokenizer.fromJson */
  constructor(nativeTokenizer) {
    if (!(nativeTokenizer instanceof binding.Tokenizer)) {
      throw new TypeError('use Tokenizer.fromGguf(path) or Tokenizer.fromJson(path)');
    }
    this.#native = nativeTokenizer;
  }

  static fromGguf(path) {
    return new Tokenizer(native(() => binding.Tokenizer.fromGguf(String(path))));
  }

  static fromJson(path) {
    return new Tokenizer(native(() => binding.Tokenizer.fromJson(String(path))));
  }

  encode(text, { special = true, addBos = false } = {}) {
    return native(() => this.#native.encode(text, special, addBos));
  }

  decode(ids, { skipSpecial = false } = {}) {
    return native(() => this.#native.decode(ids, skipSpecial));
  }

  tokenBytes(id, { special = false } = {}) {
    return native(() => this.#native.tokenBytes(id, special));
  }

  isEndOfGeneration(id) {
    return this.#native.isEndOfGeneration(id);
  }

  get vocabSize() {
    return this.#native.vocabSize;
  }

  get bosTokenId() {
    return this.#native.bosTokenId ?? null;
  }

  get eosTokenId() {
    return this.#native.eosTokenId ?? null;
  }

  get addBos() {
    return this.#native.addBos;
  }

  get chatTemplate() {
    return this.#native.chatTemplate ?? null;
  }

  get endOfGenerationIds() {
    return this.#native.endOfGenerationIds;
  }

  /** The native tokenizer, for streams over this vocabulary. */
  static nativeOf(tokenizer) {
    return tokenizer.#native;
  }
}

module.exports = { Tokenizer };
