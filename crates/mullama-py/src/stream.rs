//! The token stream as Python objects: `TokenProducer` (push side, any thread), `TokenStream`
//! (the sync iterator; plus `try_next`/`set_wakeup_fd` for async facades), `open_stream`, and
//! `spawn_piece_producer`, a Rust-thread producer for tests and benchmarks.
//!
//! Locking rule: the binding's own mutexes are only held while attached to the interpreter and
//! never across a detach, and the core never calls into Python, so no lock order involves the
//! GIL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use mullama_core::{
    push_ids_in_order, token_stream, CoreError, FinishReason, PieceTable, PushOutcome, Read,
    StatValue, StreamConfig, StreamReader, StreamStats, TokenProducer,
};
use pyo3::exceptions::{
    PyBaseException, PyRuntimeError, PyStopIteration, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt};

use crate::config::PyStreamConfig;
use crate::errors::{consumer_error, to_py_err};
use crate::signal::PyRoomSignal;
use crate::token::PyToken;
use crate::vocab::{type_name, vocab_pieces, PyPieceTable};

mod text;

/// How long one blocking wait lasts before the consumer checks for Ctrl+C.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// The producer's original exception, kept on the binding side (the core only carries its
/// message) so the consumer can raise GenerationError from it.
type FailureSlot = Arc<Mutex<Option<Py<PyBaseException>>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-updated (every
    // critical section is a plain assignment or queue operation), so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn config_or_default(config: Option<PyRef<'_, PyStreamConfig>>) -> StreamConfig {
    config.map(|c| c.inner.clone()).unwrap_or_default()
}

/// A token id from Python: an int in 0..=u32::MAX.
fn token_id(value: &Bound<'_, PyAny>) -> PyResult<u32> {
    if let Ok(id) = value.extract::<u32>() {
        return Ok(id);
    }
    if value.is_instance_of::<PyInt>() || value.hasattr("__index__").unwrap_or(false) {
        Err(PyValueError::new_err(format!(
            "token id {} is outside 0..={}",
            value.repr()?,
            u32::MAX
        )))
    } else {
        Err(PyTypeError::new_err(format!(
            "token id must be an int, not {}",
            type_name(value)
        )))
    }
}

fn parse_finish_reason(reason: &str) -> PyResult<FinishReason> {
    match reason.parse::<FinishReason>() {
        Ok(parsed) if parsed.is_producer_end() => Ok(parsed),
        _ => Err(PyValueError::new_err(format!(
            "finish reason must be \"stop\" or \"length\", not {reason:?} \
             (use fail() for errors; cancellation and timeouts are decided by the stream)"
        ))),
    }
}

pub(crate) fn seconds(value: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        PyValueError::new_err(format!(
            "{what} must be a finite number of seconds >= 0, not {value}"
        ))
    })
}

/// The core's message for a producer's exception: its type and text.
fn failure_message(exc: &Bound<'_, PyBaseException>) -> PyResult<String> {
    let text = exc.str()?.to_string();
    let kind = type_name(exc.as_any());
    Ok(if text.is_empty() {
        kind
    } else {
        format!("{kind}: {text}")
    })
}

/// The push side of a stream. Every method may be called from any thread.
#[pyclass(name = "TokenProducer", module = "mullama._core", frozen)]
pub struct PyTokenProducer {
    inner: TokenProducer,
    failure: FailureSlot,
}

#[pymethods]
impl PyTokenProducer {
    /// Number of prompt tokens, for stats; call before the first push.
    fn set_prompt_tokens(&self, n: usize) {
        self.inner.set_prompt_tokens(n);
    }

    /// Peak memory in bytes (e.g. mx.get_peak_memory()); events report it in GB.
    fn set_peak_memory(&self, bytes: u64) {
        self.inner.set_peak_memory(bytes);
    }

