//! The one place where core errors become Python exceptions.

use mullama_core::CoreError;
use pyo3::create_exception;
use pyo3::exceptions::{PyBaseException, PyException};
use pyo3::prelude::*;

create_exception!(
    mullama,
    MullamaError,
    PyException,
    "Base class of every mullama error."
);
create_exception!(
    mullama,
    ConfigError,
    MullamaError,
    "A configuration value is invalid; `.field` and `.value` name it."
);
create_exception!(
    mullama,
    StreamTimeoutError,
    MullamaError,
    "The stream's deadline (timeout_ms) passed."
);
create_exception!(
    mullama,
    GenerationError,
    MullamaError,
    "The producer failed; the original exception is `__cause__`."
);
create_exception!(
    mullama,
    ModelLoadError,
    MullamaError,
    "A model file is missing, corrupt or unsupported."
);
create_exception!(
    mullama,
    TokenizerError,
    MullamaError,
    "The tokenizer could not be built or used."
);
create_exception!(
    mullama,
    ContextLengthError,
    MullamaError,
    "The prompt plus max_tokens does not fit the context."
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("MullamaError", py.get_type::<MullamaError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("StreamTimeoutError", py.get_type::<StreamTimeoutError>())?;
    m.add("GenerationError", py.get_type::<GenerationError>())?;
    m.add("ModelLoadError", py.get_type::<ModelLoadError>())?;
    m.add("TokenizerError", py.get_type::<TokenizerError>())?;
    m.add("ContextLengthError", py.get_type::<ContextLengthError>())?;
    Ok(())
}

/// Converts a core error to its typed Python exception, attaching its data as attributes.
pub fn to_py_err(err: CoreError) -> PyErr {
    let message = err.to_string();
    match err {
        CoreError::Config { field, value, .. } => {
            let e = ConfigError::new_err(message);
            Python::attach(|py| {
                let v = e.value(py);
                let _ = v.setattr("field", field);
                let _ = v.setattr("value", value);
            });
            e
        }
        CoreError::StreamTimeout { timeout_ms } => {
            let e = StreamTimeoutError::new_err(message);
            Python::attach(|py| {
                let _ = e.value(py).setattr("timeout_ms", timeout_ms);
            });
            e
        }
        CoreError::Generation { .. } => GenerationError::new_err(message),
        CoreError::ModelLoad { .. } => ModelLoadError::new_err(message),
        CoreError::Tokenizer { .. } => TokenizerError::new_err(message),
        CoreError::ContextLength { .. } => ContextLengthError::new_err(message),
        // Python ends generations from outside through the producer's own exception
        // (mullama.errors.Superseded, Interrupted), which arrives as GenerationError's cause;
        // these two only come from an out-of-process engine.
        CoreError::Cancelled { .. } | CoreError::EngineExited { .. } => {
            GenerationError::new_err(message)
        }
    }
}

/// A value from Python that cannot even be converted to the core's field type (wrong type,
/// negative, too large) is reported exactly like a value the core rejects.
pub fn config_error(field: &'static str, value: String, reason: impl Into<String>) -> PyErr {
    to_py_err(CoreError::Config {
        field,
        value,
        reason: reason.into(),
    })
}

/// Converts a core error raised to the consumer; a producer failure carries the producer's
/// original Python exception (if it gave one) as `__cause__`, set before the error is raised.
pub fn consumer_error(py: Python<'_>, err: CoreError, cause: Option<Py<PyBaseException>>) -> PyErr {
    let is_generation = matches!(err, CoreError::Generation { .. });
    let py_err = to_py_err(err);
    if let (true, Some(cause)) = (is_generation, cause) {
        py_err.set_cause(py, Some(PyErr::from_value(cause.into_bound(py).into_any())));
    }
    py_err
}
