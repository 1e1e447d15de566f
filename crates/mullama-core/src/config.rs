//! `StreamConfig`: sampling and streaming parameters, validated in one place.
//!
//! Every field is written once, in [`stream_config_fields!`]: its name, Rust type, default,
//! kind, one-line doc and range check. That list generates the struct, its `Default`, the
//! [`FIELDS`] table, [`StreamConfig::validate`] and the by-name [`StreamConfig::get`] /
//! [`StreamConfig::set`], so a binding reads its keywords, defaults and docs from the table and
//! lets the core check every value.

use std::fmt;

use crate::error::{CoreError, Result};

/// The one list of `StreamConfig`'s fields, in declaration order. It calls `$then!` with one
/// `name: Type = default, Kind, "doc", check;` entry per field, so other code (this module,
/// the Python binding's getters) is generated from the same list instead of restating it.
#[macro_export]
macro_rules! stream_config_fields {
    ($then:ident) => {
        $then! {
            max_tokens: usize = 256, Int,
                "most tokens to generate (>= 1); then finish_reason is \"length\"",
                at_least_one;
            temperature: f32 = 0.8, Float,
                "sampling temperature; 0 is greedy",
                finite_at_least_zero;
            top_k: usize = 40, Int,
                "keep the k most likely tokens; 0 disables",
                unchecked;
            top_p: f32 = 0.9, Float,
                "nucleus sampling mass, in (0, 1]; 1 disables",
                in_zero_excluded_one;
            min_p: f32 = 0.0, Float,
                "drop tokens below min_p times the top probability, in [0, 1]; 0 disables",
                in_zero_one;
            repeat_penalty: f32 = 1.0, Float,
                "penalty for tokens already seen, > 0; 1 disables",
                finite_above_zero;
            seed: Option<u64> = None, OptionalInt,
                "same seed, same tokens; None is nondeterministic",
                unchecked;
            stop_sequences: Vec<String> = Vec::new(), Strings,
                "strings that end generation (each non-empty)",
                no_empty_string;
            include_stop: bool = false, Bool,
                "emit the matched stop text as part of the output",
                unchecked;
            buffer_size: usize = 64, Int,
                "events buffered before the model waits (>= 1)",
                at_least_one;
            timeout_ms: u64 = 30_000, Int,
                "deadline for the whole stream in ms, from its creation; 0 is none",
                unchecked;
        }
    };
}

/// What a field holds, independent of any binding's types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A non-negative integer (`usize` or `u64`).
    Int,
    /// An `f32`.
    Float,
    /// A `bool`.
    Bool,
    /// A non-negative integer or nothing (`Option<u64>`).
    OptionalInt,
    /// A list of strings.
    Strings,
}

/// A field's value in binding-neutral form: what [`StreamConfig::get`] returns and
/// [`StreamConfig::set`] takes.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// The absent value of an [`FieldKind::OptionalInt`] field.
    None,
    Int(u64),
    Float(f32),
    Bool(bool),
    Strings(Vec<String>),
}

/// Shown as the `value` of a [`CoreError::Config`]: numbers as Rust prints them (`0.5`,
/// `NaN`, `inf`), strings quoted and escaped.
impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Int(n) => write!(f, "{n}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Strings(items) => write!(f, "{items:?}"),
        }
    }
}

/// One row of [`FIELDS`].
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    pub name: &'static str,
    pub kind: FieldKind,
    pub default: FieldValue,
    /// One line, lower case, no final period: it is the field's doc everywhere.
    pub doc: &'static str,
}

/// The field with this name, if `StreamConfig` has one.
pub fn field(name: &str) -> Option<&'static FieldSpec> {
    FIELDS.iter().find(|spec| spec.name == name)
}

/// The Rust types a field may have, and how each converts to and from [`FieldValue`].
trait FieldType: Sized {
    const KIND: FieldKind;
    fn to_value(&self) -> FieldValue;
    /// The reason on failure; the caller adds the field and the value.
    fn from_value(value: &FieldValue) -> std::result::Result<Self, String>;
}

fn wrong_kind(expected: &str) -> String {
    format!("must be {expected}")
}

impl FieldType for u64 {
    const KIND: FieldKind = FieldKind::Int;
    fn to_value(&self) -> FieldValue {
        FieldValue::Int(*self)
    }
    fn from_value(value: &FieldValue) -> std::result::Result<Self, String> {
        match value {
            FieldValue::Int(n) => Ok(*n),
            _ => Err(wrong_kind("an integer")),
        }
    }
}

