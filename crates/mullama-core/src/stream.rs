//! The token channel: a producer pushes token ids, a consumer receives text events.
//!
//! Bounded by `buffer_size` (the producer's push blocks while full: backpressure). Push tells
//! the producer to stop once the consumer is gone or cancelled, a stop sequence matched,
//! max_tokens was reached or the deadline passed. The consumer's `next` blocks until an
//! event, the end, or the deadline; `try_next` plus a waker serve async facades.
//!
//! Locking: the producer's own work (detokenizing, stop scanning) happens under the
//! producer's private lock; the shared channel lock is only held to move events and change
//! the stream's state. Wakers are always called after the channel lock is released; an
//! attached `RoomSignal` is notified under it (the signal's own mutex is never held while a
//! channel lock is taken).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::config::StreamConfig;
use crate::detokenizer::{IncrementalDecoder, TokenPieces};
use crate::error::{CoreError, Result};
use crate::event::{EventText, FinishReason, StreamStats, TokenEvent};
use crate::signal::RoomSignal;
use crate::stop::StopScanner;

mod text;
pub use text::{text_stream, TextProducer};

/// The message a consumer receives when the producer is dropped mid-stream.
pub const PRODUCER_DROPPED: &str = "producer ended without finishing the stream";

/// Creates a stream; validates `config` first.
pub fn token_stream(
    config: &StreamConfig,
    pieces: Arc<dyn TokenPieces>,
) -> Result<(TokenProducer, TokenConsumer)> {
    config.validate()?;
    let created = Instant::now();
    let deadline = match config.timeout_ms {
        0 => None,
        // A deadline beyond what Instant can represent is no deadline.
        ms => created.checked_add(Duration::from_millis(ms)),
    };
    let shared = Arc::new(Shared {
        channel: Mutex::new(Channel::default()),
        readable: Condvar::new(),
        writable: Condvar::new(),
        ended_signal: Condvar::new(),
        capacity: config.buffer_size,
        created,
        deadline,
        timeout_ms: config.timeout_ms,
        end_code: AtomicU8::new(NOT_ENDED),
        counters: StatsCounters::default(),
    });
    let producer = TokenProducer {
        shared: Arc::clone(&shared),
        pieces,
        stops: config.stop_sequences.clone(),
        max_tokens: config.max_tokens,
        work: Mutex::new(ProducerWork {
            decoder: IncrementalDecoder::new(),
            scanner: StopScanner::new(&config.stop_sequences, config.include_stop),
            decoded: String::new(),
            released: String::new(),
            shown_any: false,
        }),
    };
    Ok((producer, TokenConsumer { shared }))
}

/// What `push` tells the producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Continue,
    /// Stop producing; the reason the stream ended (Cancelled when the consumer left).
    Stop(FinishReason),
}

/// Result of a non-blocking read.
#[derive(Debug)]
pub enum TryNext {
    Event(TokenEvent),
    /// Nothing yet: the waker (if set) will be called once when something arrives.
    Empty,
    /// The stream ended and every event was delivered.
    End,
}

/// Result of a read that waits at most a given time (so bindings can check signals).
#[derive(Debug)]
pub enum NextWithin {
    Event(TokenEvent),
    /// Nothing arrived within the wait; the deadline has not passed yet.
    Pending,
    End,
}

/// Result of the batch reads `try_next_batch` and `next_batch_within`.
#[derive(Debug)]
pub enum Batch {
    /// One or more events, oldest first.
    Events(Vec<TokenEvent>),
    /// Nothing ready: for `try_next_batch` the waker is armed, for `next_batch_within` the
    /// wait elapsed (the deadline has not passed yet).
    Empty,
    /// The stream ended and every event was delivered.
    End,
}

type Waker = Arc<dyn Fn() + Send + Sync>;

const NOT_ENDED: u8 = 0;

fn reason_code(reason: FinishReason) -> u8 {
    match reason {
        FinishReason::Stop => 1,
        FinishReason::Length => 2,
        FinishReason::Timeout => 3,
        FinishReason::Cancelled => 4,
        FinishReason::Error => 5,
    }
}

