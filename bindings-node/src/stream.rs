//! Streams: `NativeStream` (the read side, polled by the facade's async iterator and woken by
//! a callback), `NativeProducer` (the push side for the engine worker's tokens, which arrive
//! on Node's own thread and so must never block) and `streamFromPieces` (a Rust thread
//! pushing a fixed piece list, for users' tests and benchmarks).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use mullama_core::{
    push_ids_in_order, token_stream, Batch, CoreError, FinishReason, PushOutcome, StatValue,
    StreamReader, TokenEvent, TokenPieces, TokenProducer, STAT_NAMES,
};
use napi::bindgen_prelude::Float64ArraySlice;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, JsString, Status};
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

/// The layout of the columns a `read()` writes into (a Float64Array the facade allocates
/// once per stream and passes to every read): numbers in a typed array the facade owns cost
/// no allocation per batch on either side, where an object or a typed array per batch
/// costs napi calls and a finalizer each. Header first:
/// `[events, state, top pairs, last event ends the stream (0/1)]`.
#[napi]
pub const READ_HEADER: u32 = 4;
/// Then `events` rows of READ_STRIDE numbers (see the `COL_` offsets), then the top
/// logprob pairs `[id, logprob, ...]` of every event in order.
#[napi]
pub const READ_STRIDE: u32 = 13;
/// How long the facade's column array is: 64 events with 20 alternatives each fit; a batch
/// that does not fit is handed out over several reads.
#[napi]
pub const READ_COLUMNS: u32 = READ_HEADER + 64 * READ_STRIDE + 64 * 2 * 20;

/// `state` in the header: events (and more may follow), nothing yet (the readable callback
/// will be called), the end (after these events), an error (`takeError()` says which).
#[napi]
pub const READ_EVENTS: u32 = 0;
#[napi]
pub const READ_EMPTY: u32 = 1;
#[napi]
pub const READ_END: u32 = 2;
#[napi]
pub const READ_ERROR: u32 = 3;

// A row's columns (NaN where a value is absent). The statistics are the event's snapshot,
// in STAT_NAMES order (Python's Token carries the same).
const COL_END: usize = 0; // where the event's text ends in the batch text, in UTF-16 units
const COL_ID: usize = 1;
const COL_LOGPROB: usize = 2;
const COL_TOP_AT: usize = 3; // index of its first top pair's id in the columns
const COL_TOP_COUNT: usize = 4;
const COL_STATS: usize = 5; // 8 statistics follow
const _: () = assert!(COL_STATS + STAT_NAMES.len() == READ_STRIDE as usize);

/// A batch's text, concatenated, and whether it is all ASCII (then V8 takes its bytes as they
/// are, as Latin-1, instead of decoding UTF-8).
struct BatchText {
    text: String,
    ascii: bool,
}

impl BatchText {
    fn empty() -> Self {
        Self {
            text: String::new(),
            ascii: true,
        }
    }

    fn to_js<'env>(&self, env: &'env Env) -> napi::Result<JsString<'env>> {
        if self.ascii {
            env.create_string_latin1(self.text.as_bytes())
        } else {
            // In one pass here: V8's UTF-8 path walks the text twice (length, then decode).
            let units: Vec<u16> = self.text.encode_utf16().collect();
            env.create_string_utf16(&units)
        }
    }
}

/// Writes the first events of `events` that fit into `columns` and returns the batch text
/// and how many it wrote (at least one).
fn write_columns(events: &[TokenEvent], columns: &mut [f64]) -> (BatchText, usize) {
    let header = READ_HEADER as usize;
    let stride = READ_STRIDE as usize;
    // How many fit: rows grow from the header, top pairs after the last row.
    let (mut count, mut pairs) = (0usize, 0usize);
    for event in events {
        let need = header + (count + 1) * stride + 2 * (pairs + event.top_logprobs.len());
        if need > columns.len() && count > 0 {
            break;
        }
        count += 1;
        pairs += event.top_logprobs.len();
    }
    let events = &events[..count];
    let mut text = String::with_capacity(events.iter().map(|e| e.text.len()).sum());
    let mut end = 0usize;
    let mut ascii = true;
    let mut pair_at = header + count * stride;
    for (i, event) in events.iter().enumerate() {
        // UTF-16 length: one unit per byte for ASCII (checked a word at a time), the common case.
        end += if event.text.is_ascii() {
            event.text.len()
        } else {
            ascii = false;
            event.text.encode_utf16().count()
        };
        text.push_str(&event.text);
        let first_pair = pair_at;
        for &(id, logprob) in &event.top_logprobs {
            // Every pair of the events kept fits, but for a single event with more pairs
            // than the columns hold: it keeps its first (most likely) ones.
            if pair_at + 2 <= columns.len() {
                columns[pair_at] = f64::from(id);
                columns[pair_at + 1] = f64::from(logprob);
                pair_at += 2;
            }
        }
        let row = &mut columns[header + i * stride..header + (i + 1) * stride];
        row[COL_END] = end as f64;
        row[COL_ID] = event.token.map_or(f64::NAN, f64::from);
        row[COL_LOGPROB] = event.logprob.map_or(f64::NAN, f64::from);
        row[COL_TOP_AT] = first_pair as f64;
        row[COL_TOP_COUNT] = ((pair_at - first_pair) / 2) as f64;
        row[COL_STATS..].copy_from_slice(&event.stats.numbers());
    }
    let last_ends = events.last().is_some_and(|e| e.finish_reason.is_some());
    columns[0] = count as f64;
    columns[2] = ((pair_at - header - count * stride) / 2) as f64;
    columns[3] = if last_ends { 1.0 } else { 0.0 };
    (BatchText { text, ascii }, count)
}

