//! Streams: `NativeStream` (the read side, polled by the facade's async iterator and woken by
//! a callback), `NativeProducer` (the push side for the engine worker's tokens, which arrive
//! on Node's own thread and so must never block) and `streamFromPieces` (a Rust thread
//! pushing a fixed piece list, for users' tests and benchmarks).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use mullama_core::{
    push_ids_in_order, token_stream, Batch, CoreError, FinishReason, PieceTable, PushOutcome,
    StatValue, StreamReader, TokenEvent, TokenPieces, TokenProducer,
};
use napi::bindgen_prelude::{Buffer, Either, Float64Array, Uint32Array};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status};
use napi_derive::napi;
use serde_json::{Map, Value};

use crate::config::{js_name, parse};
use crate::errors::{error_info, to_napi, type_error, ErrorInfo};
use crate::tokenizer::Tokenizer;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long a read that finds nothing polls before the facade waits for the readable
/// callback (a round trip through the event loop that costs more than this).
const SPIN_BEFORE_WAITING: Duration = Duration::from_micros(30);

/// The id a closing event without a token carries in `ReadResult::ids`.
pub const NO_TOKEN: u32 = u32::MAX;

/// What one `read()` found, column by column (one JS string and two typed arrays per batch
/// cost far less than an object per event; the facade builds the events). No events and not
/// done: nothing yet, and the readable callback will be called once something arrives.
#[napi(object)]
pub struct ReadResult {
    /// Every event's text, concatenated.
    pub text: String,
    /// Where each event's text ends in `text`, in UTF-16 code units (JS string indices).
    pub ends: Uint32Array,
    /// Each event's token id; NO_TOKEN (2^32 - 1) for a closing event without one.
    pub ids: Uint32Array,
    /// Each event's logprob (NaN where it has none); absent when no event has one.
    pub logprobs: Option<Float64Array>,
    /// Set when the batch's last event ends the stream: "stop", "length", ...
    pub finish_reason: Option<String>,
    /// The stop sequence that ended the stream, if one did.
    pub stop_sequence: Option<String>,
    /// Reading is over (after these events).
    pub done: bool,
    pub error: Option<ErrorInfo>,
}

impl ReadResult {
    fn new(events: Vec<TokenEvent>, done: bool, error: Option<ErrorInfo>) -> Self {
        let mut text = String::with_capacity(events.iter().map(|e| e.text.len()).sum());
        let mut ends = Vec::with_capacity(events.len());
        let mut ids = Vec::with_capacity(events.len());
        let mut logprobs: Option<Vec<f64>> = None;
        let mut end = 0u32;
        let (mut finish_reason, mut stop_sequence) = (None, None);
        for (i, event) in events.into_iter().enumerate() {
            end += event.text.encode_utf16().count() as u32;
            text.push_str(&event.text);
            ends.push(end);
            ids.push(event.token.unwrap_or(NO_TOKEN));
            if let Some(logprob) = event.logprob {
                logprobs
                    .get_or_insert_with(|| vec![f64::NAN; i])
                    .push(f64::from(logprob));
            } else if let Some(column) = logprobs.as_mut() {
                column.push(f64::NAN);
            }
            if event.finish_reason.is_some() {
                finish_reason = event.finish_reason.map(|r| r.as_str().to_owned());
                stop_sequence = event.stop_sequence;
            }
        }
        Self {
            text,
            ends: ends.into(),
            ids: ids.into(),
            logprobs: logprobs.map(Float64Array::new),
            finish_reason,
            stop_sequence,
            done,
            error,
        }
    }
}

type Wake = ThreadsafeFunction<(), (), (), Status, false, true>;