impl FieldType for usize {
    const KIND: FieldKind = FieldKind::Int;
    fn to_value(&self) -> FieldValue {
        // usize is at most 64 bits on every target Rust supports.
        FieldValue::Int(*self as u64)
    }
    fn from_value(value: &FieldValue) -> std::result::Result<Self, String> {
        let n = u64::from_value(value)?;
        usize::try_from(n).map_err(|_| "is too large".to_owned())
    }
}

impl FieldType for f32 {
    const KIND: FieldKind = FieldKind::Float;
    fn to_value(&self) -> FieldValue {
        FieldValue::Float(*self)
    }
    fn from_value(value: &FieldValue) -> std::result::Result<Self, String> {
        match value {
            FieldValue::Float(x) => Ok(*x),
            _ => Err(wrong_kind("a number")),
        }
    }
}

impl FieldType for bool {
    const KIND: FieldKind = FieldKind::Bool;
    fn to_value(&self) -> FieldValue {
        FieldValue::Bool(*self)
    }
    fn from_value(value: &FieldValue) -> std::result::Result<Self, String> {
        match value {
            FieldValue::Bool(b) => Ok(*b),
            _ => Err(wrong_kind("a bool")),
        }
    }
}

impl FieldType for Option<u64> {
    const KIND: FieldKind = FieldKind::OptionalInt;
    fn to_value(&self) -> FieldValue {
        self.map_or(FieldValue::None, FieldValue::Int)
    }
    fn from_value(value: &FieldValue) -> std::result::Result<Self, String> {
        match value {
            FieldValue::None => Ok(None),
            FieldValue::Int(n) => Ok(Some(*n)),
            _ => Err(wrong_kind("an integer or None")),
        }
    }
}

impl FieldType for Vec<String> {
    const KIND: FieldKind = FieldKind::Strings;
    fn to_value(&self) -> FieldValue {
        FieldValue::Strings(self.clone())
    }
    fn from_value(value: &FieldValue) -> std::result::Result<Self, String> {
        match value {
            FieldValue::Strings(items) => Ok(items.clone()),
            _ => Err(wrong_kind("a list of strings")),
        }
    }
}

/// The table's default, built in a const context from the same expression as `Default`.
macro_rules! const_value {
    (Int, $default:expr) => {
        FieldValue::Int($default as u64)
    };
    (Float, $default:expr) => {
        FieldValue::Float($default)
    };
    (Bool, $default:expr) => {
        FieldValue::Bool($default)
    };
    (OptionalInt, $default:expr) => {
        match $default {
            Some(n) => FieldValue::Int(n),
            None => FieldValue::None,
        }
    };
    (Strings, $default:expr) => {
        FieldValue::Strings($default)
    };
}