fn reason_from_code(code: u8) -> Option<FinishReason> {
    match code {
        1 => Some(FinishReason::Stop),
        2 => Some(FinishReason::Length),
        3 => Some(FinishReason::Timeout),
        4 => Some(FinishReason::Cancelled),
        5 => Some(FinishReason::Error),
        _ => None,
    }
}

/// A panic elsewhere must not turn every later call into a panic: the channel's state is
/// updated in single steps, so it stays consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn wait_on<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    until: Option<Instant>,
) -> MutexGuard<'a, T> {
    match until {
        None => condvar.wait(guard).unwrap_or_else(PoisonError::into_inner),
        Some(until) => {
            let timeout = until.saturating_duration_since(Instant::now());
            condvar
                .wait_timeout(guard, timeout)
                .unwrap_or_else(PoisonError::into_inner)
                .0
        }
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

fn call(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker();
    }
}

struct Shared {
    channel: Mutex<Channel>,
    /// Consumers wait here for an event or the end.
    readable: Condvar,
    /// A push waits here for room, the consumer leaving, or the end.
    writable: Condvar,
    /// `wait_for` sleeps here.
    ended_signal: Condvar,
    capacity: usize,
    created: Instant,
    deadline: Option<Instant>,
    timeout_ms: u64,
    /// The end reason's code once the stream ended (NOT_ENDED before), readable without
    /// the lock so a push can bail out cheaply.
    end_code: AtomicU8,
    counters: StatsCounters,
}

#[derive(Default)]
struct Channel {
    events: VecDeque<TokenEvent>,
    end: Option<FinishReason>,
    /// Delivered once, after the buffered events (fail, deadline).
    end_error: Option<CoreError>,
    waker: Option<Waker>,
    waker_armed: bool,
    /// Notified when a read frees room in a full buffer and when the stream ends, so a loop
    /// feeding many streams can leave full ones out and sleep until one can take a push.
    room_signal: Option<Arc<RoomSignal>>,
    /// Events a batch read moved to the consumer that it has not handed out yet (counted
    /// until its next read): they still occupy the buffer, so a slow consumer never has more
    /// than `capacity` events waiting, however it reads.
    consumer_held: usize,
    // Waiter counts let the hot path skip condvar notifications (a syscall) nobody needs.
    readers_waiting: usize,
    writers_waiting: usize,
    end_waiters: usize,
}

impl Channel {
    fn take_waker_if_armed(&mut self) -> Option<Waker> {
        if self.waker_armed && self.waker.is_some() {
            self.waker_armed = false;
            self.waker.clone()
        } else {
            None
        }
    }
}

/// Stream statistics kept as atomics so stats() never waits for the producer.
struct StatsCounters {
    prompt_tokens: AtomicUsize,
    generation_tokens: AtomicUsize,
    /// Nanoseconds from creation; u64::MAX = not yet.
    first_token_ns: AtomicU64,
    /// Nanoseconds from creation to the end, freezing the timing stats; u64::MAX = running.
    ended_ns: AtomicU64,
    peak_memory_bytes: AtomicU64,
    incomplete_bytes_dropped: AtomicUsize,
}

impl Default for StatsCounters {
    fn default() -> Self {
        Self {
            prompt_tokens: AtomicUsize::new(0),
            generation_tokens: AtomicUsize::new(0),
            first_token_ns: AtomicU64::new(u64::MAX),
            ended_ns: AtomicU64::new(u64::MAX),
            peak_memory_bytes: AtomicU64::new(0),
            incomplete_bytes_dropped: AtomicUsize::new(0),
        }
    }
}

const NANOS_PER_SECOND: f64 = 1e9;

