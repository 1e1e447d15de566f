//! `Token`: one stream event as an immutable Python object. It keeps the core event and builds
//! Python values only for the attributes that are read, so a loop that reads `t.text` pays
//! for one str per token and nothing else.

use mullama_core::event::bytes_to_gb;
use mullama_core::TokenEvent;
use pyo3::prelude::*;

// A stream allocates one Token per event and the loop usually drops it at once: a free list
// turns that allocation into a pointer pop.
#[pyclass(name = "Token", module = "mullama._core", frozen, freelist = 128)]
pub struct PyToken {
    event: TokenEvent,
}

impl From<TokenEvent> for PyToken {
    fn from(event: TokenEvent) -> Self {
        Self { event }
    }
}

#[pymethods]
impl PyToken {
    /// Text released by this event; "" while text is withheld.
    #[getter]
    fn text(&self) -> &str {
        &self.event.text
    }
    /// The token id pushed; None for a closing event that carries no token.
    #[getter]
    fn token(&self) -> Option<u32> {
        self.event.token
    }
    /// Alias of `token`.
    #[getter]
    fn id(&self) -> Option<u32> {
        self.event.token
    }
    #[getter]
    fn logprob(&self) -> Option<f32> {
        self.event.logprob
    }
    /// (token id, logprob) pairs as given by the producer.
    #[getter]
    fn top_logprobs(&self) -> Vec<(u32, f32)> {
        self.event.top_logprobs.clone()
    }
    /// "stop", "length", "timeout", "cancelled" or "error" on the last event; else None.
    #[getter]
    fn finish_reason(&self) -> Option<&'static str> {
        self.event.finish_reason.map(|r| r.as_str())
    }
    /// The stop sequence that ended the stream, if one did.
    #[getter]
    fn stop_sequence(&self) -> Option<&str> {
        self.event.stop_sequence.as_deref()
    }
    #[getter]
    fn prompt_tokens(&self) -> usize {
        self.event.stats.prompt_tokens
    }
    #[getter]
    fn prompt_tps(&self) -> f64 {
        self.event.stats.prompt_tps
    }
    #[getter]
    fn generation_tokens(&self) -> usize {
        self.event.stats.generation_tokens
    }
    #[getter]
    fn generation_tps(&self) -> f64 {
        self.event.stats.generation_tps
    }
    /// Seconds from stream creation to the first token; None before it.
    #[getter]
    fn time_to_first_token(&self) -> Option<f64> {
        self.event.stats.time_to_first_token_s
    }
    /// Seconds since stream creation when this event was made.
    #[getter]
    fn elapsed(&self) -> f64 {
        self.event.stats.elapsed_s
    }
    /// Producer-reported peak memory in GB (0.0 if never reported).
    #[getter]
    fn peak_memory(&self) -> f64 {
        bytes_to_gb(self.event.stats.peak_memory_bytes)
    }

    fn __repr__(&self) -> String {
        let e = &self.event;
        let token = e.token.map_or("None".to_owned(), |t| t.to_string());
        let mut s = format!("Token(text={}, token={token}", py_str_repr(&e.text));
        if let Some(lp) = e.logprob {
            s.push_str(&format!(", logprob={lp:?}"));
        }
        if let Some(reason) = e.finish_reason {
            s.push_str(&format!(", finish_reason='{}'", reason.as_str()));
        }
        if let Some(stop) = &e.stop_sequence {
            s.push_str(&format!(", stop_sequence={}", py_str_repr(stop)));
        }
        s.push(')');
        s
    }
}

/// A Python-looking repr of a str for `__repr__` (single quotes, escapes), without a round
/// trip through the interpreter.
fn py_str_repr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}
