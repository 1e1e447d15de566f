// Types of the `mullama` package (the JS facade in index.js and lib/; the native layer's own
// generated types are in native.d.ts). Checked by test/types (tsc --noEmit --strict).

/** Why a stream ended. */
export type FinishReason = 'stop' | 'length' | 'timeout' | 'cancelled' | 'error';

/** Every error's `code`. */
export type ErrorCode =
  | 'CONFIG'
  | 'STREAM_TIMEOUT'
  | 'GENERATION_ERROR'
  | 'MODEL_LOAD'
  | 'TOKENIZER'
  | 'CONTEXT_LENGTH'
  | 'CANCELLED'
  | 'ENGINE_EXITED';

export class MullamaError extends Error {
  readonly code: ErrorCode;
}
/** A configuration value is invalid; `field` and `value` name it. */
export class ConfigError extends MullamaError {
  readonly code: 'CONFIG';
  readonly field: string | undefined;
  readonly value: string | undefined;
}
/** The stream's deadline (timeoutMs) passed. */
export class StreamTimeoutError extends MullamaError {
  readonly code: 'STREAM_TIMEOUT';
  readonly timeoutMs: number | undefined;
}
export class GenerationError extends MullamaError {
  readonly code: 'GENERATION_ERROR';
}
export class ModelLoadError extends MullamaError {
  readonly code: 'MODEL_LOAD';
}
export class TokenizerError extends MullamaError {
  readonly code: 'TOKENIZER';
}
export class ContextLengthError extends MullamaError {
  readonly code: 'CONTEXT_LENGTH';
}
/** The generation was aborted (AbortSignal) or replaced. */
export class CancelledError extends MullamaError {
  readonly code: 'CANCELLED';
}
/** The engine worker exited while the stream was open. */
export class EngineExitedError extends MullamaError {
  readonly code: 'ENGINE_EXITED';
}

/** The fields of a StreamConfig (every one optional in the constructor). */
export interface StreamConfigFields {
  /** most tokens to generate (>= 1); then finishReason is "length" */
  maxTokens: number;
  /** sampling temperature; 0 is greedy */
  temperature: number;
  /** keep the k most likely tokens; 0 disables */
  topK: number;
  /** nucleus sampling mass, in (0, 1]; 1 disables */
  topP: number;
  /** drop tokens below minP times the top probability, in [0, 1]; 0 disables */
  minP: number;
  /** penalty for tokens already seen, > 0; 1 disables */
  repeatPenalty: number;
  /** same seed, same tokens; null is nondeterministic */
  seed: number | null;
  /** strings that end generation (each non-empty) */
  stopSequences: string[];
  /** emit the matched stop text as part of the output */
  includeStop: boolean;
  /** events buffered before the model waits (>= 1) */
  bufferSize: number;
  /** deadline for the whole stream in ms, from its creation; 0 is none */
  timeoutMs: number;
}

export interface StreamConfigInit extends Partial<Omit<StreamConfigFields, 'stopSequences'>> {
  stopSequences?: string | string[];
}

export interface StreamConfigField {
  name: keyof StreamConfigFields;
  kind: string;
  defaultValue: unknown;
  doc: string;
}

/** Sampling and streaming parameters; every assignment is checked (ConfigError). */
export class StreamConfig implements StreamConfigFields {
  constructor(fields?: StreamConfigInit);
  static fields(): StreamConfigField[];
  /** A new config with `changes` applied; this one is unchanged. */
  with(changes: StreamConfigInit): StreamConfig;
  toJSON(): StreamConfigFields;
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repeatPenalty: number;
  seed: number | null;
  stopSequences: string[];
  includeStop: boolean;
  bufferSize: number;
  timeoutMs: number;
}

/** A StreamConfig, its fields, or maxTokens. */
export type ConfigOrMaxTokens = StreamConfig | StreamConfigInit | number;

/** One stream event: the fields of Python's Token, in camelCase. The statistics are
 *  read-only getters (not own properties: `{...token}` leaves them out; `JSON.stringify`
 *  and `toJSON()` include them). */
export interface Token {
  /** Text released by this event; "" while text is withheld. */
  text: string;
  /** The token id; undefined for a closing event without one. */
  id?: number;
  logprob?: number;
  /** The most likely alternatives as [id, logprob] pairs, best first; [] unless
   *  `topLogprobs` asked for them. */
  topLogprobs: ReadonlyArray<readonly [id: number, logprob: number]>;
  /** Set on the last event. */
  finishReason?: FinishReason;
  stopSequence?: string;
  /** The stream's statistics when this event was made (see StreamStats). */
  readonly promptTokens: number;
  readonly promptTps: number;
  readonly generationTokens: number;
  readonly generationTps: number;
  readonly timeToFirstToken: number | null;
  readonly elapsed: number;
  /** GB; 0 where the engine cannot tell. */
  readonly peakMemory: number;
  /** Every field, the statistics included, as a plain object. */
  toJSON(): Omit<Token, 'toJSON'>;
}