    /// Pushes one token. Blocks (without the GIL) while the buffer is full. Returns True to
    /// keep going, False once the producer should stop (see `stop_reason`).
    #[pyo3(signature = (token, logprob=None, top_logprobs=None))]
    fn push(
        &self,
        py: Python<'_>,
        token: &Bound<'_, PyAny>,
        logprob: Option<f64>,
        top_logprobs: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let id = token_id(token)?;
        let top = match top_logprobs {
            None => Vec::new(),
            Some(v) => v.extract::<Vec<(u32, f32)>>().map_err(|e| {
                PyTypeError::new_err(format!(
                    "top_logprobs must be a list of (token id, logprob) pairs: {e}"
                ))
            })?,
        };
        let logprob = logprob.map(|x| x as f32);
        let outcome = py
            .detach(|| self.inner.push(id, logprob, top))
            .map_err(to_py_err)?;
        Ok(outcome == PushOutcome::Continue)
    }

    /// Ends the stream normally: reason "stop" (end of sequence) or "length". `token` is the
    /// closing token (e.g. EOS), reported but not detokenized. No-op once the stream ended.
    #[pyo3(signature = (reason="stop", token=None))]
    fn finish(&self, reason: &str, token: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let reason = parse_finish_reason(reason)?;
        let token = token.map(token_id).transpose()?;
        self.inner.finish(reason, token);
        Ok(())
    }

    /// Ends the stream with an error: the consumer raises GenerationError with `exc` as its
    /// `__cause__`.
    fn fail(&self, exc: &Bound<'_, PyBaseException>) -> PyResult<()> {
        let message = failure_message(exc)?;
        *lock(&self.failure) = Some(exc.clone().unbind());
        self.inner.fail(message);
        Ok(())
    }

    /// Why the producer should stop ("stop", "length", "timeout", "cancelled", "error"), or
    /// None while it should keep going.
    #[getter]
    fn stop_reason(&self) -> Option<&'static str> {
        self.inner.stop_reason().map(FinishReason::as_str)
    }

    /// How many pushes return without waiting now (the whole buffer once the stream ended).
    fn room(&self) -> usize {
        self.inner.room()
    }

    /// Attaches `signal`: notified when the consumer frees room in the full buffer and when
    /// the stream ends.
    fn set_room_signal(&self, signal: PyRef<'_, PyRoomSignal>) {
        self.inner.set_room_signal(Arc::clone(&signal.inner));
    }

    /// Sleeps up to `seconds` (without the GIL), waking early when the stream ends. Returns
    /// True if the producer should stop.
    fn wait(&self, py: Python<'_>, seconds: f64) -> PyResult<bool> {
        let d = self::seconds(seconds, "wait")?;
        Ok(py.detach(|| self.inner.wait_for(d)).is_some())
    }

    fn __repr__(&self) -> String {
        match self.inner.stop_reason() {
            None => "TokenProducer(active)".to_owned(),
            Some(r) => format!("TokenProducer(stopped: {})", r.as_str()),
        }
    }
}

/// The consumer side: iterate to receive `Token` events.
#[pyclass(name = "TokenStream", module = "mullama._core", frozen)]
pub struct PyTokenStream {
    reader: StreamReader,
    failure: FailureSlot,
    /// Where the waker writes; -1 = nowhere. Shared with the waker closure so the fd can be
    /// changed or withdrawn after the waker is registered.
    /// A mutex rather than an atomic: the waker holds it while writing, so once
    /// `set_wakeup_fd(-1)` returns no write to the old fd is in flight and it may be closed.
    wakeup_fd: Arc<Mutex<i32>>,
    waker_registered: AtomicBool,
    /// A Rust producer thread owned by this stream (spawn_piece_producer); joined on close and
    /// drop so no thread outlives its stream.
    producer_thread: Mutex<Option<JoinHandle<()>>>,
}

impl PyTokenStream {
    fn new(reader: StreamReader, failure: FailureSlot) -> Self {
        Self {
            reader,
            failure,
            wakeup_fd: Arc::new(Mutex::new(-1)),
            waker_registered: AtomicBool::new(false),
            producer_thread: Mutex::new(None),
        }
    }

    fn error(&self, py: Python<'_>, err: CoreError) -> PyErr {
        let cause = lock(&self.failure).as_ref().map(|e| e.clone_ref(py));
        consumer_error(py, err, cause)
    }

