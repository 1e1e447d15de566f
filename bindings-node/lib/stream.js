'use strict';
// TokenStream: a native stream as an async iterable. `for await` reads events in batches;
// when none is ready it waits for the native readable callback (or the stream's deadline,
// since a stalled producer never calls back). `break`, `return()` and an AbortSignal close
// the stream, which stops the producer at its next token.

const binding = require('./binding');
const { CancelledError, errorFromInfo } = require('./errors');
const { toConfig } = require('./config');

const {
  READ_HEADER: HEADER,
  READ_STRIDE: STRIDE,
  READ_COLUMNS,
  READ_EMPTY,
  READ_END,
  READ_ERROR,
} = binding;
// A row's columns in a native read (see src/stream.rs): the text's end, id, logprob, where
// its top pairs are and how many, then the statistics in the core's order.
const COL_END = 0;
const COL_ID = 1;
const COL_LOGPROB = 2;
const COL_TOP_AT = 3;
const COL_TOP_COUNT = 4;
const COL_STATS = 5;
const NO_ALTERNATIVES = Object.freeze([]);
// Reads' rows are copied into a shared array rather than an array per read (which cost a few
// percent of a fast stream's throughput). Each new array is twice the last, up to
// STATS_POOL numbers (16 full reads), so a short stream holds little.
const STATS_POOL = 16 * 64 * STRIDE;

function present(x) {
  return Number.isNaN(x) ? undefined : x;
}

/** The [id, logprob] pairs of the row at `row` (best first). */
function alternatives(columns, row) {
  const count = columns[row + COL_TOP_COUNT];
  if (count === 0) return NO_ALTERNATIVES;
  const at = columns[row + COL_TOP_AT];
  const pairs = new Array(count);
  for (let i = 0; i < count; i++) pairs[i] = [columns[at + 2 * i], columns[at + 2 * i + 1]];
  return pairs;
}

/**
 * One event of a stream. The text, id, logprob, alternatives and end are own fields; the
 * statistics are read on access from the stream's snapshot of its read (one copy per read,
 * shared by its events), since most consumers never look at them.
 */
class Token {
  constructor(text, id, logprob, topLogprobs, stats, at) {
    this.text = text;
    this.id = id;
    this.logprob = logprob;
    this.topLogprobs = topLogprobs;
    this.finishReason = undefined;
    this.stopSequence = undefined;
    this.#stats = stats;
    this.#at = at;
  }

  #stats;
  #at;

  get promptTokens() {
    return this.#stats[this.#at];
  }

  get promptTps() {
    return this.#stats[this.#at + 1];
  }

  get generationTokens() {
    return this.#stats[this.#at + 2];
  }

  get generationTps() {
    return this.#stats[this.#at + 3];
  }

  get timeToFirstToken() {
    return present(this.#stats[this.#at + 4]) ?? null;
  }

  get elapsed() {
    return this.#stats[this.#at + 5];
  }

  get peakMemory() {
    return this.#stats[this.#at + 6];
  }

  /** Every field, statistics included: what JSON.stringify shows. */
  toJSON() {
    const { text, id, logprob, topLogprobs, finishReason, stopSequence } = this;
    return {
      text,
      id,
      logprob,
      topLogprobs,
      finishReason,
      stopSequence,
      promptTokens: this.promptTokens,
      promptTps: this.promptTps,
      generationTokens: this.generationTokens,
      generationTps: this.generationTps,
      timeToFirstToken: this.timeToFirstToken,
      elapsed: this.elapsed,
      peakMemory: this.peakMemory,
    };
  }
}

class TokenStream {
  #native;
  #hooks;
  #columns = new Float64Array(READ_COLUMNS); // what each native read writes
  #text = ''; // the last read's text, every event's concatenated
  #count = 0; // how many events it found
  #next = 0; // the next one to hand out
  #offset = 0; // where its text starts in #text
  #lastEnds = false; // whether the read's last event ends the stream
  #stats = null; // where the last read's rows were copied (its events' statistics)...
  #statsAt = 0; // ...from this index
  #statsUsed = 0; // how much of #stats earlier reads took
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

