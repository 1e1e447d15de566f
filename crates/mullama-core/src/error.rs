//! The one error type of the core. Bindings map each variant to a typed exception
//! (Python, `crates/mullama-py/src/errors.rs`) or a JS error class (Node,
//! `bindings-node/src/errors.rs`) in one place; both take the stable `code()` from here.

use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq)]
pub enum CoreError {
    /// A configuration value is out of range; names the field and the offending value.
    #[error("invalid {field} = {value}: {reason}")]
    Config {
        field: &'static str,
        value: String,
        reason: String,
    },
    /// The stream's deadline passed before the next event arrived.
    #[error(
        "stream timed out: its deadline of timeout_ms={timeout_ms} passed before the reply \
         ended (raise timeout_ms, or set 0 for no deadline)"
    )]
    StreamTimeout { timeout_ms: u64 },
    /// The producer finished the stream with an error (its message is kept).
    #[error("generation failed: {message}")]
    Generation { message: String },
    /// A model or tokenizer file could not be read or is malformed.
    #[error("cannot load model: {message}")]
    ModelLoad { message: String },
    /// Tokenizer construction or use failed.
    #[error("tokenizer error: {message}")]
    Tokenizer { message: String },
    /// The prompt (plus what is to be generated) does not fit the model's context; the
    /// message names the sizes.
    #[error("{message}")]
    ContextLength { message: String },
    /// The generation was cancelled from outside the stream (e.g. an AbortSignal, or a newer
    /// generation on the same context).
    #[error("generation cancelled: {message}")]
    Cancelled { message: String },
    /// The process running the forward pass exited while the stream was open.
    #[error("engine exited: {message}")]
    EngineExited { message: String },
}

impl CoreError {
    /// Every code `code()` can return, in declaration order.
    pub const CODES: [&'static str; 8] = [
        "CONFIG",
        "STREAM_TIMEOUT",
        "GENERATION_ERROR",
        "MODEL_LOAD",
        "TOKENIZER",
        "CONTEXT_LENGTH",
        "CANCELLED",
        "ENGINE_EXITED",
    ];

    /// The error `code()` names, for the kinds that carry only a message; None for other
    /// codes (CONFIG, STREAM_TIMEOUT carry data of their own) and unknown ones. Used to
    /// rebuild an error another process reported by code (the engine worker).
    pub fn from_code(code: &str, message: String) -> Option<CoreError> {
        Some(match code {
            "GENERATION_ERROR" => CoreError::Generation { message },
            "MODEL_LOAD" => CoreError::ModelLoad { message },
            "TOKENIZER" => CoreError::Tokenizer { message },
            "CONTEXT_LENGTH" => CoreError::ContextLength { message },
            "CANCELLED" => CoreError::Cancelled { message },
            "ENGINE_EXITED" => CoreError::EngineExited { message },
            _ => return None,
        })
    }

    /// The stable, language-neutral name of the error's kind (Node's `error.code`).
    pub fn code(&self) -> &'static str {
        let index = match self {
            CoreError::Config { .. } => 0,
            CoreError::StreamTimeout { .. } => 1,
            CoreError::Generation { .. } => 2,
            CoreError::ModelLoad { .. } => 3,
            CoreError::Tokenizer { .. } => 4,
            CoreError::ContextLength { .. } => 5,
            CoreError::Cancelled { .. } => 6,
            CoreError::EngineExited { .. } => 7,
        };
        Self::CODES[index]
    }
}

pub type Result<T> = std::result::Result<T, CoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_own_code() {
        let errors = [
            CoreError::Config {
                field: "top_p",
                value: "2".into(),
                reason: "must be in (0, 1]".into(),
            },
            CoreError::StreamTimeout { timeout_ms: 5 },
            CoreError::Generation {
                message: "x".into(),
            },
            CoreError::ModelLoad {
                message: "x".into(),
            },
            CoreError::Tokenizer {
                message: "x".into(),
            },
            CoreError::ContextLength {
                message: "x".into(),
            },
            CoreError::Cancelled {
                message: "x".into(),
            },
            CoreError::EngineExited {
                message: "x".into(),
            },
        ];
        let codes: Vec<&str> = errors.iter().map(CoreError::code).collect();
        assert_eq!(codes, CoreError::CODES);
    }

    #[test]
    fn message_only_kinds_are_rebuilt_from_their_code() {
        for code in CoreError::CODES {
            match CoreError::from_code(code, "m".into()) {
                Some(err) => assert_eq!(err.code(), code),
                None => assert!(code == "CONFIG" || code == "STREAM_TIMEOUT", "{code}"),
            }
        }
        assert_eq!(CoreError::from_code("NOPE", "m".into()), None);
    }
}