impl Shared {
    fn nanos_since_creation(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.created).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX - 1)
    }

    /// Counts a generated token; returns how many have been generated.
    fn record_token(&self, now: Instant) -> usize {
        self.record_token_at(self.nanos_since_creation(now))
    }

    /// `record_token` at `at` ns since creation (a batch of pushes reads the clock once).
    fn record_token_at(&self, at: u64) -> usize {
        let counters = &self.counters;
        let _ = counters.first_token_ns.compare_exchange(
            u64::MAX,
            at,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        counters.generation_tokens.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn stats_at(&self, now: Instant) -> StreamStats {
        self.stats_at_ns(self.nanos_since_creation(now))
    }

    /// `stats_at` at `now_ns` ns since creation.
    fn stats_at_ns(&self, now_ns: u64) -> StreamStats {
        let counters = &self.counters;
        let now_ns = now_ns.min(counters.ended_ns.load(Ordering::Relaxed));
        let elapsed_s = now_ns as f64 / NANOS_PER_SECOND;
        let prompt_tokens = counters.prompt_tokens.load(Ordering::Relaxed);
        let generation_tokens = counters.generation_tokens.load(Ordering::Relaxed);
        let first_ns = counters.first_token_ns.load(Ordering::Relaxed);
        let time_to_first_token_s =
            (first_ns != u64::MAX).then(|| first_ns as f64 / NANOS_PER_SECOND);
        let prompt_tps = match time_to_first_token_s {
            Some(ttft) if ttft > 0.0 => prompt_tokens as f64 / ttft,
            _ => 0.0,
        };
        let generation_tps = match time_to_first_token_s {
            Some(ttft) if generation_tokens > 1 && elapsed_s > ttft => {
                (generation_tokens - 1) as f64 / (elapsed_s - ttft)
            }
            _ => 0.0,
        };
        StreamStats {
            prompt_tokens,
            prompt_tps,
            generation_tokens,
            generation_tps,
            time_to_first_token_s,
            elapsed_s,
            peak_memory_bytes: counters.peak_memory_bytes.load(Ordering::Relaxed),
            incomplete_bytes_dropped: counters.incomplete_bytes_dropped.load(Ordering::Relaxed),
        }
    }

    fn deadline_passed(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|deadline| now >= deadline)
    }

    fn ended(&self) -> Option<FinishReason> {
        reason_from_code(self.end_code.load(Ordering::Acquire))
    }

    /// Ends the stream once (later calls are no-ops); returns the waker to call after
    /// unlocking.
    fn end_locked(
        &self,
        channel: &mut Channel,
        reason: FinishReason,
        error: Option<CoreError>,
    ) -> Option<Waker> {
        if channel.end.is_some() {
            return None;
        }
        channel.end = Some(reason);
        channel.end_error = error;
        let at = self.nanos_since_creation(Instant::now());
        self.counters.ended_ns.store(at, Ordering::Relaxed);
        self.end_code.store(reason_code(reason), Ordering::Release);
        self.readable.notify_all();
        self.writable.notify_all();
        if channel.end_waiters > 0 {
            self.ended_signal.notify_all();
        }
        if let Some(signal) = &channel.room_signal {
            signal.notify();
        }
        channel.take_waker_if_armed()
    }

    fn is_full(&self, channel: &Channel) -> bool {
        channel.events.len() + channel.consumer_held >= self.capacity
    }

    /// Ends the stream as timed out if its deadline has passed and it has not ended.
    fn expire_locked(&self, channel: &mut Channel, now: Instant) -> Option<Waker> {
        if channel.end.is_none() && self.deadline_passed(now) {
            let error = CoreError::StreamTimeout {
                timeout_ms: self.timeout_ms,
            };
            self.end_locked(channel, FinishReason::Timeout, Some(error))
        } else {
            None
        }
    }

    fn end(&self, reason: FinishReason, error: Option<CoreError>) {
        let waker = self.end_locked(&mut lock(&self.channel), reason, error);
        call(waker);
    }

    /// Why the producer should stop, if it should; marks a passed deadline as the end.
    fn stop_reason(&self, now: Instant) -> Option<FinishReason> {
        if let Some(reason) = self.ended() {
            return Some(reason);
        }
        if !self.deadline_passed(now) {
            return None;
        }
        let mut channel = lock(&self.channel);
        let waker = self.expire_locked(&mut channel, now);
        let reason = channel.end;
        drop(channel);
        call(waker);
        reason
    }

    /// Enqueues an event; a terminal event (Some(reason)) never waits for room and ends the
    /// stream. Otherwise waits while full, but not past the deadline.
    fn send(
        &self,
        event: TokenEvent,
        terminal: Option<FinishReason>,
        mut now: Instant,
    ) -> PushOutcome {
        let mut channel = lock(&self.channel);
        loop {
            if let Some(reason) = channel.end {
                return PushOutcome::Stop(reason);
            }
            if self.deadline_passed(now) {
                let waker = self.expire_locked(&mut channel, now);
                drop(channel);
                call(waker);
                return PushOutcome::Stop(FinishReason::Timeout);
            }
            if terminal.is_some() || channel.events.len() + channel.consumer_held < self.capacity {
                break;
            }
            channel.writers_waiting += 1;
            channel = wait_on(&self.writable, channel, self.deadline);
            channel.writers_waiting -= 1;
            now = Instant::now();
        }
        channel.events.push_back(event);
        self.announce(channel, terminal)
    }

    /// After events were enqueued: ends the stream on `terminal`, else wakes a waiting
    /// reader (or the armed waker), outside the lock.
    fn announce(
        &self,
        mut channel: MutexGuard<'_, Channel>,
        terminal: Option<FinishReason>,
    ) -> PushOutcome {
        let waker = match terminal {
            Some(reason) => self.end_locked(&mut channel, reason, None),
            None => {
                if channel.readers_waiting > 0 {
                    self.readable.notify_one();
                }
                channel.take_waker_if_armed()
            }
        };
        drop(channel);
        call(waker);
        terminal.map_or(PushOutcome::Continue, PushOutcome::Stop)
    }
}