#[napi]
pub struct NativeStream {
    reader: StreamReader,
    /// The readable callback; shared with the core's waker, dropped (released) on close.
    wake: Arc<Mutex<Option<Wake>>>,
    /// Whether the callback holds the event loop open: from a read that found nothing until
    /// the next read (a pending `await` must keep Node running; an idle stream must not).
    holding_loop: AtomicBool,
    /// The thread of `streamFromPieces` with a delay, joined on close so none outlives its
    /// stream.
    producer_thread: Mutex<Option<JoinHandle<()>>>,
    /// `streamFromPieces` without a delay: each read first pushes pieces into the room the
    /// consumer freed, on Node's thread, as the engine worker's tokens are pushed.
    feeder: Mutex<Option<PieceFeeder>>,
}

struct PieceFeeder {
    producer: TokenProducer,
    next: u32,
    count: u32,
}

impl PieceFeeder {
    /// Pushes pieces while there is room; false once the stream is finished or stopped.
    fn feed(&mut self) -> bool {
        let mut room = self.producer.room();
        while room > 0 {
            if self.next == self.count {
                self.producer.finish(FinishReason::Stop, None);
                return false;
            }
            match self.producer.push(self.next, None, Vec::new()) {
                Ok(PushOutcome::Continue) => {}
                Ok(PushOutcome::Stop(_)) | Err(_) => return false,
            }
            self.next += 1;
            room -= 1;
        }
        true
    }
}

impl NativeStream {
    /// Runs the piece feeder, if any; whether it still has pieces to push.
    fn feed_pieces(&self) -> bool {
        let mut feeder = lock(&self.feeder);
        let Some(f) = feeder.as_mut() else {
            return false;
        };
        let more = f.feed();
        if !more {
            feeder.take();
        }
        more
    }

    #[expect(
        deprecated,
        reason = "napi-rs deprecates refer/unref for counting users; here they are N-API's \
                  ref/unref of the event loop, which is what a pending read needs"
    )]
    fn hold_loop(&self, env: &Env, hold: bool) -> napi::Result<()> {
        if let Some(callback) = lock(&self.wake).as_mut() {
            if hold {
                callback.refer(env)?;
            } else {
                callback.unref(env)?;
            }
        }
        self.holding_loop.store(hold, Ordering::Relaxed);
        Ok(())
    }

    fn new(reader: StreamReader) -> Self {
        Self {
            reader,
            wake: Arc::new(Mutex::new(None)),
            holding_loop: AtomicBool::new(false),
            producer_thread: Mutex::new(None),
            feeder: Mutex::new(None),
        }
    }
}

#[napi]
impl NativeStream {
    /// Takes the ready events (at most one buffer's worth); never blocks. When it finds
    /// nothing, the readable callback holds Node's event loop open until the next read.
    #[napi]
    pub fn read(&self, env: Env) -> napi::Result<ReadResult> {
        // A piece feeder fills the room first (the last read's batch frees its room only
        // when the reader goes back to the channel, hence a second round).
        let mut batch = Ok(Batch::Empty);
        for _ in 0..2 {
            let feeding = self.feed_pieces();
            let spin = if feeding {
                Duration::ZERO
            } else {
                SPIN_BEFORE_WAITING
            };
            batch = self.reader.try_read_batch_spinning(spin);
            if !(feeding && matches!(batch, Ok(Batch::Empty))) {
                break;
            }
        }
        let (events, done, error) = match batch {
            Ok(Batch::Events(events)) => (events, false, None),
            Ok(Batch::Empty) => (Vec::new(), false, None),
            Ok(Batch::End) => (Vec::new(), true, None),
            Err(err) => (Vec::new(), true, Some(error_info(&err))),
        };
        let wait = events.is_empty() && !done;
        if wait != self.holding_loop.load(Ordering::Relaxed) {
            self.hold_loop(&env, wait)?;
        }
        Ok(ReadResult::new(events, done, error))
    }

    /// Registers `callback`, called (on Node's thread, with no arguments) when something
    /// arrives after a `read()` found nothing. Registered once.
    #[napi]
    pub fn on_readable(&self, callback: Wake) {
        let mut slot = lock(&self.wake);
        if slot.is_some() {
            return;
        }
        *slot = Some(callback);
        drop(slot);
        let wake = Arc::clone(&self.wake);
        self.reader.set_waker(Arc::new(move || {
            if let Some(callback) = lock(&wake).as_ref() {
                // NonBlocking: the producer's thread must never wait for Node's event loop.
                callback.call((), ThreadsafeFunctionCallMode::NonBlocking);
            }
        }));
    }

