'use strict';
// Model, Context and AsyncModel: generation on a model whose forward pass runs in an engine
// worker (one per Model); every stream's text is made by the native core here.

const { EngineWorker } = require('./worker');
const { toConfig } = require('./config');
const { ConfigError, GenerationError } = require('./errors');

const contextsClosed = new FinalizationRegistry(({ worker, id }) => worker.closeContext(id));

class Model {
  #worker;
  #nextContext = 1;
  #closed = false;

  /** @internal use Model.load */
  constructor(worker) {
    if (!(worker instanceof EngineWorker)) throw new TypeError('use await Model.load(path)');
    this.#worker = worker;
  }

  /**
   * Loads a GGUF file, an MLX / Hugging Face folder, or a model name; no argument: the
   * default model. Rejects with ModelLoadError naming the problem.
   */
  static async load(path) {
    return new this(await EngineWorker.start(path));
  }

  get path() {
    return this.#worker.info.path;
  }

  get architecture() {
    return this.#worker.info.architecture;
  }

  get nCtxTrain() {
    return this.#worker.info.n_ctx_train;
  }

  /** The most tokens a Context holds (prompt and reply) on this model's engine. */
  get nCtx() {
    return this.#worker.info.n_ctx;
  }

  get nVocab() {
    return this.#worker.info.n_vocab;
  }

  /** "mlx" or "llama.cpp": the engine the worker picked. */
  get engine() {
    return this.#worker.info.engine;
  }

  get tokenizer() {
    return this.#worker.tokenizer;
  }

  get chatTemplate() {
    return this.#worker.info.chat_template ?? null;
  }

  get closed() {
    return this.#closed || !this.#worker.alive;
  }

  /** The engine worker's process id. */
  get workerPid() {
    return this.#worker.pid;
  }

  /** Stops the engine worker; open streams end with ENGINE_EXITED. */
  close() {
    this.#closed = true;
    this.#worker.kill();
  }

