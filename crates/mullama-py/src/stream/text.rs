//! `TextProducer` and `open_text_stream`: the push side for producers that have text, not
//! token ids (remote backends). The consumer side is the ordinary `TokenStream`.

use mullama_core::{text_stream, FinishReason, PushOutcome, TextProducer};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString};

use super::{
    config_or_default, failure_message, lock, parse_finish_reason, seconds, FailureSlot,
    PyTokenStream,
};
use crate::config::PyStreamConfig;
use crate::errors::to_py_err;
use crate::vocab::type_name;

/// The push side of a text stream. Every method may be called from any thread.
#[pyclass(name = "TextProducer", module = "mullama._core", frozen)]
pub struct PyTextProducer {
    inner: TextProducer,
    failure: FailureSlot,
}

#[pymethods]
impl PyTextProducer {
    /// Pushes a text delta (str, or UTF-8 bytes that may end inside a character) standing
    /// for `tokens` generated tokens. Blocks (without the GIL) while the buffer is full.
    /// Returns True to keep going, False once the producer should stop (see `stop_reason`).
    #[pyo3(signature = (delta, tokens=1))]
    fn push(&self, py: Python<'_>, delta: &Bound<'_, PyAny>, tokens: usize) -> PyResult<bool> {
        let outcome = if let Ok(text) = delta.cast::<PyString>() {
            let text = text.to_str()?;
            py.detach(|| self.inner.push_text(text.as_bytes(), tokens))
        } else if let Ok(bytes) = delta.cast::<PyBytes>() {
            let bytes = bytes.as_bytes();
            py.detach(|| self.inner.push_text(bytes, tokens))
        } else if let Ok(bytes) = delta.cast::<PyByteArray>() {
            let bytes = bytes.to_vec();
            py.detach(|| self.inner.push_text(&bytes, tokens))
        } else {
            return Err(PyTypeError::new_err(format!(
                "delta must be str or bytes, not {}",
                type_name(delta)
            )));
        };
        Ok(outcome == PushOutcome::Continue)
    }

    /// Ends the stream normally: reason "stop" (the reply ended) or "length" (the server's
    /// limit). No-op once the stream ended.
    #[pyo3(signature = (reason="stop"))]
    fn finish(&self, reason: &str) -> PyResult<()> {
        self.inner.finish(parse_finish_reason(reason)?);
        Ok(())
    }

    /// Ends the stream with an error: the consumer raises GenerationError with `exc` as its
    /// `__cause__`.
    fn fail(&self, exc: &Bound<'_, pyo3::exceptions::PyBaseException>) -> PyResult<()> {
        let message = failure_message(exc)?;
        *lock(&self.failure) = Some(exc.clone().unbind());
        self.inner.fail(message);
        Ok(())
    }

    /// Number of prompt tokens, for stats (events after the call carry it).
    fn set_prompt_tokens(&self, n: usize) {
        self.inner.set_prompt_tokens(n);
    }

    /// Replaces the generated-token count with the server's own (its usage report).
    fn set_generation_tokens(&self, n: usize) {
        self.inner.set_generation_tokens(n);
    }

    /// Why the producer should stop ("stop", "length", "timeout", "cancelled", "error"), or
    /// None while it should keep going.
    #[getter]
    fn stop_reason(&self) -> Option<&'static str> {
        self.inner.stop_reason().map(FinishReason::as_str)
    }

    /// Sleeps up to `seconds` (without the GIL), waking early when the stream ends. Returns
    /// True if the producer should stop.
    fn wait(&self, py: Python<'_>, seconds: f64) -> PyResult<bool> {
        let d = self::seconds(seconds, "wait")?;
        Ok(py.detach(|| self.inner.wait_for(d)).is_some())
    }

    fn __repr__(&self) -> String {
        match self.inner.stop_reason() {
            None => "TextProducer(active)".to_owned(),
            Some(r) => format!("TextProducer(stopped: {})", r.as_str()),
        }
    }
}

/// Creates a stream fed with text deltas; config None = defaults.
#[pyfunction]
#[pyo3(signature = (config=None))]
pub fn open_text_stream(
    config: Option<PyRef<'_, PyStreamConfig>>,
) -> PyResult<(PyTextProducer, PyTokenStream)> {
    let config = config_or_default(config);
    let (inner, consumer) = text_stream(&config).map_err(to_py_err)?;
    let failure = FailureSlot::default();
    let stream = PyTokenStream::new(
        consumer,
        std::sync::Arc::clone(&failure),
        config.buffer_size,
    );
    Ok((PyTextProducer { inner, failure }, stream))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTextProducer>()?;
    m.add_function(wrap_pyfunction!(open_text_stream, m)?)?;
    Ok(())
}