type Wake = ThreadsafeFunction<(), (), (), Status, false, true>;

#[napi]
pub struct NativeStream {
    reader: StreamReader,
    /// Events read but not handed out yet: the rest of a batch that did not fit the
    /// columns (only with many top logprobs).
    held: Mutex<VecDeque<TokenEvent>>,
    /// What a read that ended in an error found, until `take_error`.
    error: Mutex<Option<ErrorInfo>>,
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
    /// The ids of the next push (reused).
    ids: Vec<u32>,
}

impl PieceFeeder {
    /// Pushes pieces while there is room; false once the stream is finished or stopped.
    fn feed(&mut self) -> bool {
        let room = self.producer.room() as u32;
        let start = self.next;
        let end = self.count.min(start.saturating_add(room));
        if end > start {
            self.ids.clear();
            self.ids.extend(start..end);
            match self.producer.push_available(&self.ids) {
                Ok((pushed, PushOutcome::Continue)) => self.next += pushed as u32,
                Ok((_, PushOutcome::Stop(_))) | Err(_) => return false,
            }
        }
        if self.next == self.count && self.next - start < room {
            // Room is left after the last piece: the closing event goes in now.
            self.producer.finish(FinishReason::Stop, None);
            return false;
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

    /// One batch from the reader; a piece feeder fills the room first. Called only once the
    /// last read's events were all handed out (the facade reads when it has none left), so
    /// their room is free for the feeder before this read.
    fn read_batch(&self) -> mullama_core::error::Result<Batch> {
        self.reader.release_handed_out();
        let spin = if self.feed_pieces() {
            Duration::ZERO
        } else {
            SPIN_BEFORE_WAITING
        };
        self.reader.try_read_batch_spinning(spin)
    }

    fn new(reader: StreamReader) -> Self {
        Self {
            reader,
            held: Mutex::new(VecDeque::new()),
            error: Mutex::new(None),
            wake: Arc::new(Mutex::new(None)),
            holding_loop: AtomicBool::new(false),
            producer_thread: Mutex::new(None),
            feeder: Mutex::new(None),
        }
    }
}

#[napi]
impl NativeStream {
    /// Writes the ready events (at most one buffer's worth) into `columns` (READ_COLUMNS
    /// numbers, laid out as READ_HEADER says) and returns their text, concatenated; never
    /// blocks. When it finds nothing (state READ_EMPTY), the readable callback holds Node's
    /// event loop open until the next read.
    #[napi]
    pub fn read<'env>(
        &self,
        env: &'env Env,
        mut columns: Float64ArraySlice,
    ) -> napi::Result<JsString<'env>> {
        // SAFETY: the array is the caller's and lives through this call; JS runs on this
        // thread only, so nothing else touches it until the call returns.
        let columns = unsafe { columns.as_mut() };
        if columns.len() < READ_COLUMNS as usize {
            return Err(type_error(format!(
                "read() needs a Float64Array of READ_COLUMNS ({READ_COLUMNS}) numbers, got {}",
                columns.len()
            )));
        }
        let mut held = lock(&self.held);
        let (state, text, written) = if !held.is_empty() {
            let (text, count) = write_columns(held.make_contiguous(), columns);
            held.drain(..count);
            (READ_EVENTS, text, count)
        } else {
            match self.read_batch() {
                Ok(Batch::Events(mut events)) => {
                    let (text, count) = write_columns(&events, columns);
                    held.extend(events.drain(count..));
                    (READ_EVENTS, text, count)
                }
                Ok(Batch::Empty) => (READ_EMPTY, BatchText::empty(), 0),
                Ok(Batch::End) => (READ_END, BatchText::empty(), 0),
                Err(err) => {
                    *lock(&self.error) = Some(error_info(&err));
                    (READ_ERROR, BatchText::empty(), 0)
                }
            }
        };
        if written == 0 {
            columns[0] = 0.0;
            columns[2] = 0.0;
            columns[3] = 0.0;
        }
        columns[1] = f64::from(state);
        let wait = state == READ_EMPTY;
        if wait != self.holding_loop.load(Ordering::Relaxed) {
            self.hold_loop(env, wait)?;
        }
        text.to_js(env)
    }