    /// Waits without the GIL in short slices, checking for Ctrl+C between them.
    fn wait_next(&self, py: Python<'_>) -> PyResult<Option<PyToken>> {
        loop {
            match py.detach(|| self.reader.read_within(SIGNAL_CHECK_INTERVAL)) {
                Ok(Read::Event(event)) => return Ok(Some(PyToken::from(event))),
                Ok(Read::End) => return Ok(None),
                Ok(Read::Empty) => py.check_signals()?,
                Err(err) => return Err(self.error(py, err)),
            }
        }
    }

    fn stop_producer_thread(&self, py: Python<'_>) {
        let handle = lock(&self.producer_thread).take();
        if let Some(handle) = handle {
            // The thread exits promptly once the stream is cancelled; it never needs the GIL.
            let _ = py.detach(|| handle.join());
        }
    }
}

#[pymethods]
impl PyTokenStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyToken>> {
        match self.reader.try_read() {
            Ok(Read::Event(event)) => Ok(Some(PyToken::from(event))),
            Ok(Read::End) => Ok(None),
            Ok(Read::Empty) => self.wait_next(py),
            Err(err) => Err(self.error(py, err)),
        }
    }

    /// Non-blocking read for async facades: a Token if one is ready, None if nothing is ready
    /// yet (the wakeup fd, if set, then receives a byte once something arrives), and raises
    /// StopIteration at the end. Errors are raised as by `__next__`.
    fn try_next(&self, py: Python<'_>) -> PyResult<Option<PyToken>> {
        match self.reader.try_read() {
            Ok(Read::Event(event)) => Ok(Some(PyToken::from(event))),
            Ok(Read::Empty) => Ok(None),
            Ok(Read::End) => Err(PyStopIteration::new_err(())),
            Err(err) => Err(self.error(py, err)),
        }
    }

    /// Registers a file descriptor (e.g. a non-blocking socketpair end) that receives one byte
    /// when something arrives after `try_next` returned None. The write happens on the
    /// producer's thread without the GIL; EAGAIN is ignored. -1 unregisters. The caller keeps
    /// ownership of the fd and must unregister (or close the stream) before closing it.
    fn set_wakeup_fd(&self, fd: i32) -> PyResult<()> {
        if !cfg!(unix) {
            return Err(PyRuntimeError::new_err(
                "set_wakeup_fd needs a POSIX file descriptor",
            ));
        }
        if fd < -1 {
            return Err(PyValueError::new_err(format!(
                "fd must be a file descriptor or -1, not {fd}"
            )));
        }
        *lock(&self.wakeup_fd) = fd;
        if fd >= 0 && !self.waker_registered.swap(true, Ordering::SeqCst) {
            let cell = Arc::clone(&self.wakeup_fd);
            self.reader.set_waker(Arc::new(move || {
                let fd = lock(&cell); // held through the write: see `wakeup_fd`
                wake_fd(*fd);
            }));
        }
        Ok(())
    }

    /// Cancels the stream: iteration ends, the producer's next push returns False.
    fn close(&self, py: Python<'_>) {
        *lock(&self.wakeup_fd) = -1;
        self.reader.close();
        self.stop_producer_thread(py);
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__(&self, py: Python<'_>, _exc_info: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }

    /// Why the stream ended, once the consumer has seen the end; None before.
    #[getter]
    fn finish_reason(&self) -> Option<&'static str> {
        self.reader.finish_reason().map(FinishReason::as_str)
    }

    /// The stop sequence that ended the stream, if one did.
    #[getter]
    fn stop_sequence(&self) -> Option<String> {
        self.reader.stop_sequence()
    }

    /// Latest statistics (same keys as the Token attributes).
    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        stats_dict(py, &self.reader.stats())
    }

    /// Tokens the producer has pushed so far.
    #[getter]
    fn tokens_generated(&self) -> usize {
        self.reader.stats().generation_tokens
    }

    /// Generation speed (tokens after the first, per second since the first).
    fn tokens_per_second(&self) -> f64 {
        self.reader.stats().generation_tps
    }

    /// Seconds left until the stream's deadline (0.0 once passed); None without a deadline.
    /// Async facades bound their waits by it, since a stalled producer never wakes them.
    fn time_left(&self) -> Option<f64> {
        self.reader.time_left().map(|d| d.as_secs_f64())
    }

    fn __repr__(&self) -> String {
        match self.finish_reason() {
            None => "TokenStream(open)".to_owned(),
            Some(r) => format!("TokenStream(finished: {r})"),
        }
    }
}