  next() {
    // The common case, an event already read, settles at once: no async function frame.
    if (this.#next < this.#count) return Promise.resolve({ value: this.#event(this.#next++), done: false });
    return this.#nextRead();
  }

  async #nextRead() {
    for (;;) {
      if (this.#next < this.#count) return { value: this.#event(this.#next++), done: false };
      if (this.#error !== null) {
        const error = this.#error;
        this.#error = null;
        throw error;
      }
      if (this.#done) return { value: undefined, done: true };
      if (this.#read()) await this.#readable();
    }
  }

  /** One native read; whether it found nothing (then the readable callback will come). */
  #read() {
    const columns = this.#columns;
    this.#text = this.#native.read(columns);
    this.#hooks.afterRead?.();
    this.#count = columns[0];
    this.#next = 0;
    this.#offset = 0;
    this.#lastEnds = columns[3] === 1;
    const rows = this.#count * STRIDE;
    if (rows > 0) {
      if (this.#stats === null || this.#statsUsed + rows > this.#stats.length) {
        const grown = this.#stats === null ? 4 * rows : 2 * this.#stats.length;
        this.#stats = new Float64Array(Math.max(rows, Math.min(STATS_POOL, grown)));
        this.#statsUsed = 0;
      }
      this.#stats.set(columns.subarray(HEADER, HEADER + rows), this.#statsUsed);
      this.#statsAt = this.#statsUsed;
      this.#statsUsed += rows;
    }
    const state = columns[1];
    if (state === READ_END) this.#end(null);
    else if (state === READ_ERROR) this.#end(errorFromInfo(this.#native.takeError()));
    return state === READ_EMPTY;
  }

  /**
   * Event i of the last read, as a Token. Built as it is handed out, straight from the
   * columns (the next read, which overwrites them, comes only after the last event); its
   * statistics stay in the read's copy of its rows.
   */
  #event(i) {
    const columns = this.#columns;
    const row = HEADER + i * STRIDE;
    const end = columns[row + COL_END];
    const event = new Token(
      this.#text.slice(this.#offset, end),
      present(columns[row + COL_ID]),
      present(columns[row + COL_LOGPROB]),
      alternatives(columns, row),
      this.#stats,
      this.#statsAt + i * STRIDE + COL_STATS,
    );
    this.#offset = end;
    if (this.#lastEnds && i === this.#count - 1) {
      event.finishReason = this.#native.finishReason ?? undefined;
      event.stopSequence = this.#native.stopSequence ?? undefined;
    }
    return event;
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
    this.#count = 0;
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
    this.#count = 0;
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
 * order as the consumer reads (or by a native thread every `delayMs`); for tests of code that
 * consumes streams.
 */
function streamFromPieces(pieces, config, options = {}) {
  if (!Array.isArray(pieces)) throw new TypeError('pieces must be an array of strings or Buffers');
  const checked = toConfig(config);
  // Packed into one buffer here: one native argument instead of a conversion per piece.
  const ends = new Uint32Array(pieces.length);
  let size = 0;
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i];
    if (typeof piece === 'string') size += Buffer.byteLength(piece, 'utf8');
    else if (piece instanceof Uint8Array) size += piece.length;
    else throw new TypeError(`pieces[${i}] must be a string or a Buffer, not ${typeof piece}`);
    ends[i] = size;
  }
  const bytes = Buffer.allocUnsafe(size);
  for (let i = 0, at = 0; i < pieces.length; i++) {
    const piece = pieces[i];
    if (typeof piece === 'string') bytes.write(piece, at, 'utf8');
    else bytes.set(piece, at);
    at = ends[i];
  }
  const native = binding.streamFromPieces(bytes, ends, checked.toJSON(), options.delayMs ?? 0);
  return new TokenStream(native, { signal: options.signal });
}

module.exports = { TokenStream, streamFromPieces };
