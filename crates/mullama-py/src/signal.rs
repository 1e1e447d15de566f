//! `RoomSignal` for Python: the shared wake-up of a loop that pushes into many streams.

use std::sync::Arc;

use mullama_core::RoomSignal;
use pyo3::prelude::*;

use crate::stream::seconds;

/// Notified when a consumer frees room in a full stream attached to it, when such a stream
/// ends, and by `notify()`. `wait(epoch, seconds)` sleeps (without the GIL) until then.
#[pyclass(name = "RoomSignal", module = "mullama._core", frozen)]
pub struct PyRoomSignal {
    pub(crate) inner: Arc<RoomSignal>,
}

#[pymethods]
impl PyRoomSignal {
    #[new]
    fn new() -> Self {
        Self {
            inner: Arc::new(RoomSignal::new()),
        }
    }

    /// How many notifications have happened: read it before looking at the streams, then
    /// `wait` for it to change, so no notification in between is lost.
    #[getter]
    fn epoch(&self) -> u64 {
        self.inner.epoch()
    }

    /// Wakes every waiter.
    fn notify(&self) {
        self.inner.notify();
    }

    /// Sleeps until the epoch differs from `epoch` or `seconds` passed; returns the epoch.
    fn wait(&self, py: Python<'_>, epoch: u64, seconds: f64) -> PyResult<u64> {
        let timeout = self::seconds(seconds, "wait")?;
        let signal = Arc::clone(&self.inner);
        Ok(py.detach(move || signal.wait_past(epoch, timeout)))
    }

    fn __repr__(&self) -> String {
        format!("RoomSignal(epoch={})", self.inner.epoch())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRoomSignal>()
}
