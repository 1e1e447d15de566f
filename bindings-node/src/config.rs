//! StreamConfig as Node sees it: a plain object with the core's fields in camelCase. The
//! names, kinds, defaults and docs come from the core's table (`mullama_core::config::FIELDS`);
//! each JS value is converted here with the field's name in the error, then the core checks it.

use mullama_core::config::{FieldKind, FieldSpec, FieldValue, FIELDS};
use mullama_core::{CoreError, StreamConfig};
use napi_derive::napi;
use serde_json::{Map, Number, Value};

use crate::errors::{error_info, ErrorInfo};

/// The largest integer a JS number holds exactly (Number.MAX_SAFE_INTEGER).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// `max_tokens` -> `maxTokens` (also for stats names).
pub fn js_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn kind_name(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Int => "number",
        FieldKind::Float => "number",
        FieldKind::Bool => "boolean",
        FieldKind::OptionalInt => "number | null",
        FieldKind::Strings => "string[]",
    }
}

pub fn to_json(value: &FieldValue) -> Value {
    match value {
        FieldValue::None => Value::Null,
        FieldValue::Int(n) => Value::from(*n),
        // Through the shortest decimal that round-trips the f32: 0.8, not 0.800000011920929.
        FieldValue::Float(x) => x
            .to_string()
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map_or(Value::Null, Value::Number),
        FieldValue::Bool(b) => Value::Bool(*b),
        FieldValue::Strings(items) => Value::from(items.clone()),
    }
}

/// One row of `streamConfigFields()`.
#[napi(object)]
pub struct ConfigField {
    /// camelCase, as the constructor takes it.
    pub name: String,
    /// The TypeScript type the field takes.
    pub kind: String,
    pub default_value: Value,
    pub doc: String,
}

/// The fields in order, from the core's table.
#[napi]
pub fn stream_config_fields() -> Vec<ConfigField> {
    FIELDS
        .iter()
        .map(|spec| ConfigField {
            name: js_name(spec.name),
            kind: kind_name(spec.kind).to_owned(),
            default_value: to_json(&spec.default),
            doc: spec.doc.to_owned(),
        })
        .collect()
}

/// Either the whole config (every field, camelCase) or why `fields` is invalid.
#[napi(object)]
pub struct ConfigCheck {
    pub config: Option<Value>,
    pub error: Option<ErrorInfo>,
}

/// Checks `fields` (a partial StreamConfig object: unspecified fields take their defaults,
/// `undefined` ones too) and returns the full config, or the first problem.
#[napi]
pub fn check_stream_config(fields: Value) -> ConfigCheck {
    match parse(&fields) {
        Ok(config) => ConfigCheck {
            config: Some(config_json(&config)),
            error: None,
        },
        Err(error) => ConfigCheck {
            config: None,
            error: Some(error),
        },
    }
}

pub fn config_json(config: &StreamConfig) -> Value {
    let mut out = Map::new();
    for spec in FIELDS {
        if let Some(value) = config.get(spec) {
            out.insert(js_name(spec.name), to_json(&value));
        }
    }
    Value::Object(out)
}

fn field_names() -> String {
    FIELDS
        .iter()
        .map(|spec| js_name(spec.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A config from a JS object (already checked by the facade, or checked here again).
pub fn parse(fields: &Value) -> Result<StreamConfig, ErrorInfo> {
    let mut config = StreamConfig::default();
    let object = match fields {
        Value::Null => return Ok(config),
        Value::Object(object) => object,
        other => {
            return Err(ErrorInfo {
                code: "CONFIG".to_owned(),
                message: format!(
                    "a StreamConfig is built from an object of fields, not {}",
                    shown(other)
                ),
                field: None,
                value: Some(shown(other)),
                timeout_ms: None,
            })
        }
    };
    for (key, value) in object {
        let spec = FIELDS
            .iter()
            .find(|spec| js_name(spec.name) == *key)
            .ok_or_else(|| ErrorInfo {
                code: "CONFIG".to_owned(),
                message: format!(
                    "StreamConfig has no field {key:?}; the fields are: {}",
                    field_names()
                ),
                field: Some(key.clone()),
                value: Some(shown(value)),
                timeout_ms: None,
            })?;
        let converted = convert(spec, value).map_err(|reason| {
            error_info(&CoreError::Config {
                field: spec.name,
                value: shown(value),
                reason,
            })
        })?;
        if let Some(converted) = converted {
            config
                .set(spec, converted)
                .map_err(|err| error_info(&err))?;
        }
    }
    Ok(config)
}

/// NaN and the infinities have no JSON form; the facade sends them as these strings.
fn non_finite(value: &Value) -> Option<f64> {
    match value.as_str()? {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// A JS value as the user wrote it (JSON spelling: strings quoted).
fn shown(value: &Value) -> String {
    match (non_finite(value), value) {
        (Some(_), _) => value.as_str().unwrap_or_default().to_owned(),
        // As JS prints it: 1152921504606846976, not 1.152921504606847e18.
        (None, Value::Number(n)) if n.is_f64() => {
            n.as_f64().map_or(n.to_string(), |x| x.to_string())
        }
        (None, _) => value.to_string(),
    }
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn integer(value: &Value) -> Result<u64, String> {
    if non_finite(value).is_some() {
        return Err("must be an integer".to_owned());
    }
    let Value::Number(number) = value else {
        return Err(format!("must be an integer, not {}", type_of(value)));
    };
    if let Some(n) = number.as_u64() {
        if n > MAX_SAFE_INTEGER {
            return Err("is larger than Number.MAX_SAFE_INTEGER".to_owned());
        }
        return Ok(n);
    }
    match number.as_f64() {
        Some(x) if x.fract() != 0.0 => Err("must be an integer".to_owned()),
        Some(x) if x < 0.0 => Err("must be >= 0".to_owned()),
        Some(x) if x <= MAX_SAFE_INTEGER as f64 => Ok(x as u64),
        _ => Err("is larger than Number.MAX_SAFE_INTEGER".to_owned()),
    }
}

/// None: the field is left at its default (`undefined` in JS arrives as null only for
/// optional fields; elsewhere null is a mistake).
fn convert(spec: &FieldSpec, value: &Value) -> Result<Option<FieldValue>, String> {
    Ok(Some(match spec.kind {
        FieldKind::Int => FieldValue::Int(integer(value)?),
        FieldKind::OptionalInt if value.is_null() => FieldValue::None,
        FieldKind::OptionalInt => FieldValue::Int(integer(value)?),
        FieldKind::Float => match value {
            Value::Number(n) => FieldValue::Float(n.as_f64().unwrap_or(f64::NAN) as f32),
            // Out-of-range values become +-inf; the core rejects non-finite values by name.
            other if non_finite(other).is_some() => {
                FieldValue::Float(non_finite(other).unwrap_or(f64::NAN) as f32)
            }
            other => return Err(format!("must be a number, not {}", type_of(other))),
        },
        FieldKind::Bool => match value {
            Value::Bool(b) => FieldValue::Bool(*b),
            other => return Err(format!("must be a boolean, not {}", type_of(other))),
        },
        FieldKind::Strings => match value {
            Value::String(s) => FieldValue::Strings(vec![s.clone()]),
            Value::Array(items) => {
                let mut stops = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => stops.push(s.clone()),
                        other => {
                            return Err(format!(
                                "items must be strings; [{i}] is {}",
                                type_of(other)
                            ))
                        }
                    }
                }
                FieldValue::Strings(stops)
            }
            other => {
                return Err(format!(
                    "must be a string or an array of strings, not {}",
                    type_of(other)
                ))
            }
        },
    }))
}
