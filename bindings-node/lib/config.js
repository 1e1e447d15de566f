'use strict';
// StreamConfig: the core's fields in camelCase. Names, defaults and checks live in the core
// (its field table); this class holds a checked copy and re-checks on every assignment.

const binding = require('./binding');
const { errorFromInfo } = require('./errors');

const FIELDS = binding.streamConfigFields();

/** NaN and the infinities have no JSON form; the native check reads them as these strings. */
function forNative(fields) {
  const out = {};
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    out[key] = typeof value === 'number' && !Number.isFinite(value) ? String(value) : value;
  }
  return out;
}

/** The full checked config for `fields`, or throws ConfigError naming the field and value. */
function checkFields(fields) {
  if (fields instanceof StreamConfig) return fields.toJSON();
  if (fields !== undefined && (fields === null || typeof fields !== 'object' || Array.isArray(fields))) {
    throw errorFromInfo({
      code: 'CONFIG',
      message: `a StreamConfig is built from an object of fields, not ${String(fields)}`,
    });
  }
  const result = binding.checkStreamConfig(forNative(fields ?? {}));
  if (result.error) throw errorFromInfo(result.error);
  return result.config;
}

class StreamConfig {
  #values;

  constructor(fields) {
    this.#values = checkFields(fields);
  }

  /** The fields in order: {name, kind, defaultValue, doc}. */
  static fields() {
    return FIELDS.map((field) => ({ ...field }));
  }

  static {
    // One accessor per field of the core's table; an assignment is checked with the rest of
    // the config, and on error the config keeps its old value.
    for (const { name } of FIELDS) {
      Object.defineProperty(StreamConfig.prototype, name, {
        enumerable: true,
        get() {
          const value = this.#values[name];
          return Array.isArray(value) ? [...value] : value;
        },
        set(value) {
          this.#values = checkFields({ ...this.#values, [name]: value });
        },
      });
    }
  }

  /** A new config with `changes` applied; this one is unchanged. */
  with(changes) {
    return new StreamConfig({ ...this.#values, ...changes });
  }

  /** Every field, camelCase, as a plain object. */
  toJSON() {
    return { ...this.#values, stopSequences: [...this.#values.stopSequences] };
  }
}

/** A config from a StreamConfig, a plain field object, a number (maxTokens) or undefined. */
function toConfig(configOrMaxTokens) {
  if (configOrMaxTokens instanceof StreamConfig) return configOrMaxTokens;
  if (typeof configOrMaxTokens === 'number') return new StreamConfig({ maxTokens: configOrMaxTokens });
  return new StreamConfig(configOrMaxTokens);
}

module.exports = { StreamConfig, toConfig, checkFields };
