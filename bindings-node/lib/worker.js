'use strict';
// EngineWorker: the Python process that runs one model's forward pass
// (`python -m mullama worker MODEL`), and the streams it feeds. Tokens arrive as ids on the
// worker's stdout and are pushed into native streams on this thread; each stream gives the
// worker credits as its consumer reads, so a push never finds a full buffer and a slow
// consumer pauses only its own generation.

const { spawn } = require('node:child_process');
const binding = require('./binding');
const { TokenStream } = require('./stream');
const { Tokenizer } = require('./tokenizer');
const { EngineExitedError, ModelLoadError } = require('./errors');
const { encodeFrame, FrameReader } = require('./frames');

const STDERR_TAIL_BYTES = 4000;
const INSTALL_HINT =
  'install mullama for that interpreter (pip install mullama), or point MULLAMA_PYTHON at an ' +
  'interpreter that has it';

/** The interpreter that runs workers: MULLAMA_PYTHON, else python3 on PATH. */
function workerPython() {
  return process.env.MULLAMA_PYTHON || 'python3';
}

function snakeCase(name) {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** The sampling part of a config, as the worker's StreamConfig takes it. */
function workerConfig(config) {
  const out = {};
  for (const [key, value] of Object.entries(config.toJSON())) out[snakeCase(key)] = value;
  // The deadline is the front end's (its core enforces it); the worker has none of its own.
  out.timeout_ms = 0;
  return out;
}

class EngineWorker {
  #child;
  #streams = new Map();
  #nextStream = 1;
  #exited = null;
  #stderrTail = '';
  #frames = new FrameReader();
  #ready;
  info = null;
  tokenizer = null;

  constructor(modelPath) {
    const python = workerPython();
    const args = ['-m', 'mullama', 'worker'];
    if (modelPath != null) args.push(String(modelPath));
    this.command = `${python} ${args.join(' ')}`;
    this.#child = spawn(python, args, { stdio: ['pipe', 'pipe', 'pipe'], windowsHide: true });
    this.#ready = new Promise((resolve, reject) => {
      this.#child.once('error', (err) => {
        reject(
          new ModelLoadError(`cannot start the engine worker (${this.command}): ${err.message}; ${INSTALL_HINT}`),
        );
      });
      this.#child.once('exit', (code, signal) => {
        this.#exited = { code, signal };
        const why = this.#exitText();
        const hint = /No module named/.test(this.#stderrTail) ? `; ${INSTALL_HINT}` : '';
        reject(new ModelLoadError(`the engine worker (${this.command}) exited before the model loaded: ${why}${hint}`));
        this.#failAll(why);
      });
      this.#onFrame = (frame) => {
        if (frame.op === 'ready') {
          this.info = frame.model;
          resolve();
        } else if (frame.op === 'load_error') {
          const hint = /No module named/.test(frame.message) ? `; ${INSTALL_HINT}` : '';
          reject(new ModelLoadError(`${frame.message}${hint}`));
        } else {
          this.#dispatch(frame);
        }
      };
    });
    this.#child.stdout.on('data', (chunk) => {
      let frames;
      try {
        frames = this.#frames.push(chunk);
      } catch (err) {
        this.#stderrTail += `\n(bad frame from the worker: ${err.message})`;
        this.kill();
        return;
      }
      for (const frame of frames) this.#onFrame(frame);
    });
    this.#child.stderr.on('data', (chunk) => {
      this.#stderrTail = (this.#stderrTail + chunk.toString('utf8')).slice(-STDERR_TAIL_BYTES);
    });
    // A broken pipe shows as the exit; nothing to do on the write side.
    this.#child.stdin.on('error', () => {});
    // Loading holds the event loop open, as an open stream does.
    this.#busy();
    const settle = () => {
      if (this.#streams.size === 0) this.#idle();
    };
    this.#ready.then(settle, settle);
  }

  #onFrame;

  /** Starts a worker for `modelPath` and waits until its model is loaded. */
  static async start(modelPath) {
    const worker = new EngineWorker(modelPath);
    try {
      await worker.#ready;
      const { kind, path } = worker.info.tokenizer;
      worker.tokenizer = kind === 'gguf' ? Tokenizer.fromGguf(path) : Tokenizer.fromJson(path);
    } catch (err) {
      worker.kill();
      throw err;
    }
    return worker;
  }

  get alive() {
    return this.#exited === null;
  }

  /** The worker's process id (for tests). */
  get pid() {
    return this.#child.pid;
  }

  /**
   * Starts a generation on `contextId` and returns its stream. `request` is {prompt} or
   * {messages}; `config` a StreamConfig; `topLogprobs` how many alternatives each event
   * carries (checked by the caller against `info.max_top_logprobs`).
   */
  generate(contextId, request, config, { signal, onClose, owner, topLogprobs = 0 } = {}) {
    if (!this.alive) {
      throw new EngineExitedError(`the engine worker has exited (${this.#exitText()}); load the model again`);
    }
    const id = this.#nextStream++;
    const pair = binding.openStream(Tokenizer.nativeOf(this.tokenizer), config.toJSON());
    const producer = pair.takeProducer();
    const entry = { producer, granted: config.bufferSize, pushed: 0, bufferSize: config.bufferSize };
    this.#streams.set(id, entry);
    this.#busy();
    const stream = new TokenStream(pair.takeStream(), {
      signal,
      owner, // the stream keeps its Context alive (a collected Context frees its cache)
      afterRead: () => this.#grant(id, entry),
      onClose: () => {
        this.#cancel(id);
        onClose?.();
      },
    });
    this.#send({
      op: 'generate',
      stream: id,
      context: contextId,
      ...request,
      config: workerConfig(config),
      credits: config.bufferSize,
      top_logprobs: topLogprobs,
    });
    return stream;
  }

  closeContext(contextId) {
    if (this.alive) this.#send({ op: 'close_context', context: contextId });
  }

  /** Ends the worker; open streams fail with ENGINE_EXITED. */
  kill() {
    if (this.alive) this.#child.kill('SIGKILL');
  }

  #dispatch(frame) {
    const entry = this.#streams.get(frame.stream);
    if (entry === undefined) return; // a stream closed here while the worker was sending
    switch (frame.op) {
      case 'started':
        entry.producer.setPromptTokens(frame.prompt_tokens);
        break;
      case 'token': {
        entry.pushed += 1;
        if (frame.peak_memory !== undefined) entry.producer.setPeakMemory(frame.peak_memory);
        const top = frame.top_logprobs === undefined ? null : Float64Array.from(frame.top_logprobs.flat());
        const ended = entry.producer.push(frame.id, frame.logprob ?? null, top);
        if (ended !== null) this.#cancel(frame.stream);
        break;
      }
      case 'end':
        if (frame.peak_memory !== undefined) entry.producer.setPeakMemory(frame.peak_memory);
        entry.producer.finish(frame.reason, frame.id ?? null);
        this.#forget(frame.stream);
        break;
      case 'error':
        entry.producer.fail(frame.code, frame.message);
        this.#forget(frame.stream);
        break;
      default:
        break;
    }
  }

  /** Gives the worker credit for the room the consumer's reads freed. */
  #grant(id, entry) {
    if (!this.#streams.has(id)) return;
    const inFlight = entry.granted - entry.pushed;
    const more = entry.producer.room() - inFlight;
    // Batched to a quarter of the buffer, but never leaving the worker with nothing.
    if (more > 0 && (more >= Math.max(1, entry.bufferSize >> 2) || inFlight === 0)) {
      entry.granted += more;
      this.#send({ op: 'credit', stream: id, n: more });
    }
  }

  #cancel(id) {
    if (this.#streams.has(id)) {
      this.#send({ op: 'cancel', stream: id });
      this.#forget(id);
    }
  }

  #forget(id) {
    this.#streams.delete(id);
    if (this.#streams.size === 0) this.#idle();
  }

  #send(message) {
    if (this.alive) this.#child.stdin.write(encodeFrame(message));
  }

  #exitText() {
    const { code, signal } = this.#exited ?? {};
    const how = signal ? `killed by ${signal}` : `exit code ${code}`;
    const tail = this.#stderrTail.trim();
    return tail ? `${how}; its last output: ${tail.slice(-800)}` : how;
  }

  #failAll(why) {
    for (const [id, entry] of this.#streams) {
      entry.producer.fail('ENGINE_EXITED', `the engine worker exited mid-stream (${why})`);
      this.#streams.delete(id);
    }
  }

  // While no stream is open the worker must not keep Node running; while one is, its
  // output must.
  #idle() {
    this.#child.unref();
    this.#child.stdout.unref();
    this.#child.stderr.unref();
    this.#child.stdin.unref?.();
  }

  #busy() {
    this.#child.ref();
    this.#child.stdout.ref();
  }
}

module.exports = { EngineWorker, workerPython };