impl Shared {
    /// Enqueues `events` (which the caller made sure fit) under one lock and wakes the
    /// consumer once; `terminal` (the last event's) ends the stream. Stop when the stream
    /// ended meanwhile (the events are dropped, as a cancelled stream's buffer is).
    fn send_all(&self, events: Vec<TokenEvent>, terminal: Option<FinishReason>) -> PushOutcome {
        if events.is_empty() {
            return PushOutcome::Continue;
        }
        let mut channel = lock(&self.channel);
        if let Some(reason) = channel.end {
            return PushOutcome::Stop(reason);
        }
        if channel.events.is_empty() {
            // A Vec becomes a VecDeque in place: the events are not moved again.
            channel.events = VecDeque::from(events);
        } else {
            channel.events.extend(events);
        }
        self.announce(channel, terminal)
    }
}

/// The producer's private state: only the pushing thread touches it.
struct ProducerWork {
    decoder: IncrementalDecoder,
    scanner: StopScanner,
    /// Reused scratch for the decoder's output.
    decoded: String,
    /// Reused scratch for the text an event releases (copied into the event).
    released: String,
    /// Whether a token that is not skipped has been pushed: until then tokens take their
    /// leading piece (`TokenPieces::leading_piece`).
    shown_any: bool,
}

impl ProducerWork {
    /// Flushes the scanner's withheld text into `text` and drops the decoder's unfinished
    /// character (counted in `counters`); returns the stop that matched, if one did.
    fn flush(&mut self, text: &mut String, counters: &StatsCounters) -> Option<usize> {
        self.decoded.clear();
        let dropped = self.decoder.finish(&mut self.decoded);
        counters
            .incomplete_bytes_dropped
            .fetch_add(dropped, Ordering::Relaxed);
        self.scanner
            .push(&self.decoded, text)
            .or_else(|| self.scanner.finish(text))
    }
}

pub struct TokenProducer {
    shared: Arc<Shared>,
    pieces: Arc<dyn TokenPieces>,
    stops: Vec<String>,
    max_tokens: usize,
    work: Mutex<ProducerWork>,
}

impl TokenProducer {
    /// Number of prompt tokens, for stats; call before the first push.
    pub fn set_prompt_tokens(&self, n: usize) {
        self.shared
            .counters
            .prompt_tokens
            .store(n, Ordering::Relaxed);
    }

    /// Producer-reported peak memory, carried in later events' stats.
    pub fn set_peak_memory(&self, bytes: u64) {
        self.shared
            .counters
            .peak_memory_bytes
            .store(bytes, Ordering::Relaxed);
    }

    /// Detokenizes `token`, scans stops, enqueues an event; blocks while the buffer is full
    /// (never past the deadline). Err for a token id outside the vocabulary (the stream is
    /// then failed too).
    pub fn push(
        &self,
        token: u32,
        logprob: Option<f32>,
        top_logprobs: Vec<(u32, f32)>,
    ) -> Result<PushOutcome> {
        let mut work = lock(&self.work);
        let now = Instant::now();
        if let Some(reason) = self.shared.stop_reason(now) {
            return Ok(PushOutcome::Stop(reason));
        }
        let now_ns = self.shared.nanos_since_creation(now);
        match self.event_for(&mut work, token, logprob, top_logprobs, now_ns) {
            Ok((event, terminal)) => Ok(self.shared.send(event, terminal, now)),
            Err(message) => {
                self.fail(message.clone());
                Err(CoreError::Generation { message })
            }
        }
    }