    /// The error a read reported with state READ_ERROR (once).
    #[napi]
    pub fn take_error(&self) -> Option<ErrorInfo> {
        lock(&self.error).take()
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
        lock(&self.held).clear();
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

    /// Producer-reported peak memory in bytes (the engine's), carried in later events' stats.
    #[napi]
    pub fn set_peak_memory(&self, bytes: f64) {
        // Saturating: a negative or NaN report counts as 0.
        self.inner.set_peak_memory(bytes as u64);
    }

    /// Pushes one token, with its alternatives as `[id, logprob, id, logprob, ...]` when
    /// asked for; returns null to go on, or the reason the stream ended (the worker is then
    /// told to stop). Never blocks: a push without room (the worker sent more than the
    /// credits it was given) fails the stream instead.
    #[napi]
    pub fn push(
        &self,
        token: u32,
        logprob: Option<f64>,
        top_logprobs: Option<&[f64]>,
    ) -> Option<String> {
        if self.inner.room() == 0 {
            self.inner.fail(format!(
                "the engine worker sent token {token} beyond the stream's credits \
                 (a protocol error)"
            ));
            return Some(FinishReason::Error.as_str().to_owned());
        }
        let top = top_logprobs
            .unwrap_or_default()
            .chunks_exact(2)
            .map(|pair| (pair[0] as u32, pair[1] as f32))
            .collect();
        match self.inner.push(token, logprob.map(|x| x as f32), top) {
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

/// A vocabulary given as one byte string and where each piece ends in it: the facade packs
/// the pieces in JS (one Buffer.concat), which costs far less than a napi conversion of each
/// piece.
struct PackedPieces {
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl TokenPieces for PackedPieces {
    fn piece(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        let end = *self.ends.get(i)? as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.bytes.get(start..end)
    }

    fn vocab_size(&self) -> usize {
        self.ends.len()
    }
}

/// A stream of token i = piece i in order, then finish("stop"); piece i is
/// `bytes[ends[i - 1]..ends[i]]`. Without `delayMs` the pieces are pushed on Node's thread
/// as reads free room (the way the engine worker's tokens arrive); with it, a Rust thread
/// waits `delayMs` before each token and stops as soon as the stream ends or is closed.
#[napi]
pub fn stream_from_pieces(
    bytes: &[u8],
    ends: &[u32],
    config: Value,
    delay_ms: Option<f64>,
) -> napi::Result<NativeStream> {
    let config = parse(&config).map_err(|info| type_error(info.message))?;
    let delay = Duration::try_from_secs_f64(delay_ms.unwrap_or(0.0) / 1e3)
        .map_err(|_| type_error("delayMs must be a finite number >= 0".to_owned()))?;
    let ordered = ends
        .iter()
        .try_fold(0u32, |start, &end| (start <= end).then_some(end));
    if !matches!(ordered, Some(last) if last as usize == bytes.len()) {
        return Err(type_error(
            "ends must rise from 0 to the length of bytes".to_owned(),
        ));
    }
    let count = u32::try_from(ends.len())
        .map_err(|_| type_error("too many pieces for 32-bit token ids".to_owned()))?;
    let pieces: Arc<dyn TokenPieces> = Arc::new(PackedPieces {
        bytes: bytes.to_vec(),
        ends: ends.to_vec(),
    });
    let (producer, consumer) = token_stream(&config, pieces).map_err(to_napi)?;
    if delay.is_zero() {
        // Reads take whole buffers: the feeder pushes only inside a read, so there is no
        // producer to leave half the buffer to meanwhile (as `double_buffered` does).
        let stream = NativeStream::new(StreamReader::new(consumer, config.buffer_size));
        *lock(&stream.feeder) = Some(PieceFeeder {
            producer,
            next: 0,
            count,
            ids: Vec::with_capacity(config.buffer_size),
        });
        return Ok(stream);
    }
    let stream = NativeStream::new(StreamReader::double_buffered(consumer, config.buffer_size));
    let handle = std::thread::Builder::new()
        .name("mullama-piece-producer".to_owned())
        .spawn(move || push_ids_in_order(&producer, count, delay))
        .map_err(|e| type_error(format!("cannot start the producer thread: {e}")))?;
    *lock(&stream.producer_thread) = Some(handle);
    Ok(stream)
}