macro_rules! define_stream_config {
    ($($name:ident: $ty:ty = $default:expr, $kind:ident, $doc:literal, $check:ident;)*) => {
        #[derive(Debug, Clone, PartialEq)]
        pub struct StreamConfig {
            $(#[doc = $doc] pub $name: $ty,)*
        }

        impl Default for StreamConfig {
            fn default() -> Self {
                Self { $($name: $default,)* }
            }
        }

        /// Every field in declaration order: name, kind, default and doc.
        pub const FIELDS: &[FieldSpec] = &[$(FieldSpec {
            name: stringify!($name),
            kind: FieldKind::$kind,
            default: const_value!($kind, $default),
            doc: $doc,
        },)*];

        // The kind written in the list must be the one the Rust type converts as.
        $(const _: () = assert!(<$ty as FieldType>::KIND as u8 == FieldKind::$kind as u8);)*

        impl StreamConfig {
            /// Checks every field in declaration order; the error names the first bad field
            /// and its value.
            pub fn validate(&self) -> Result<()> {
                $(checked(stringify!($name), &self.$name, $check)?;)*
                Ok(())
            }

            /// The value of a field of [`FIELDS`]; `None` for a spec that is not one.
            pub fn get(&self, field: &FieldSpec) -> Option<FieldValue> {
                match field.name {
                    $(stringify!($name) => Some(self.$name.to_value()),)*
                    _ => None,
                }
            }

            /// Sets one field after checking the value's kind and range; on error (naming
            /// the field and the value) the config is unchanged.
            pub fn set(&mut self, field: &FieldSpec, value: FieldValue) -> Result<()> {
                let reject = |reason: String| CoreError::Config {
                    field: field.name,
                    value: value.to_string(),
                    reason,
                };
                match field.name {
                    $(stringify!($name) => {
                        let typed = <$ty as FieldType>::from_value(&value).map_err(reject)?;
                        checked(field.name, &typed, $check)?;
                        self.$name = typed;
                    })*
                    _ => return Err(reject("is not a StreamConfig field".to_owned())),
                }
                Ok(())
            }
        }
    };
}

stream_config_fields!(define_stream_config);

/// Runs one field's range check, turning its reason into the error that names field and value.
fn checked<T: FieldType>(
    field: &'static str,
    value: &T,
    check: fn(&T) -> std::result::Result<(), String>,
) -> Result<()> {
    check(value).map_err(|reason| CoreError::Config {
        field,
        value: value.to_value().to_string(),
        reason,
    })
}

// Range checks, one per constraint; each returns the reason shown after the value.

fn unchecked<T>(_: &T) -> std::result::Result<(), String> {
    Ok(())
}

fn at_least_one(n: &usize) -> std::result::Result<(), String> {
    if *n == 0 {
        return Err("must be at least 1".to_owned());
    }
    Ok(())
}

fn finite_at_least_zero(x: &f32) -> std::result::Result<(), String> {
    if !x.is_finite() || *x < 0.0 {
        return Err("must be finite and >= 0".to_owned());
    }
    Ok(())
}

fn finite_above_zero(x: &f32) -> std::result::Result<(), String> {
    if !x.is_finite() || *x <= 0.0 {
        return Err("must be finite and > 0".to_owned());
    }
    Ok(())
}

fn in_zero_excluded_one(x: &f32) -> std::result::Result<(), String> {
    // Written so that NaN fails: every comparison with NaN is false.
    if !(*x > 0.0 && *x <= 1.0) {
        return Err("must be in (0, 1]".to_owned());
    }
    Ok(())
}

fn in_zero_one(x: &f32) -> std::result::Result<(), String> {
    if !(0.0..=1.0).contains(x) {
        return Err("must be in [0, 1]".to_owned());
    }
    Ok(())
}

#[expect(
    clippy::ptr_arg,
    reason = "every check is a fn(&T) of its field's exact type, here Vec<String>"
)]
fn no_empty_string(items: &Vec<String>) -> std::result::Result<(), String> {
    match items.iter().position(String::is_empty) {
        Some(index) => Err(format!("stop sequence {index} is empty")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(config: &StreamConfig) -> (&'static str, String) {
        match config.validate() {
            Err(CoreError::Config { field, value, .. }) => (field, value),
            other => panic!("expected a Config error, got {other:?}"),
        }
    }

    fn with(change: impl FnOnce(&mut StreamConfig)) -> StreamConfig {
        let mut config = StreamConfig::default();
        change(&mut config);
        config
    }

    #[test]
    fn default_is_valid() {
        assert_eq!(StreamConfig::default().validate(), Ok(()));
    }

    #[test]
    fn boundary_values_are_valid() {
        let config = with(|c| {
            c.max_tokens = 1;
            c.temperature = 0.0;
            c.top_k = 0;
            c.top_p = 1.0;
            c.min_p = 1.0;
            c.repeat_penalty = f32::MIN_POSITIVE;
            c.buffer_size = 1;
            c.timeout_ms = 0;
            c.stop_sequences = vec!["x".into()];
        });
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(with(|c| c.min_p = 0.0).validate(), Ok(()));
        assert_eq!(with(|c| c.top_k = usize::MAX).validate(), Ok(()));
        assert_eq!(with(|c| c.timeout_ms = u64::MAX).validate(), Ok(()));
    }

    #[test]
    fn max_tokens_zero() {
        assert_eq!(
            field_of(&with(|c| c.max_tokens = 0)),
            ("max_tokens", "0".into())
        );
    }

    #[test]
    fn temperature_negative_or_not_finite() {
        assert_eq!(
            field_of(&with(|c| c.temperature = -0.5)),
            ("temperature", "-0.5".into())
        );
        assert_eq!(
            field_of(&with(|c| c.temperature = f32::NAN)),
            ("temperature", "NaN".into())
        );
        assert_eq!(
            field_of(&with(|c| c.temperature = f32::INFINITY)),
            ("temperature", "inf".into())
        );
    }

    #[test]
    fn top_p_outside_zero_one() {
        assert_eq!(field_of(&with(|c| c.top_p = 0.0)), ("top_p", "0".into()));
        assert_eq!(field_of(&with(|c| c.top_p = 1.5)), ("top_p", "1.5".into()));
        assert_eq!(field_of(&with(|c| c.top_p = -1.0)), ("top_p", "-1".into()));
        assert_eq!(
            field_of(&with(|c| c.top_p = f32::NAN)),
            ("top_p", "NaN".into())
        );
    }

    #[test]
    fn min_p_outside_zero_one() {
        assert_eq!(
            field_of(&with(|c| c.min_p = -0.1)),
            ("min_p", "-0.1".into())
        );
        assert_eq!(
            field_of(&with(|c| c.min_p = 1.01)),
            ("min_p", "1.01".into())
        );
        assert_eq!(
            field_of(&with(|c| c.min_p = f32::NAN)),
            ("min_p", "NaN".into())
        );
    }

    #[test]
    fn repeat_penalty_not_positive_or_not_finite() {
        assert_eq!(
            field_of(&with(|c| c.repeat_penalty = 0.0)),
            ("repeat_penalty", "0".into())
        );
        assert_eq!(
            field_of(&with(|c| c.repeat_penalty = -2.0)),
            ("repeat_penalty", "-2".into())
        );
        assert_eq!(
            field_of(&with(|c| c.repeat_penalty = f32::NAN)),
            ("repeat_penalty", "NaN".into())
        );
        assert_eq!(
            field_of(&with(|c| c.repeat_penalty = f32::INFINITY)),
            ("repeat_penalty", "inf".into())
        );
    }

    #[test]
    fn empty_stop_string() {
        let config = with(|c| c.stop_sequences = vec!["ok".into(), String::new()]);
        let (field, value) = field_of(&config);
        assert_eq!(field, "stop_sequences");
        assert_eq!(value, r#"["ok", ""]"#);
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("stop sequence 1 is empty"), "{message}");
    }

    #[test]
    fn buffer_size_zero() {
        assert_eq!(
            field_of(&with(|c| c.buffer_size = 0)),
            ("buffer_size", "0".into())
        );
    }

    #[test]
    fn table_defaults_are_the_default_config() {
        let config = StreamConfig::default();
        assert_eq!(FIELDS.len(), 11);
        for spec in FIELDS {
            assert_eq!(
                config.get(spec),
                Some(spec.default.clone()),
                "{}",
                spec.name
            );
            assert!(
                !spec.doc.is_empty() && !spec.doc.contains('\n'),
                "{}",
                spec.name
            );
        }
    }

    #[test]
    fn lookup_by_name() {
        assert_eq!(field("top_p").map(|f| f.kind), Some(FieldKind::Float));
        assert_eq!(field("seed").map(|f| &f.default), Some(&FieldValue::None));
        assert_eq!(field("top_q"), None);
    }

    #[test]
    fn set_by_name_checks_kind_and_range_and_keeps_the_old_value() {
        let mut config = StreamConfig::default();
        config
            .set(field("max_tokens").unwrap(), FieldValue::Int(7))
            .unwrap();
        config
            .set(field("seed").unwrap(), FieldValue::Int(3))
            .unwrap();
        config
            .set(
                field("stop_sequences").unwrap(),
                FieldValue::Strings(vec!["x".into()]),
            )
            .unwrap();
        assert_eq!((config.max_tokens, config.seed), (7, Some(3)));
        assert_eq!(config.stop_sequences, ["x"]);
        config
            .set(field("seed").unwrap(), FieldValue::None)
            .unwrap();
        assert_eq!(config.seed, None);

        let before = config.clone();
        let err = config
            .set(field("top_p").unwrap(), FieldValue::Float(1.5))
            .unwrap_err();
        assert_eq!(err.to_string(), "invalid top_p = 1.5: must be in (0, 1]");
        let err = config
            .set(field("include_stop").unwrap(), FieldValue::Int(1))
            .unwrap_err();
        assert_eq!(err.to_string(), "invalid include_stop = 1: must be a bool");
        let stops = FieldValue::Strings(vec!["ok".into(), String::new()]);
        let err = config
            .set(field("stop_sequences").unwrap(), stops)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid stop_sequences = ["ok", ""]: stop sequence 1 is empty"#
        );
        assert_eq!(config, before);
    }

    #[test]
    fn set_rejects_a_spec_that_is_not_in_the_table() {
        let stranger = FieldSpec {
            name: "nope",
            kind: FieldKind::Int,
            default: FieldValue::Int(0),
            doc: "not a field",
        };
        let mut config = StreamConfig::default();
        assert_eq!(config.get(&stranger), None);
        let err = config.set(&stranger, FieldValue::Int(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid nope = 1: is not a StreamConfig field"
        );
    }

    #[test]
    fn message_names_field_and_value() {
        let message = with(|c| c.top_p = 2.0).validate().unwrap_err().to_string();
        assert_eq!(message, "invalid top_p = 2: must be in (0, 1]");
    }
}