    /// Pushes `ids` in order (no logprobs), each as `push` would, as far as the buffer has
    /// room: never blocks. One clock reading and one hand-over to the channel serve them all,
    /// which costs a fraction of a `push` each, for a producer that holds several tokens at
    /// once (a fixed piece list). Returns how many it pushed and the outcome after the last
    /// (Continue when it stopped only for room). Err as `push`, for an id outside the
    /// vocabulary (the ids before it were pushed).
    pub fn push_available(&self, ids: &[u32]) -> Result<(usize, PushOutcome)> {
        let mut work = lock(&self.work);
        let now = Instant::now();
        if let Some(reason) = self.shared.stop_reason(now) {
            return Ok((0, PushOutcome::Stop(reason)));
        }
        let room = self.room().min(ids.len());
        let now_ns = self.shared.nanos_since_creation(now);
        let mut events = Vec::with_capacity(room);
        let mut terminal = None;
        let mut failure = None;
        for &token in &ids[..room] {
            match self.event_for(&mut work, token, None, Vec::new(), now_ns) {
                Ok((event, end)) => {
                    events.push(event);
                    if end.is_some() {
                        terminal = end;
                        break;
                    }
                }
                Err(message) => {
                    failure = Some(message);
                    break;
                }
            }
        }
        let pushed = events.len();
        let outcome = self.shared.send_all(events, terminal);
        match failure {
            Some(message) => {
                self.fail(message.clone());
                Err(CoreError::Generation { message })
            }
            None => Ok((pushed, outcome)),
        }
    }

    /// Detokenizes `token` and scans stops: its event, and the reason when it ends the
    /// stream. Err(message) for an id outside the vocabulary (the caller fails the stream).
    /// `now_ns`: the push's clock reading, in ns since the stream was created.
    fn event_for(
        &self,
        work: &mut ProducerWork,
        token: u32,
        logprob: Option<f32>,
        top_logprobs: Vec<(u32, f32)>,
        now_ns: u64,
    ) -> std::result::Result<(TokenEvent, Option<FinishReason>), String> {
        let piece = if work.shown_any {
            self.pieces.piece(token)
        } else {
            self.pieces.leading_piece(token)
        };
        let Some(piece) = piece else {
            return Err(format!(
                "token id {token} is outside the vocabulary (size {})",
                self.pieces.vocab_size()
            ));
        };
        let generated = self.shared.record_token_at(now_ns);

        work.shown_any |= !self.pieces.is_skipped(token);
        work.decoded.clear();
        // A hidden token is left out before decoding (its piece is empty), so a run of
        // byte tokens around it stays one run.
        if self.pieces.is_run_byte(token) {
            work.decoder.push_run_byte(piece);
        } else if !self.pieces.is_skipped(token) {
            work.decoder.push(piece, &mut work.decoded);
        }
        let mut text = std::mem::take(&mut work.released);
        text.clear();
        let mut matched = work.scanner.push(&work.decoded, &mut text);
        let terminal = if matched.is_some() {
            Some(FinishReason::Stop)
        } else if generated >= self.max_tokens {
            matched = work.flush(&mut text, &self.shared.counters);
            Some(if matched.is_some() {
                FinishReason::Stop
            } else {
                FinishReason::Length
            })
        } else {
            None
        };
        let released = EventText::new(&text);
        work.released = text;
        let event = TokenEvent {
            text: released,
            token: Some(token),
            logprob,
            top_logprobs,
            stats: self.shared.stats_at_ns(now_ns),
            finish_reason: terminal,
            stop_sequence: matched.map(|index| self.stops[index].clone()),
        };
        Ok((event, terminal))
    }

