//! `StreamReader`: the consumer side as both bindings use it. It reads the channel in batches
//! (one lock per batch instead of per event), hands the events out one at a time, and
//! remembers how the stream ended, so a binding only converts each event to its language.
//!
//! Three ways to read: `try_read` never blocks and arms the waker (`set_waker`) when nothing
//! is ready (for event loops: Node, asyncio), `read_within` waits at most a given time (so a
//! binding can check for signals between waits) and `read` waits until there is something.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::event::{FinishReason, StreamStats, TokenEvent};
use crate::stream::{Batch, TokenConsumer};

/// Most events taken from the channel under one lock. Taken events still count against
/// buffer_size until the next read (see `TokenConsumer`), so this only bounds the batch's
/// allocation.
pub const MAX_BATCH: usize = 64;

/// How long a blocking read polls the channel before it parks.
const SPIN_FOR: Duration = Duration::from_micros(30);

/// What a read found.
#[derive(Debug)]
pub enum Read {
    Event(TokenEvent),
    /// Nothing yet: for `try_read` the waker is armed; for `read_within` the wait elapsed.
    Empty,
    /// The stream ended and every event was delivered (or the reader was closed).
    End,
}

#[derive(Default)]
struct ReaderState {
    /// Events taken from the channel but not handed out yet (the rest of the last batch).
    ready: std::vec::IntoIter<TokenEvent>,
    /// The reader saw the end, an error, or was closed: reading is over.
    ended: bool,
    finish_reason: Option<FinishReason>,
    stop_sequence: Option<String>,
}

impl ReaderState {
    fn take_batch(&mut self, events: Vec<TokenEvent>) -> Option<TokenEvent> {
        if self.ready.len() == 0 {
            self.ready = events.into_iter();
        } else {
            // Only when two threads read one stream at once: keep arrival order.
            let mut all: Vec<TokenEvent> = self.ready.by_ref().collect();
            all.extend(events);
            self.ready = all.into_iter();
        }
        let first = self.ready.next()?;
        Some(self.deliver(first))
    }

    fn deliver(&mut self, event: TokenEvent) -> TokenEvent {
        self.note_end(&event);
        event
    }

    /// Remembers how the stream ended when `event` is the last one.
    fn note_end(&mut self, event: &TokenEvent) {
        if event.finish_reason.is_some() {
            self.finish_reason = event.finish_reason;
            self.stop_sequence.clone_from(&event.stop_sequence);
        }
    }

    fn settle(&mut self, batch: Result<Batch>) -> Result<Read> {
        match batch {
            Ok(Batch::Events(events)) => Ok(match self.take_batch(events) {
                Some(event) => Read::Event(event),
                None => Read::Empty,
            }),
            Ok(Batch::Empty) if self.ended => Ok(Read::End), // closed meanwhile
            Ok(Batch::Empty) => Ok(Read::Empty),
            Ok(Batch::End) => {
                self.ended = true;
                Ok(Read::End)
            }
            Err(err) => {
                self.ended = true;
                Err(err)
            }
        }
    }
}

