'use strict';
// mullama for Node.js. The stream core (detokenizer, stop scanning, deadlines, statistics,
// backpressure) is native; the forward pass runs in a Python engine worker per model.

const errors = require('./lib/errors');
const { StreamConfig } = require('./lib/config');
const { TokenStream, streamFromPieces } = require('./lib/stream');
const { Tokenizer } = require('./lib/tokenizer');
const { Model, Context, AsyncModel } = require('./lib/model');

module.exports = {
  Model,
  Context,
  AsyncModel,
  StreamConfig,
  TokenStream,
  Tokenizer,
  streamFromPieces,
  MullamaError: errors.MullamaError,
  ConfigError: errors.ConfigError,
  StreamTimeoutError: errors.StreamTimeoutError,
  GenerationError: errors.GenerationError,
  ModelLoadError: errors.ModelLoadError,
  TokenizerError: errors.TokenizerError,
  ContextLengthError: errors.ContextLengthError,
  CancelledError: errors.CancelledError,
  EngineExitedError: errors.EngineExitedError,
};