    /// Ends the stream normally (reason Stop for end-of-sequence, or Length): flushes the
    /// withheld text into a closing event that carries `token` (e.g. the EOS id, whose own
    /// text is not emitted). No-op if the stream already ended. Never blocks.
    ///
    /// A `token` counts as generated in the stats. If the flushed text completes a stop
    /// sequence, the reason becomes Stop. After the deadline the stream ends as timed out
    /// instead.
    pub fn finish(&self, reason: FinishReason, token: Option<u32>) {
        let mut work = lock(&self.work);
        let now = Instant::now();
        if self.shared.stop_reason(now).is_some() {
            return;
        }
        if token.is_some() {
            self.shared.record_token(now);
        }
        let mut text = String::new();
        let matched = work.flush(&mut text, &self.shared.counters);
        let reason = if matched.is_some() {
            FinishReason::Stop
        } else {
            reason
        };
        let event = TokenEvent {
            text: text.into(),
            token,
            logprob: None,
            top_logprobs: Vec::new(),
            stats: self.shared.stats_at(now),
            finish_reason: Some(reason),
            stop_sequence: matched.map(|index| self.stops[index].clone()),
        };
        self.shared.send(event, Some(reason), now);
    }

    /// Ends the stream with an error the consumer receives as CoreError::Generation.
    pub fn fail(&self, message: String) {
        self.fail_with(CoreError::Generation { message });
    }

    /// Ends the stream with `error`, which the consumer receives as it is (e.g.
    /// EngineExited when the process running the forward pass died, ContextLength when it
    /// refused the prompt). No-op once the stream ended.
    pub fn fail_with(&self, error: CoreError) {
        self.shared.end(FinishReason::Error, Some(error));
    }

    /// How many pushes would find room now without waiting (the whole buffer once the stream
    /// ended or its deadline passed: pushes then return at once with the stop). A producer
    /// that must never block (one loop feeding many streams, or one sharing a thread with its
    /// consumer, like Node's worker client) pushes at most this many tokens; only the consumer
    /// frees room, so with one pushing thread the number only grows until that thread pushes.
    pub fn room(&self) -> usize {
        if self.shared.stop_reason(Instant::now()).is_some() {
            return self.shared.capacity;
        }
        let channel = lock(&self.shared.channel);
        if channel.end.is_some() {
            return self.shared.capacity;
        }
        let used = channel.events.len() + channel.consumer_held;
        self.shared.capacity.saturating_sub(used)
    }

    /// Some(reason) once the producer should stop (consumer gone, deadline, ...). Non-blocking.
    pub fn stop_reason(&self) -> Option<FinishReason> {
        self.shared.stop_reason(Instant::now())
    }

    /// Attaches `signal`: it is notified whenever the consumer frees room in a full buffer and
    /// when the stream ends. Replaces a signal attached before. If the stream already ended,
    /// the signal is notified at once, so a loop that attaches late still hears of it.
    pub fn set_room_signal(&self, signal: Arc<RoomSignal>) {
        let mut channel = lock(&self.shared.channel);
        if channel.end.is_some() {
            signal.notify();
        }
        channel.room_signal = Some(signal);
    }

    /// Sleeps up to `d`, waking early if the stream ends; returns stop_reason().
    pub fn wait_for(&self, d: Duration) -> Option<FinishReason> {
        let until = Instant::now().checked_add(d);
        let wake_at = earliest(until, self.shared.deadline);
        let mut channel = lock(&self.shared.channel);
        while channel.end.is_none() {
            if wake_at.is_some_and(|at| Instant::now() >= at) {
                break;
            }
            channel.end_waiters += 1;
            channel = wait_on(&self.shared.ended_signal, channel, wake_at);
            channel.end_waiters -= 1;
        }
        drop(channel);
        self.stop_reason()
    }
}

/// Pushes token ids 0..count in order (waiting `delay` before each), then finishes with Stop:
/// the producer of a stream over a fixed piece list (the bindings' test and benchmark
/// streams). Returns as soon as the stream ends or is closed.
pub fn push_ids_in_order(producer: &TokenProducer, count: u32, delay: Duration) {
    for id in 0..count {
        if !delay.is_zero() && producer.wait_for(delay).is_some() {
            return;
        }
        match producer.push(id, None, Vec::new()) {
            Ok(PushOutcome::Continue) => {}
            // Stopped (consumer gone, stop matched, length, deadline) or failed by the core.
            Ok(PushOutcome::Stop(_)) | Err(_) => return,
        }
    }
    producer.finish(FinishReason::Stop, None);
}