impl ReaderState {
    /// Hands out a whole batch read from the channel (noting the end it may carry).
    fn settle_batch(&mut self, batch: Result<Batch>) -> Result<Batch> {
        match batch {
            Ok(Batch::Events(mut events)) => {
                for event in &events {
                    self.note_end(event);
                }
                if self.ready.len() > 0 {
                    // Only when two threads read one stream at once: keep arrival order.
                    let mut delivered: Vec<TokenEvent> = self.ready.by_ref().collect();
                    delivered.append(&mut events);
                    events = delivered;
                }
                Ok(Batch::Events(events))
            }
            Ok(Batch::Empty) if self.ended => Ok(Batch::End),
            Ok(Batch::Empty) => Ok(Batch::Empty),
            Ok(Batch::End) => {
                self.ended = true;
                Ok(Batch::End)
            }
            Err(err) => {
                self.ended = true;
                Err(err)
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub struct StreamReader {
    consumer: TokenConsumer,
    batch: usize,
    state: Mutex<ReaderState>,
}

impl StreamReader {
    /// `buffer_size` is the stream's (StreamConfig::buffer_size): no batch is larger.
    pub fn new(consumer: TokenConsumer, buffer_size: usize) -> Self {
        Self {
            consumer,
            batch: buffer_size.clamp(1, MAX_BATCH),
            state: Mutex::new(ReaderState::default()),
        }
    }

    /// A reader whose batches take at most half the buffer: a consumer that keeps a whole
    /// batch while it hands the events out (Node's arrays) leaves the producer the other half
    /// to fill meanwhile, instead of one slot. Backpressure is the same: taken events still
    /// count against buffer_size until the next read.
    pub fn double_buffered(consumer: TokenConsumer, buffer_size: usize) -> Self {
        Self::new(consumer, buffer_size.div_ceil(2))
    }

    /// Never blocks. On Empty the waker (if set) is armed and called once something arrives.
    /// A producer failure or the deadline is returned once as Err, after every event.
    pub fn try_read(&self) -> Result<Read> {
        let mut state = lock(&self.state);
        if let Some(event) = state.ready.next() {
            return Ok(Read::Event(state.deliver(event)));
        }
        if state.ended {
            return Ok(Read::End);
        }
        let batch = self.consumer.try_next_batch(self.batch);
        state.settle(batch)
    }

    /// Never blocks: every event ready to hand out, oldest first: the rest of the last batch,
    /// or else one batch from the channel (at most buffer_size events, which keep their room
    /// in the buffer until the next read, so backpressure holds however the caller keeps
    /// them). Empty arms the waker as `try_read` does. For bindings that hand events over in
    /// arrays (Node).
    pub fn try_read_batch(&self) -> Result<Batch> {
        let mut state = lock(&self.state);
        if state.ready.len() > 0 {
            let events: Vec<TokenEvent> = state.ready.by_ref().collect();
            for event in &events {
                state.note_end(event);
            }
            return Ok(Batch::Events(events));
        }
        if state.ended {
            return Ok(Batch::End);
        }
        let batch = self.consumer.try_next_batch(self.batch);
        state.settle_batch(batch)
    }

    /// See `TokenConsumer::release_handed_out`; nothing while events of the last batch are
    /// still waiting here.
    pub fn release_handed_out(&self) {
        let state = lock(&self.state);
        if state.ready.len() == 0 {
            self.consumer.release_handed_out();
        }
    }

    /// `try_read_batch`, but when nothing is ready it first polls the channel for up to
    /// `spin` (at most SPIN_FOR): a running producer's next event is microseconds away, and
    /// catching it saves the waker's round trip through the caller's event loop, which
    /// costs far more. A stalled producer costs this once per read.
    pub fn try_read_batch_spinning(&self, spin: Duration) -> Result<Batch> {
        match self.try_read_batch()? {
            Batch::Empty if !spin.is_zero() => {}
            ready => return Ok(ready),
        }
        match self.spin_for_events(spin.min(SPIN_FOR)) {
            Some(batch) => lock(&self.state).settle_batch(batch),
            None => Ok(Batch::Empty),
        }
    }

    /// Waits at most `max_wait` for an event or the end (Empty when the wait elapsed).
    pub fn read_within(&self, max_wait: Duration) -> Result<Read> {
        match self.try_read()? {
            Read::Empty => {}
            done => return Ok(done),
        }
        // Nothing is held while waiting: close() from another thread must not wait for us.
        let batch = match self.spin_for_events(SPIN_FOR) {
            Some(ready) => ready,
            None => self.consumer.next_batch_within(max_wait, self.batch),
        };
        lock(&self.state).settle(batch)
    }

    /// Waits until an event (Some), the end (None) or an error.
    pub fn read(&self) -> Result<Option<TokenEvent>> {
        loop {
            match self.read_within(Duration::from_secs(3600))? {
                Read::Event(event) => return Ok(Some(event)),
                Read::End => return Ok(None),
                Read::Empty => {}
            }
        }
    }

    /// A producer that is running keeps its next event a few hundred nanoseconds away.
    /// Polling briefly before parking saves both sides a futex sleep/wake per event (which
    /// would cost more than the event itself); a stalled producer costs this once per read.
    fn spin_for_events(&self, limit: Duration) -> Option<Result<Batch>> {
        let start = Instant::now();
        let mut pause = 1u32;
        loop {
            for _ in 0..pause {
                std::hint::spin_loop();
            }
            match self.consumer.try_next_batch(self.batch) {
                Ok(Batch::Empty) => {}
                ready => return Some(ready),
            }
            if start.elapsed() >= limit {
                return None;
            }
            // Back off so the producer gets the channel lock between polls.
            pause = (pause * 2).min(64);
        }
    }

    /// See `TokenConsumer::set_waker`.
    pub fn set_waker(&self, waker: Arc<dyn Fn() + Send + Sync>) {
        self.consumer.set_waker(waker);
    }

    /// Cancels the stream: reading ends, the producer's next push says stop.
    pub fn close(&self) {
        {
            let mut state = lock(&self.state);
            state.ended = true;
            state.ready = Vec::new().into_iter();
        }
        self.consumer.cancel();
    }

    /// Whether reading is over (the end was read, an error returned, or the reader closed).
    pub fn is_done(&self) -> bool {
        lock(&self.state).ended
    }

    /// Why the stream ended, once the reader has seen the end; None before.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        let state = lock(&self.state);
        match state.finish_reason {
            Some(reason) => Some(reason),
            None if state.ended => self.consumer.finish_reason(),
            None => None,
        }
    }

    /// The stop sequence that ended the stream, if one did (once its event was read).
    pub fn stop_sequence(&self) -> Option<String> {
        lock(&self.state).stop_sequence.clone()
    }

    /// Latest statistics (frozen once the stream ended).
    pub fn stats(&self) -> StreamStats {
        self.consumer.stats()
    }

    /// See `TokenConsumer::time_left`.
    pub fn time_left(&self) -> Option<Duration> {
        self.consumer.time_left()
    }
}