    /// Cancels the stream: reading ends, the producer is told to stop.
    #[napi]
    pub fn close(&self) {
        self.reader.close();
        lock(&self.feeder).take();
        // Released: the callback no longer holds the loop (or the stream) alive.
        lock(&self.wake).take();
        if let Some(handle) = lock(&self.producer_thread).take() {
            // The thread leaves at its next push, a few microseconds away.
            let _ = handle.join();
        }
    }

    /// Why the stream ended, once the reader saw the end.
    #[napi(getter)]
    pub fn finish_reason(&self) -> Option<String> {
        self.reader.finish_reason().map(|r| r.as_str().to_owned())
    }

    #[napi(getter)]
    pub fn stop_sequence(&self) -> Option<String> {
        self.reader.stop_sequence()
    }

    /// Tokens the producer has pushed so far.
    #[napi(getter)]
    pub fn tokens_generated(&self) -> u32 {
        self.reader.stats().generation_tokens as u32
    }

    /// Tokens after the first, per second since the first.
    #[napi]
    pub fn tokens_per_second(&self) -> f64 {
        self.reader.stats().generation_tps
    }

    /// The statistics (camelCase names; times in seconds, peak memory in GB).
    #[napi]
    pub fn stats(&self) -> Value {
        let mut out = Map::new();
        for (name, value) in self.reader.stats().entries() {
            let value = match value {
                StatValue::Count(n) => Value::from(n),
                StatValue::Number(x) => Value::from(x),
                StatValue::MaybeNumber(x) => x.map_or(Value::Null, Value::from),
            };
            out.insert(js_name(name), value);
        }
        Value::Object(out)
    }

    /// Milliseconds left until the deadline (0 once passed); null without one. The facade
    /// wakes itself then, since a stalled producer never calls back.
    #[napi]
    pub fn time_left_ms(&self) -> Option<f64> {
        self.reader.time_left().map(|d| d.as_secs_f64() * 1e3)
    }
}

impl Drop for NativeStream {
    fn drop(&mut self) {
        self.close();
    }
}

/// The push side of a stream whose tokens come from the engine worker.
#[napi]
pub struct NativeProducer {
    inner: TokenProducer,
}

#[napi]
impl NativeProducer {
    /// Number of prompt tokens, for stats; call before the first push.
    #[napi]
    pub fn set_prompt_tokens(&self, n: u32) {
        self.inner.set_prompt_tokens(n as usize);
    }

    /// Pushes one token; returns null to go on, or the reason the stream ended (the worker
    /// is then told to stop). Never blocks: a push without room (the worker sent more than
    /// the credits it was given) fails the stream instead.
    #[napi]
    pub fn push(&self, token: u32, logprob: Option<f64>) -> Option<String> {
        if self.inner.room() == 0 {
            self.inner.fail(format!(
                "the engine worker sent token {token} beyond the stream's credits \
                 (a protocol error)"
            ));
            return Some(FinishReason::Error.as_str().to_owned());
        }
        match self
            .inner
            .push(token, logprob.map(|x| x as f32), Vec::new())
        {
            Ok(PushOutcome::Continue) => None,
            Ok(PushOutcome::Stop(reason)) => Some(reason.as_str().to_owned()),
            Err(_) => Some(FinishReason::Error.as_str().to_owned()),
        }
    }

    /// How many more tokens the stream takes without its buffer overflowing.
    #[napi]
    pub fn room(&self) -> u32 {
        self.inner.room() as u32
    }

    /// Ends the stream normally: "stop" (end of sequence, `token` the EOS id) or "length".
    #[napi]
    pub fn finish(&self, reason: String, token: Option<u32>) -> napi::Result<()> {
        match reason.parse::<FinishReason>() {
            Ok(parsed) if parsed.is_producer_end() => {
                self.inner.finish(parsed, token);
                Ok(())
            }
            _ => Err(type_error(format!(
                "finish reason must be \"stop\" or \"length\", not {reason:?}"
            ))),
        }
    }

