'use strict';
// The engine worker's framing: a 4-byte big-endian length, then that many bytes of UTF-8
// JSON (python/mullama/worker.py is the other end).

const MAX_FRAME_BYTES = 64 * 1024 * 1024;

function encodeFrame(message) {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  const header = Buffer.allocUnsafe(4);
  header.writeUInt32BE(body.length, 0);
  return Buffer.concat([header, body]);
}

/** Splits a byte stream into frames; push() returns the complete ones. */
class FrameReader {
  #pending = Buffer.alloc(0);

  push(chunk) {
    this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const frames = [];
    let at = 0;
    while (this.#pending.length - at >= 4) {
      const size = this.#pending.readUInt32BE(at);
      if (size > MAX_FRAME_BYTES) throw new Error(`frame of ${size} bytes is over the limit`);
      if (this.#pending.length - at - 4 < size) break;
      frames.push(JSON.parse(this.#pending.toString('utf8', at + 4, at + 4 + size)));
      at += 4 + size;
    }
    this.#pending = this.#pending.subarray(at);
    return frames;
  }
}

module.exports = { encodeFrame, FrameReader };
