//! `summarize_logits`: the core's log-softmax summary over a float32 buffer (a NumPy view
//! of an engine's logits), read in place. It keeps the GIL: tens of microseconds of
//! arithmetic, cheaper than handing the GIL over and taking it back.

use mullama_core::logits;
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// (argmax, max, log_sum_exp) of a 1-D C-contiguous float32 buffer; None when it is empty
/// or holds a NaN.
#[pyfunction]
fn summarize_logits(logits: PyBuffer<f32>) -> PyResult<Option<(usize, f32, f32)>> {
    if logits.dimensions() != 1 || !logits.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "logits must be a 1-D contiguous float32 buffer, got {} dimension(s){}",
            logits.dimensions(),
            if logits.is_c_contiguous() {
                ""
            } else {
                ", not contiguous"
            }
        )));
    }
    let len = logits.item_count();
    // SAFETY: the buffer is held (and so kept alive and in place) until this returns; it is
    // 1-D, C-contiguous and of f32 items, as checked above and by PyBuffer<f32>.
    let values = unsafe { std::slice::from_raw_parts(logits.buf_ptr() as *const f32, len) };
    let summary = logits::summarize(values);
    Ok(summary.map(|s| (s.argmax, s.max, s.log_sum_exp)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(summarize_logits, m)?)
}
