//! The one place where core errors become values Node sees: a plain `ErrorInfo` object the
//! facade turns into a `MullamaError` subclass (reads and config checks return it), or a
//! thrown error whose `code` is the core's code (constructors).

use mullama_core::CoreError;
use napi::Status;
use napi_derive::napi;

use crate::config::js_name;

/// What the facade needs to build the typed error.
#[napi(object)]
pub struct ErrorInfo {
    /// The core's code: CONFIG, STREAM_TIMEOUT, GENERATION_ERROR, MODEL_LOAD, TOKENIZER,
    /// CONTEXT_LENGTH, CANCELLED or ENGINE_EXITED.
    pub code: String,
    pub message: String,
    /// CONFIG: the field (camelCase) and the offending value as text.
    pub field: Option<String>,
    pub value: Option<String>,
    /// STREAM_TIMEOUT: the deadline that passed.
    pub timeout_ms: Option<f64>,
}

pub fn error_info(err: &CoreError) -> ErrorInfo {
    let mut info = ErrorInfo {
        code: err.code().to_owned(),
        message: err.to_string(),
        field: None,
        value: None,
        timeout_ms: None,
    };
    match err {
        CoreError::Config {
            field,
            value,
            reason,
        } => {
            let field = js_name(field);
            // The core's message names the snake_case field; Node users wrote camelCase.
            info.message = format!("invalid {field} = {value}: {reason}");
            info.field = Some(field);
            info.value = Some(value.clone());
        }
        CoreError::StreamTimeout { timeout_ms } => {
            info.message = info.message.replace("timeout_ms", "timeoutMs");
            info.timeout_ms = Some(*timeout_ms as f64);
        }
        _ => {}
    }
    info
}

/// A core error to throw (constructors and methods, where no result object can carry it).
/// It carries its code at the start of the message, `[MODEL_LOAD] ...` (napi-rs sets a
/// thrown error's `code` from its status only); `native()` in lib/errors.js takes it off
/// again and throws the matching class.
pub fn to_napi(err: CoreError) -> napi::Error {
    let info = error_info(&err);
    napi::Error::new(
        Status::GenericFailure,
        format!("[{}] {}", info.code, info.message),
    )
}

/// A value of the wrong JS type (a programming error the core never sees).
pub fn type_error(message: String) -> napi::Error {
    napi::Error::new(Status::InvalidArg, message)
}