    /// Ends the stream with the error the worker reported (by its core code), or one of
    /// ENGINE_EXITED / CANCELLED decided here.
    #[napi]
    pub fn fail(&self, code: String, message: String) {
        let error = CoreError::from_code(&code, message.clone()).unwrap_or(CoreError::Generation {
            message: format!("{code}: {message}"),
        });
        self.inner.fail_with(error);
    }

    /// Why the producer should stop, or null while it should go on.
    #[napi(getter)]
    pub fn stop_reason(&self) -> Option<String> {
        self.inner.stop_reason().map(|r| r.as_str().to_owned())
    }
}

/// A stream over `tokenizer`'s vocabulary, fed by the returned producer.
#[napi]
pub fn open_stream(tokenizer: &Tokenizer, config: Value) -> napi::Result<StreamPair> {
    let config = parse(&config).map_err(|info| type_error(info.message))?;
    let (producer, consumer) = token_stream(&config, tokenizer.pieces()).map_err(to_napi)?;
    Ok(StreamPair {
        producer: Some(NativeProducer { inner: producer }),
        stream: Some(NativeStream::new(StreamReader::double_buffered(
            consumer,
            config.buffer_size,
        ))),
    })
}

/// The two ends `openStream` returns; each is taken once.
#[napi]
pub struct StreamPair {
    producer: Option<NativeProducer>,
    stream: Option<NativeStream>,
}

#[napi]
impl StreamPair {
    #[napi]
    pub fn take_producer(&mut self) -> napi::Result<NativeProducer> {
        self.producer
            .take()
            .ok_or_else(|| type_error("the producer was already taken".to_owned()))
    }

    #[napi]
    pub fn take_stream(&mut self) -> napi::Result<NativeStream> {
        self.stream
            .take()
            .ok_or_else(|| type_error("the stream was already taken".to_owned()))
    }
}

/// A stream of token i = pieces[i] in order, then finish("stop"). Without `delayMs` the
/// pieces are pushed on Node's thread as reads free room (the way the engine worker's tokens
/// arrive); with it, a Rust thread waits `delayMs` before each token and stops as soon as the
/// stream ends or is closed.
#[napi]
pub fn stream_from_pieces(
    pieces: Vec<Either<String, Buffer>>,
    config: Value,
    delay_ms: Option<f64>,
) -> napi::Result<NativeStream> {
    let config = parse(&config).map_err(|info| type_error(info.message))?;
    let delay = Duration::try_from_secs_f64(delay_ms.unwrap_or(0.0) / 1e3)
        .map_err(|_| type_error("delayMs must be a finite number >= 0".to_owned()))?;
    let table: Vec<Vec<u8>> = pieces
        .into_iter()
        .map(|piece| match piece {
            Either::A(text) => text.into_bytes(),
            Either::B(bytes) => bytes.to_vec(),
        })
        .collect();
    let count = u32::try_from(table.len())
        .map_err(|_| type_error("too many pieces for 32-bit token ids".to_owned()))?;
    let pieces: Arc<dyn TokenPieces> = Arc::new(PieceTable::new(table));
    let (producer, consumer) = token_stream(&config, pieces).map_err(to_napi)?;
    let stream = NativeStream::new(StreamReader::double_buffered(consumer, config.buffer_size));
    if delay.is_zero() {
        *lock(&stream.feeder) = Some(PieceFeeder {
            producer,
            next: 0,
            count,
        });
        return Ok(stream);
    }
    let handle = std::thread::Builder::new()
        .name("mullama-piece-producer".to_owned())
        .spawn(move || push_ids_in_order(&producer, count, delay))
        .map_err(|e| type_error(format!("cannot start the producer thread: {e}")))?;
    *lock(&stream.producer_thread) = Some(handle);
    Ok(stream)
}
