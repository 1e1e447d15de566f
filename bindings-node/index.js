'use strict';
// mullama for Node.js. The stream core (detokenizer, stop scanning, deadlines, statistics,
// backpressure) is native; the forward pass runs in a Python engine worker per model.

const {
  MullamaError,
  ConfigError,
  StreamTimeoutError,
  GenerationError,
  ModelLoadError,
  TokenizerError,
  ContextLengthError,
  CancelledError,
  EngineExitedError,
} = require('./lib/errors');
const { StreamConfig } = require('./lib/config');
const { TokenStream, streamFromPieces } = require('./lib/stream');
const { Tokenizer } = require('./lib/tokenizer');
const { Model, Context, AsyncModel } = require('./lib/model');

// Shorthand names only: Node's ESM loader finds them statically (`import { Model } from ...`).
module.exports = {
  Model,
  Context,
  AsyncModel,
  StreamConfig,
  TokenStream,
  Tokenizer,
  streamFromPieces,
  MullamaError,
  ConfigError,
  StreamTimeoutError,
  GenerationError,
  ModelLoadError,
  TokenizerError,
  ContextLengthError,
  CancelledError,
  EngineExitedError,
};