impl Drop for TokenProducer {
    fn drop(&mut self) {
        if self.shared.ended().is_none() {
            self.fail(PRODUCER_DROPPED.to_string());
        }
    }
}

/// How long a read may wait.
#[derive(Clone, Copy)]
enum Wait {
    /// Until an event, the end or the deadline.
    Forever,
    /// Also gives up at this instant (returns Idle).
    Until(Instant),
    /// Not at all; arms the waker when nothing is ready.
    Never,
}

enum Received<T> {
    Ready(T),
    Idle,
    End,
}

pub struct TokenConsumer {
    shared: Arc<Shared>,
}

impl TokenConsumer {
    /// Blocks until an event (Some), the end (None), or the deadline (CoreError::StreamTimeout).
    ///
    /// A producer failure or the deadline is reported once, after every buffered event;
    /// later calls return Ok(None).
    pub fn next(&self) -> Result<Option<TokenEvent>> {
        Ok(match self.receive(Wait::Forever, pop_one)? {
            Received::Ready(event) => Some(event),
            Received::Idle | Received::End => None,
        })
    }

    /// Like `next` but waits at most `max_wait`.
    pub fn next_within(&self, max_wait: Duration) -> Result<NextWithin> {
        Ok(match self.receive(Self::wait_up_to(max_wait), pop_one)? {
            Received::Ready(event) => NextWithin::Event(event),
            Received::Idle => NextWithin::Pending,
            Received::End => NextWithin::End,
        })
    }

    /// Never blocks. On Empty the waker is armed and will be called once.
    pub fn try_next(&self) -> Result<TryNext> {
        Ok(match self.receive(Wait::Never, pop_one)? {
            Received::Ready(event) => TryNext::Event(event),
            Received::Idle => TryNext::Empty,
            Received::End => TryNext::End,
        })
    }

    /// Like `next`, but takes up to `max` (at least 1) ready events under one lock.
    pub fn next_batch(&self, max: usize) -> Result<Option<Vec<TokenEvent>>> {
        Ok(
            match self.receive(Wait::Forever, |events| drain(events, max))? {
                Received::Ready(events) => Some(events),
                Received::Idle | Received::End => None,
            },
        )
    }

    /// Like `next_within`, but takes up to `max` (at least 1) ready events under one lock.
    pub fn next_batch_within(&self, max_wait: Duration, max: usize) -> Result<Batch> {
        let wait = Self::wait_up_to(max_wait);
        Ok(Self::batch(
            self.receive(wait, |events| drain(events, max))?,
        ))
    }

    /// Like `try_next`, but takes up to `max` (at least 1) ready events under one lock.
    pub fn try_next_batch(&self, max: usize) -> Result<Batch> {
        Ok(Self::batch(
            self.receive(Wait::Never, |events| drain(events, max))?,
        ))
    }

    /// Called (outside any lock, from the producer's thread) when an event or the end
    /// arrives while a `try_next` returned Empty. If something already arrived since that
    /// Empty, it is called right away.
    pub fn set_waker(&self, waker: Arc<dyn Fn() + Send + Sync>) {
        let mut channel = lock(&self.shared.channel);
        channel.waker = Some(waker);
        let ready = !channel.events.is_empty() || channel.end.is_some();
        let waker = if ready {
            channel.take_waker_if_armed()
        } else {
            None
        };
        drop(channel);
        call(waker);
    }

    /// Closes the stream from the consumer side: the producer's next push returns
    /// Stop(Cancelled) and a blocked push wakes. Dropping the consumer does the same.
    /// Buffered events are discarded; `next` then returns Ok(None).
    pub fn cancel(&self) {
        let mut channel = lock(&self.shared.channel);
        let discarded = std::mem::take(&mut channel.events);
        let waker = self
            .shared
            .end_locked(&mut channel, FinishReason::Cancelled, None);
        channel.end_error = None;
        drop(channel);
        drop(discarded);
        call(waker);
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        let mut channel = lock(&self.shared.channel);
        let waker = self.shared.expire_locked(&mut channel, Instant::now());
        let reason = channel.end;
        drop(channel);
        call(waker);
        reason
    }

    /// Latest statistics (frozen once the stream ended).
    pub fn stats(&self) -> StreamStats {
        self.shared.stats_at(Instant::now())
    }

