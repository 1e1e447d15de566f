// A typed use of the whole API; `tsc --noEmit --strict` must accept it (npm run typecheck).
import {
  AsyncModel,
  ConfigError,
  Context,
  MullamaError,
  Model,
  StreamConfig,
  StreamTimeoutError,
  Tokenizer,
  streamFromPieces,
  type FinishReason,
  type GenerationResult,
  type Token,
} from '../..';

async function main(): Promise<void> {
  const model: Model = await Model.load('./model.gguf');
  const context = new Context(model);
  for await (const token of context.generateStream('Write a poem:', 200)) {
    process.stdout.write(token.text);
  }

  const config = new StreamConfig({ maxTokens: 500, temperature: 0.7, stopSequences: ['END'], timeoutMs: 30000 });
  config.topK = 40;
  const controller = new AbortController();
  const stream = context.generateStream('Hello:', config, { signal: controller.signal });
  const first: IteratorResult<Token, undefined> = await stream.next();
  if (!first.done) console.log(first.value.text, first.value.id ?? -1);
  const reason: FinishReason | null = stream.finishReason;
  console.log(reason, stream.tokensGenerated, stream.tokensPerSecond().toFixed(1), stream.stats().timeToFirstToken);

  const result: GenerationResult = await context.generate('2 + 2 =', { maxTokens: 8, temperature: 0 });
  console.log(result.text, result.tokens.length, result.finishReason, result.logprobs[0]?.toFixed(3));

  // Each event carries what Python's Token does: alternatives and the statistics at that point.
  for await (const token of context.generateStream('Hi', 4, { topLogprobs: 3 })) {
    for (const [id, logprob] of token.topLogprobs) console.log(id.toFixed(0), logprob.toFixed(3));
    const ttft: number | null = token.timeToFirstToken;
    const stats: number[] = [token.promptTokens, token.promptTps, token.generationTokens, token.generationTps];
    console.log(ttft, stats, token.elapsed, token.peakMemory.toFixed(2));
  }

  for await (const token of context.chat([{ role: 'user', content: 'Hi' }], 16)) process.stdout.write(token.text);

  const asyncModel = await AsyncModel.load();
  const asyncStream = asyncModel.generateStream('Tell me about Rust:', new StreamConfig({ maxTokens: 20 }));
  let count = 0;
  for await (const _ of asyncStream) count++;
  console.log(count, asyncStream.tokensPerSecond());

  try {
    new StreamConfig({ topP: 2 });
  } catch (err) {
    if (err instanceof ConfigError) console.log(err.field, err.value);
    if (err instanceof StreamTimeoutError) console.log(err.timeoutMs);
    if (err instanceof MullamaError) console.log(err.code);
  }

  const tok = Tokenizer.fromGguf('./model.gguf');
  const ids: number[] = tok.encode('hello', { special: false });
  const text: string = tok.decode(ids);
  console.log(text, tok.tokenBytes(ids[0]!).length);

  const pieces = streamFromPieces(['a', Buffer.from('b')], { stopSequences: 'b' }, { delayMs: 1 });
  console.log(await pieces.text());
  // The types are not `any`: each misuse below must be an error (else tsc reports the
  // unused @ts-expect-error).
  // @ts-expect-error maxTokens is a number
  new StreamConfig({ maxTokens: '5' });
  // @ts-expect-error there is no field topQ
  new StreamConfig({ topQ: 1 });
  // @ts-expect-error a prompt is text or token ids
  context.generateStream({ prompt: 'x' });
  // @ts-expect-error topLogprobs is a count
  context.generateStream('x', 4, { topLogprobs: true });
  // @ts-expect-error an event's alternatives are read-only
  (await stream.next()).value?.topLogprobs.push([1, 0]);
  // @ts-expect-error finishReason is one of five strings
  const wrong: 'done' = stream.finishReason;
  void wrong;
  model.close();
}

void main();
