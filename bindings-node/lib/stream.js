'use strict';
// TokenStream: a native stream as an async iterable. `for await` reads events in batches;
// when none is ready it waits for the native readable callback (or the stream's deadline,
// since a stalled producer never calls back). `break`, `return()` and an AbortSignal close
// the stream, which stops the producer at its next token.

const binding = require('./binding');
const { CancelledError, errorFromInfo } = require('./errors');
const { toConfig } = require('./config');

// The id a closing event without a token carries in a native batch (u32::MAX).
const NO_TOKEN = 0xffffffff;
const NO_BATCH = { text: '', ends: new Uint32Array(0), ids: new Uint32Array(0), logprobs: null };

class TokenStream {
  #native;
  #hooks;
  #batch = NO_BATCH; // the last native read: events as columns (see ReadResult)
  #next = 0; // the next event of #batch to hand out
  #offset = 0; // where its text starts in #batch.text
  #done = false;
  #error = null;
  #closed = false;
  #wake = null;
  #timer = null;
  #signal = null;
  #onAbort = null;

  /**
   * @param native a NativeStream
   * @param hooks {signal?, afterRead?(), onClose?()}: afterRead runs after each native read
   *   (the worker client grants credits there), onClose once when the stream ends or is
 *   closed, however that happened (the worker client cancels the generation there);
 *   owner is kept alive as long as the stream.
   */
  constructor(native, hooks = {}) {
    this.#native = native;
    this.#hooks = hooks;
    // The callback holds the stream weakly: an abandoned stream can still be collected
    // (which closes its native side).
    const self = new WeakRef(this);
    native.onReadable(() => self.deref()?.#wakeUp());
    const signal = hooks.signal;
    if (signal != null) {
      if (signal.aborted) {
        this.#abort(signal.reason);
      } else {
        this.#signal = signal;
        this.#onAbort = () => this.#abort(signal.reason);
        signal.addEventListener('abort', this.#onAbort, { once: true });
      }
    }
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  async next() {
    for (;;) {
      const batch = this.#batch;
      if (this.#next < batch.ids.length) return { value: this.#event(batch, this.#next++), done: false };
      if (this.#error !== null) {
        const error = this.#error;
        this.#error = null;
        throw error;
      }
      if (this.#done) return { value: undefined, done: true };
      const read = this.#native.read();
      this.#hooks.afterRead?.();
      this.#batch = read;
      this.#next = 0;
      this.#offset = 0;
      if (read.done) {
        this.#end(read.error ? errorFromInfo(read.error) : null);
      } else if (read.ids.length === 0) {
        await this.#readable();
      }
    }
  }

  #event(batch, i) {
    const end = batch.ends[i];
    const text = batch.text.slice(this.#offset, end);
    this.#offset = end;
    const id = batch.ids[i];
    const logprob = batch.logprobs?.[i];
    const last = i === batch.ids.length - 1;
    return {
      text,
      id: id === NO_TOKEN ? undefined : id,
      logprob: logprob === undefined || Number.isNaN(logprob) ? undefined : logprob,
      finishReason: last ? (batch.finishReason ?? undefined) : undefined,
      stopSequence: last ? (batch.stopSequence ?? undefined) : undefined,
    };
  }

  /** Closes the stream (what `break` in `for await` calls). */
  async return(value) {
    this.close();
    return { value, done: true };
  }

  async throw(error) {
    this.close();
    throw error;
  }

  /** Stops the generation; iteration ends. Safe to call more than once. */
  close() {
    this.#batch = NO_BATCH;
    this.#end(null);
  }

  /** "stop", "length", "timeout", "cancelled" or "error" once ended; null before. */
  get finishReason() {
    return this.#native.finishReason ?? null;
  }

  get stopSequence() {
    return this.#native.stopSequence ?? null;
  }

  /** Tokens generated so far. */
  get tokensGenerated() {
    return this.#native.tokensGenerated;
  }

  /** Generation speed: tokens after the first, per second since the first. */
  tokensPerSecond() {
    return this.#native.tokensPerSecond();
  }

  /** promptTokens, promptTps, generationTokens, generationTps, timeToFirstToken, elapsed, ... */
  stats() {
    return this.#native.stats();
  }

  /** Reads the whole stream; resolves to its text. */
  async text() {
    let text = '';
    for await (const token of this) text += token.text;
    return text;
  }

  #end(error) {
    if (this.#closed) return;
    this.#done = true;
    this.#closed = true;
    if (error !== null) this.#error = error;
    this.#native.close();
    if (this.#signal !== null) {
      this.#signal.removeEventListener('abort', this.#onAbort);
      this.#signal = null;
    }
    this.#wakeUp();
    this.#hooks.onClose?.();
  }

  #abort(reason) {
    if (this.#closed) return;
    const message =
      reason instanceof Error ? `the generation was aborted: ${reason.message}` : 'the generation was aborted';
    this.#batch = NO_BATCH;
    this.#next = 0;
    this.#end(new CancelledError(message, { cause: reason }));
  }

  #readable() {
    return new Promise((resolve) => {
      this.#wake = resolve;
      const left = this.#native.timeLeftMs();
      if (left !== null) this.#timer = setTimeout(() => this.#wakeUp(), Math.ceil(left) + 1);
    });
  }

  #wakeUp() {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}

/**
 * A stream over a fixed list of pieces (token i = pieces[i], strings or Buffers), pushed in
 * order by a native thread; for tests of code that consumes streams.
 */
function streamFromPieces(pieces, config, options = {}) {
  if (!Array.isArray(pieces)) throw new TypeError('pieces must be an array of strings or Buffers');
  const checked = toConfig(config);
  const native = binding.streamFromPieces(pieces, checked.toJSON(), options.delayMs ?? 0);
  return new TokenStream(native, { signal: options.signal });
}

module.exports = { TokenStream, streamFromPieces };