    /// Says every event of the last batch read was handed out: their room is free now rather
    /// than at the next read, so a producer on the reader's own thread (which pushes only
    /// between reads) can fill the whole buffer before that read.
    pub fn release_handed_out(&self) {
        let shared = &*self.shared;
        let mut channel = lock(&shared.channel);
        let was_full = shared.is_full(&channel);
        if std::mem::take(&mut channel.consumer_held) == 0 {
            return;
        }
        if channel.writers_waiting > 0 {
            shared.writable.notify_one();
        }
        if was_full && !shared.is_full(&channel) {
            if let Some(signal) = &channel.room_signal {
                signal.notify();
            }
        }
    }

    /// Time left until the stream's deadline (zero once passed); None without a deadline.
    /// Async facades use it to wake themselves for the timeout, since a stalled producer
    /// never calls the waker.
    pub fn time_left(&self) -> Option<Duration> {
        let deadline = self.shared.deadline?;
        Some(deadline.saturating_duration_since(Instant::now()))
    }

    fn wait_up_to(max_wait: Duration) -> Wait {
        match Instant::now().checked_add(max_wait) {
            Some(until) => Wait::Until(until),
            None => Wait::Forever,
        }
    }

    fn batch(received: Received<Vec<TokenEvent>>) -> Batch {
        match received {
            Received::Ready(events) => Batch::Events(events),
            Received::Idle => Batch::Empty,
            Received::End => Batch::End,
        }
    }

    fn receive<T>(
        &self,
        wait: Wait,
        take: impl FnOnce(&mut VecDeque<TokenEvent>) -> (T, usize),
    ) -> Result<Received<T>> {
        let shared = &*self.shared;
        let mut channel = lock(&shared.channel);
        let mut was_full = shared.is_full(&channel);
        // A read means the previous batch was handed out: its room is free again.
        if std::mem::take(&mut channel.consumer_held) > 0 && channel.writers_waiting > 0 {
            shared.writable.notify_one();
        }
        loop {
            if !channel.events.is_empty() {
                let (taken, held) = take(&mut channel.events);
                channel.consumer_held = held;
                if channel.writers_waiting > 0 {
                    shared.writable.notify_one();
                }
                if was_full && !shared.is_full(&channel) {
                    if let Some(signal) = &channel.room_signal {
                        signal.notify();
                    }
                }
                return Ok(Received::Ready(taken));
            }
            if was_full && !shared.is_full(&channel) {
                // Only the held batch was released (the buffer is empty now): room all the same.
                if let Some(signal) = &channel.room_signal {
                    signal.notify();
                }
                was_full = false;
            }
            let now = Instant::now();
            let waker = shared.expire_locked(&mut channel, now);
            if channel.end.is_some() {
                let error = channel.end_error.take();
                drop(channel);
                call(waker);
                return match error {
                    Some(error) => Err(error),
                    None => Ok(Received::End),
                };
            }
            let give_up_at = match wait {
                Wait::Forever => None,
                Wait::Until(until) if now >= until => return Ok(Received::Idle),
                Wait::Until(until) => Some(until),
                Wait::Never => {
                    channel.waker_armed = true;
                    return Ok(Received::Idle);
                }
            };
            channel.readers_waiting += 1;
            channel = wait_on(
                &shared.readable,
                channel,
                earliest(give_up_at, shared.deadline),
            );
            channel.readers_waiting -= 1;
        }
    }
}

/// Takes the next event; it goes straight to the caller, so nothing stays held.
fn pop_one(events: &mut VecDeque<TokenEvent>) -> (TokenEvent, usize) {
    let event = events
        .pop_front()
        .expect("receive only takes from a non-empty queue");
    (event, 0)
}

/// Takes up to `max` events; all but the first (handed out at once) count as held.
fn drain(events: &mut VecDeque<TokenEvent>, max: usize) -> (Vec<TokenEvent>, usize) {
    let count = events.len().min(max.max(1));
    if count == events.len() {
        // Taking all of them: the buffer changes hands (no move of the events where it
        // starts at the front, as one made from a Vec does).
        return (Vec::from(std::mem::take(events)), count - 1);
    }
    (events.drain(..count).collect(), count - 1)
}

impl Drop for TokenConsumer {
    fn drop(&mut self) {
        self.cancel();
    }
}
