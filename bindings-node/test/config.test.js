'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { StreamConfig, ConfigError, MullamaError } = require('..');

test('defaults and names come from the core table, in camelCase', () => {
  const fields = StreamConfig.fields();
  assert.deepEqual(
    fields.map((f) => f.name),
    ['maxTokens', 'temperature', 'topK', 'topP', 'minP', 'repeatPenalty', 'seed', 'stopSequences', 'includeStop', 'bufferSize', 'timeoutMs'],
  );
  const config = new StreamConfig();
  for (const field of fields) assert.deepEqual(config[field.name], field.defaultValue, field.name);
  assert.equal(config.temperature, 0.8, 'an f32 shows as the decimal the user typed');
});

test('the guide example builds the config it says', () => {
  const config = new StreamConfig({
    maxTokens: 500,
    temperature: 0.7,
    topK: 40,
    topP: 0.9,
    stopSequences: ['END'],
    bufferSize: 64,
    timeoutMs: 30000,
  });
  assert.equal(config.maxTokens, 500);
  assert.equal(config.temperature, 0.7);
  assert.deepEqual(config.stopSequences, ['END']);
  assert.deepEqual(new StreamConfig({ stopSequences: 'x' }).stopSequences, ['x']);
  assert.deepEqual(JSON.parse(JSON.stringify(config)).maxTokens, 500);
});

function configError(fields) {
  try {
    new StreamConfig(fields);
  } catch (err) {
    assert.ok(err instanceof ConfigError && err instanceof MullamaError, String(err));
    assert.equal(err.code, 'CONFIG');
    return err;
  }
  assert.fail(`no error for ${JSON.stringify(fields)}`);
}

test('a CONFIG error names the field and the value', () => {
  const cases = [
    [{ maxTokens: 0 }, 'maxTokens', '0'],
    [{ topP: 2 }, 'topP', '2'],
    [{ topP: 0 }, 'topP', '0'],
    [{ temperature: -1 }, 'temperature', '-1'],
    [{ temperature: NaN }, 'temperature', 'NaN'],
    [{ repeatPenalty: Infinity }, 'repeatPenalty', 'inf'],
    [{ bufferSize: 0 }, 'bufferSize', '0'],
    [{ maxTokens: 1.5 }, 'maxTokens', '1.5'],
    [{ maxTokens: -3 }, 'maxTokens', '-3'],
    [{ maxTokens: '10' }, 'maxTokens', '"10"'],
    [{ includeStop: 1 }, 'includeStop', '1'],
    [{ stopSequences: ['ok', ''] }, 'stopSequences', '["ok", ""]'],
    [{ stopSequences: [1] }, 'stopSequences', '[1]'],
    [{ seed: 2 ** 60 }, 'seed', String(2 ** 60)],
  ];
  for (const [fields, field, value] of cases) {
    const err = configError(fields);
    assert.equal(err.field, field, JSON.stringify(fields));
    assert.equal(err.value, value, JSON.stringify(fields));
    assert.match(err.message, new RegExp(`^invalid ${field} = `), err.message);
  }
});

test('an unknown field is named with the fields there are', () => {
  const err = configError({ topQ: 1 });
  assert.equal(err.field, 'topQ');
  assert.match(err.message, /no field "topQ".*maxTokens/);
  assert.equal(configError('maxTokens').field, undefined);
});

test('assignment is checked and keeps the old value on error', () => {
  const config = new StreamConfig({ maxTokens: 5 });
  config.maxTokens = 7;
  assert.equal(config.maxTokens, 7);
  assert.throws(() => {
    config.topP = 1.5;
  }, ConfigError);
  assert.equal(config.topP, 0.9);
  const changed = config.with({ seed: 3 });
  assert.equal(changed.seed, 3);
  assert.equal(config.seed, null);
  const stops = config.stopSequences;
  stops.push('x');
  assert.deepEqual(config.stopSequences, [], 'the getter hands out a copy');
});

test('index.d.ts declares exactly the core table\'s fields, with its docs', () => {
  const dts = require('node:fs').readFileSync(require('node:path').join(__dirname, '..', 'index.d.ts'), 'utf8');
  const block = /export interface StreamConfigFields \{([\s\S]*?)\n\}/.exec(dts)[1];
  const declared = [...block.matchAll(/^\s+(\w+): /gm)].map((m) => m[1]);
  const fields = StreamConfig.fields();
  assert.deepEqual(declared, fields.map((f) => f.name));
  for (const field of fields) {
    // The doc comment above each field is the core's doc (field names in camelCase).
    const doc = field.doc.replace(/\b[a-z]+(_[a-z]+)+\b/g, (w) => w.replace(/_([a-z])/g, (_, c) => c.toUpperCase()));
    assert.ok(block.includes(`/** ${doc.replace('None', 'null')} */\n  ${field.name}:`), `${field.name}: ${doc}`);
  }
});