export interface StreamStats {
  promptTokens: number;
  promptTps: number;
  generationTokens: number;
  generationTps: number;
  /** Seconds from the stream's start to its first token; null before it. */
  timeToFirstToken: number | null;
  elapsed: number;
  /** The engine's peak memory, GB (the engine worker's: llama.cpp's peak resident set,
   *  MLX's allocator peak); 0 where the engine cannot tell, and for streamFromPieces. */
  peakMemory: number;
  incompleteBytesDropped: number;
}

/** Tokens as they are generated: `for await (const token of stream)`. */
export class TokenStream implements AsyncIterableIterator<Token> {
  [Symbol.asyncIterator](): TokenStream;
  next(): Promise<IteratorResult<Token, undefined>>;
  /** Ends the stream early (what `break` calls). */
  return(value?: unknown): Promise<IteratorResult<Token, undefined>>;
  throw(error?: unknown): Promise<IteratorResult<Token, undefined>>;
  /** Stops the generation. */
  close(): void;
  /** Reads the whole stream and resolves to its text. */
  text(): Promise<string>;
  readonly finishReason: FinishReason | null;
  readonly stopSequence: string | null;
  readonly tokensGenerated: number;
  tokensPerSecond(): number;
  stats(): StreamStats;
}

export interface StreamOptions {
  /** Aborting ends the stream: the pending read rejects with CancelledError. */
  signal?: AbortSignal;
  /** How many alternatives each event's topLogprobs holds: 0 (the default) to 20. */
  topLogprobs?: number;
  /** Called every progressIntervalMs (default 1000) while the stream runs. */
  onProgress?: (progress: StreamStats & { tokensGenerated: number }) => void;
  progressIntervalMs?: number;
}

/** A stream over fixed pieces (token i = pieces[i]), for tests of stream consumers. */
export function streamFromPieces(
  pieces: Array<string | Buffer>,
  config?: ConfigOrMaxTokens,
  options?: { delayMs?: number; signal?: AbortSignal },
): TokenStream;

/** The tokenizer of a model (llama.cpp-exact for GGUF files). */
export class Tokenizer {
  private constructor();
  static fromGguf(path: string): Tokenizer;
  static fromJson(path: string): Tokenizer;
  encode(text: string, options?: { special?: boolean; addBos?: boolean }): number[];
  decode(ids: number[], options?: { skipSpecial?: boolean }): string;
  tokenBytes(id: number, options?: { special?: boolean }): Buffer;
  isEndOfGeneration(id: number): boolean;
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly addBos: boolean;
  readonly chatTemplate: string | null;
  readonly endOfGenerationIds: number[];
}

export interface ChatMessage {
  role: string;
  content: string;
  [key: string]: unknown;
}

export interface GenerationResult {
  text: string;
  tokens: number[];
  /** The logprob of each of `tokens`. */
  logprobs: number[];
  finishReason: FinishReason | null;
  stopSequence: string | null;
  stats: StreamStats;
}

/** A model whose forward pass runs in an engine worker (a Python process). */
export class Model {
  private constructor();
  /** A GGUF file, a model folder or name; none: the default model. */
  static load(path?: string): Promise<Model>;
  readonly path: string;
  readonly architecture: string;
  readonly nCtxTrain: number;
  /** The most tokens a Context holds (prompt and reply) on this model's engine. */
  readonly nCtx: number;
  readonly nVocab: number;
  readonly engine: string;
  readonly tokenizer: Tokenizer;
  readonly chatTemplate: string | null;
  readonly closed: boolean;
  readonly workerPid: number | undefined;
  /** Stops the worker; open streams end with ENGINE_EXITED. */
  close(): void;
}

/** One conversation's KV cache on a model, reused by common prefix across calls. */
export class Context {
  constructor(model: Model);
  readonly model: Model;
  generateStream(
    prompt: string | number[],
    config?: ConfigOrMaxTokens,
    options?: StreamOptions,
  ): TokenStream;
  generate(
    prompt: string | number[],
    config?: ConfigOrMaxTokens,
    options?: StreamOptions,
  ): Promise<GenerationResult>;
  chat(messages: ChatMessage[], config?: ConfigOrMaxTokens, options?: StreamOptions): TokenStream;
  close(): void;
}

/** A model for concurrent streams: each call gets a context of its own. */
export class AsyncModel {
  private constructor();
  static load(path?: string): Promise<AsyncModel>;
  readonly model: Model;
  readonly tokenizer: Tokenizer;
  generateStream(
    prompt: string | number[],
    config?: ConfigOrMaxTokens,
    options?: StreamOptions,
  ): TokenStream;
  generate(
    prompt: string | number[],
    config?: ConfigOrMaxTokens,
    options?: StreamOptions,
  ): Promise<GenerationResult>;
  chat(messages: ChatMessage[], config?: ConfigOrMaxTokens, options?: StreamOptions): TokenStream;
  close(): void;
}