impl Drop for PyTokenStream {
    fn drop(&mut self) {
        *lock(&self.wakeup_fd) = -1;
        self.reader.close();
        if let Some(handle) = lock(&self.producer_thread).take() {
            let _ = handle.join();
        }
    }
}

fn stats_dict<'py>(py: Python<'py>, s: &StreamStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, value) in s.entries() {
        match value {
            StatValue::Count(n) => d.set_item(name, n)?,
            StatValue::Number(x) => d.set_item(name, x)?,
            StatValue::MaybeNumber(x) => d.set_item(name, x)?,
        }
    }
    Ok(d)
}

/// Writes one byte to `fd`; must not block, allocate a Python object or take the GIL.
#[cfg(unix)]
fn wake_fd(fd: i32) {
    use std::io::{ErrorKind, Write};
    use std::mem::ManuallyDrop;
    use std::os::fd::FromRawFd;
    if fd < 0 {
        return;
    }
    // SAFETY: the fd belongs to the Python side, which keeps it open while registered;
    // ManuallyDrop makes sure this borrowed handle never closes it.
    let mut file = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
    loop {
        match file.write(&[0]) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // WouldBlock means the socket already holds unread wake bytes: nothing is lost.
            _ => return,
        }
    }
}

#[cfg(not(unix))]
fn wake_fd(_fd: i32) {}

fn new_stream(
    config: &StreamConfig,
    pieces: Arc<dyn mullama_core::TokenPieces>,
) -> PyResult<(TokenProducer, PyTokenStream, FailureSlot)> {
    let (producer, consumer) = token_stream(config, pieces).map_err(to_py_err)?;
    let failure = FailureSlot::default();
    let reader = StreamReader::new(consumer, config.buffer_size);
    let stream = PyTokenStream::new(reader, Arc::clone(&failure));
    Ok((producer, stream, failure))
}

/// Creates a stream over `vocab` (a PieceTable or a Tokenizer); config None = defaults.
#[pyfunction]
#[pyo3(signature = (config, vocab))]
pub fn open_stream(
    config: Option<PyRef<'_, PyStreamConfig>>,
    vocab: &Bound<'_, PyAny>,
) -> PyResult<(PyTokenProducer, PyTokenStream)> {
    let pieces = vocab_pieces(vocab)?;
    let (inner, stream, failure) = new_stream(&config_or_default(config), pieces)?;
    Ok((PyTokenProducer { inner, failure }, stream))
}

/// A stream fed by a Rust thread pushing token i = pieces[i] in order (then finish("stop")),
/// waiting `delay_s` before each token. The thread stops as soon as the stream ends, is
/// closed or dropped.
#[pyfunction]
#[pyo3(signature = (pieces, config=None, delay_s=0.0))]
pub fn spawn_piece_producer(
    pieces: &Bound<'_, PyAny>,
    config: Option<PyRef<'_, PyStreamConfig>>,
    delay_s: f64,
) -> PyResult<PyTokenStream> {
    let delay = seconds(delay_s, "delay_s")?;
    let table: Arc<PieceTable> = PyPieceTable::from_pieces(pieces)?;
    let count = u32::try_from(mullama_core::TokenPieces::vocab_size(table.as_ref()))
        .expect("PieceTable size is checked to fit u32");
    let (producer, stream, _failure) = new_stream(&config_or_default(config), table)?;
    let handle = std::thread::Builder::new()
        .name("mullama-piece-producer".to_owned())
        .spawn(move || push_ids_in_order(&producer, count, delay))
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start producer thread: {e}")))?;
    *lock(&stream.producer_thread) = Some(handle);
    Ok(stream)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyStreamConfig>()?;
    m.add_class::<PyToken>()?;
    m.add_class::<PyPieceTable>()?;
    m.add_class::<PyTokenProducer>()?;
    m.add_class::<PyTokenStream>()?;
    m.add_function(wrap_pyfunction!(open_stream, m)?)?;
    m.add_function(wrap_pyfunction!(spawn_piece_producer, m)?)?;
    text::register(m)?;
    Ok(())
}
