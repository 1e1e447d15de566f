'use strict';
// The error classes of mullama for Node. Every error carries the core's `code`; the native
// layer reports errors as {code, message, field?, value?, timeoutMs?} and this module is the
// one place that turns them into classes.

class MullamaError extends Error {
  constructor(message, code = 'GENERATION_ERROR', options) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

class ConfigError extends MullamaError {
  constructor(message, { field, value } = {}) {
    super(message, 'CONFIG');
    this.field = field;
    this.value = value;
  }
}

class StreamTimeoutError extends MullamaError {
  constructor(message, { timeoutMs } = {}) {
    super(message, 'STREAM_TIMEOUT');
    this.timeoutMs = timeoutMs;
  }
}

class GenerationError extends MullamaError {
  constructor(message, options) {
    super(message, 'GENERATION_ERROR', options);
  }
}

class ModelLoadError extends MullamaError {
  constructor(message) {
    super(message, 'MODEL_LOAD');
  }
}

class TokenizerError extends MullamaError {
  constructor(message) {
    super(message, 'TOKENIZER');
  }
}

class ContextLengthError extends MullamaError {
  constructor(message) {
    super(message, 'CONTEXT_LENGTH');
  }
}

class CancelledError extends MullamaError {
  constructor(message = 'the generation was cancelled', options) {
    super(message, 'CANCELLED', options);
  }
}

class EngineExitedError extends MullamaError {
  constructor(message) {
    super(message, 'ENGINE_EXITED');
  }
}

const CLASS_OF_CODE = {
  CONFIG: ConfigError,
  STREAM_TIMEOUT: StreamTimeoutError,
  GENERATION_ERROR: GenerationError,
  MODEL_LOAD: ModelLoadError,
  TOKENIZER: TokenizerError,
  CONTEXT_LENGTH: ContextLengthError,
  CANCELLED: CancelledError,
  ENGINE_EXITED: EngineExitedError,
};

/** The typed error for a native error report ({code, message, ...}). */
function errorFromInfo(info) {
  const Class = CLASS_OF_CODE[info.code] ?? GenerationError;
  const details = { field: info.field ?? undefined, value: info.value ?? undefined };
  if (info.timeoutMs != null) details.timeoutMs = info.timeoutMs;
  return new Class(info.message, details);
}

const CODED_MESSAGE = /^\[([A-Z_]+)\] ([\s\S]*)$/;

/**
 * Runs a native call, turning an error it throws into its class: the native layer starts
 * the message of a core error with its code, "[MODEL_LOAD] cannot load model: ...".
 */
function native(call) {
  try {
    return call();
  } catch (err) {
    const coded = err instanceof Error ? CODED_MESSAGE.exec(err.message) : null;
    if (coded !== null && coded[1] in CLASS_OF_CODE) {
      throw errorFromInfo({ code: coded[1], message: coded[2] });
    }
    throw err;
  }
}

module.exports = {
  MullamaError,
  ConfigError,
  StreamTimeoutError,
  GenerationError,
  ModelLoadError,
  TokenizerError,
  ContextLengthError,
  CancelledError,
  EngineExitedError,
  errorFromInfo,
  native,
};