  /** @internal for Context */
  static startOn(model, contextId, request, configOrMaxTokens, options) {
    if (model.#closed) throw new GenerationError('the model is closed');
    const config = toConfig(configOrMaxTokens);
    const topLogprobs = checkTopLogprobs(options.topLogprobs, model.#worker.info.max_top_logprobs);
    return model.#worker.generate(contextId, request, config, { ...options, topLogprobs });
  }

  /** @internal for Context */
  static newContext(model) {
    if (model.#closed) throw new GenerationError('the model is closed');
    const id = model.#nextContext++;
    return { id, worker: model.#worker };
  }
}

/** The text and statistics of a whole reply. */
async function collect(stream, eogIds) {
  let text = '';
  const tokens = [];
  const logprobs = [];
  for await (const token of stream) {
    text += token.text;
    const closingEog = token.finishReason != null && eogIds.includes(token.id);
    if (token.id != null && !closingEog) {
      tokens.push(token.id);
      if (token.logprob !== undefined) logprobs.push(token.logprob);
    }
  }
  return {
    text,
    tokens,
    logprobs,
    finishReason: stream.finishReason,
    stopSequence: stream.stopSequence,
    stats: stream.stats(),
  };
}

/** How many alternatives each event carries: 0 (the default) up to the engine's limit. */
function checkTopLogprobs(topLogprobs = 0, limit) {
  if (!Number.isInteger(topLogprobs) || topLogprobs < 0 || topLogprobs > limit) {
    throw new ConfigError(`invalid topLogprobs = ${topLogprobs}: must be an integer in 0..${limit}`, {
      field: 'topLogprobs',
      value: String(topLogprobs),
    });
  }
  return topLogprobs;
}

function checkPrompt(prompt) {
  if (typeof prompt === 'string') return { prompt };
  if (Array.isArray(prompt) && prompt.every((id) => Number.isInteger(id) && id >= 0)) return { prompt };
  throw new ConfigError('prompt must be a string or an array of token ids', {
    field: 'prompt',
    value: String(prompt),
  });
}

function checkMessages(messages) {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new ConfigError("messages must be a non-empty array of {role, content} objects", {
      field: 'messages',
      value: String(messages),
    });
  }
  messages.forEach((message, i) => {
    if (message === null || typeof message !== 'object' || typeof message.role !== 'string') {
      throw new ConfigError(`messages[${i}] must be an object with a role string`, {
        field: 'messages',
        value: JSON.stringify(message),
      });
    }
  });
  return { messages };
}

/** Runs `onProgress(stats)` every `intervalMs` while `stream` is open. */
function withProgress(stream, onProgress, intervalMs = 1000) {
  if (onProgress == null) return stream;
  if (typeof onProgress !== 'function') throw new ConfigError('onProgress must be a function');
  const timer = setInterval(() => {
    if (stream.finishReason !== null) return clearInterval(timer);
    onProgress({ ...stream.stats(), tokensGenerated: stream.tokensGenerated });
  }, intervalMs);
  timer.unref();
  return stream;
}

/**
 * One conversation's KV cache on a model: each call reuses the longest prefix it shares with
 * the tokens already cached. One generation at a time: a new one ends the running stream.
 */
class Context {
  #model;
  #id;
  #worker;
  #current = null;

  constructor(model) {
    if (!(model instanceof Model)) throw new ConfigError('Context needs a Model (await Model.load(path))');
    const { id, worker } = Model.newContext(model);
    this.#model = model;
    this.#id = id;
    this.#worker = worker;
    contextsClosed.register(this, { worker, id }, this);
  }

  get model() {
    return this.#model;
  }

  /**
   * Streams the reply to a raw prompt (text or token ids). `configOrMaxTokens`: a
   * StreamConfig, its fields, or maxTokens. `options`: {signal, topLogprobs, onProgress,
   * progressIntervalMs}.
   */
  generateStream(prompt, configOrMaxTokens, options = {}) {
    return this.#start(checkPrompt(prompt), configOrMaxTokens, options);
  }

  /** The whole reply: {text, tokens, finishReason, stopSequence, stats}. */
  async generate(prompt, configOrMaxTokens, options = {}) {
    const stream = this.generateStream(prompt, configOrMaxTokens, options);
    return collect(stream, this.#model.tokenizer.endOfGenerationIds);
  }

  /** Streams one assistant turn for `messages`, with the model's chat template. */
  chat(messages, configOrMaxTokens, options = {}) {
    return this.#start(checkMessages(messages), configOrMaxTokens, options);
  }

  /** Ends a running stream and frees the context's cache in the worker. */
  close() {
    this.#current?.close();
    contextsClosed.unregister(this);
    this.#worker.closeContext(this.#id);
  }

  #start(request, configOrMaxTokens, options) {
    this.#current?.close();
    const stream = Model.startOn(this.#model, this.#id, request, configOrMaxTokens, {
      signal: options.signal,
      topLogprobs: options.topLogprobs,
      owner: this,
    });
    this.#current = stream;
    return withProgress(stream, options.onProgress, options.progressIntervalMs);
  }
}

/**
 * A model for concurrent use: each `generateStream` runs on a fresh context of its own, so
 * many streams share the one worker (each paced by its own consumer).
 */
class AsyncModel {
  #model;

  constructor(model) {
    if (!(model instanceof Model)) throw new TypeError('use await AsyncModel.load(path)');
    this.#model = model;
  }

  static async load(path) {
    return new AsyncModel(await Model.load(path));
  }

  get model() {
    return this.#model;
  }

  get tokenizer() {
    return this.#model.tokenizer;
  }

  generateStream(prompt, configOrMaxTokens, options = {}) {
    return this.#once(checkPrompt(prompt), configOrMaxTokens, options);
  }

  async generate(prompt, configOrMaxTokens, options = {}) {
    const stream = this.generateStream(prompt, configOrMaxTokens, options);
    return collect(stream, this.#model.tokenizer.endOfGenerationIds);
  }

  chat(messages, configOrMaxTokens, options = {}) {
    return this.#once(checkMessages(messages), configOrMaxTokens, options);
  }

  // A context of its own that lives as long as the stream.
  #once(request, configOrMaxTokens, options) {
    const { id, worker } = Model.newContext(this.#model);
    const stream = Model.startOn(this.#model, id, request, configOrMaxTokens, {
      signal: options.signal,
      topLogprobs: options.topLogprobs,
      onClose: () => worker.closeContext(id),
    });
    return withProgress(stream, options.onProgress, options.progressIntervalMs);
  }

  close() {
    this.#model.close();
  }
}

module.exports = { Model, Context, AsyncModel };
