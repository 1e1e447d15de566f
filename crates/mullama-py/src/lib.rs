//! `mullama._core`: a thin PyO3 layer over `mullama-core`. It converts types and errors and
//! releases the GIL around every blocking wait; all behaviour lives in the core crate.

use pyo3::prelude::*;

mod config;
mod errors;
mod gguf;
mod logits;
mod signal;
mod stream;
mod token;
mod tokenizer;
mod vocab;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    gguf::register(m)?;
    logits::register(m)?;
    signal::register(m)?;
    stream::register(m)?;
    tokenizer::register(m)?;
    Ok(())
}
