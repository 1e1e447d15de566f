//! The one error type of the core. Bindings map each variant to a typed exception
//! (Python, `crates/mullama-py/src/errors.rs`) or an error `code` (Node) in one place.

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
}

pub type Result<T> = std::result::Result<T, CoreError>;
