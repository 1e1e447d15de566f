//! The token channel: a producer pushes token ids, a consumer receives text events.
//!
//! Bounded by `buffer_size` (the producer's push blocks while full: backpressure). Push tells
//! the producer to stop once the consumer is gone or cancelled, a stop sequence matched,
//! max_tokens was reached or the deadline passed. The consumer's `next` blocks until an
//! event, the end, or the deadline; `try_next` plus a waker serve async facades.

use std::sync::Arc;
use std::time::Duration;

use crate::config::StreamConfig;
use crate::detokenizer::TokenPieces;
use crate::error::Result;
use crate::event::{FinishReason, StreamStats, TokenEvent};

/// Creates a stream; validates `config` first.
pub fn token_stream(
    config: &StreamConfig,
    pieces: Arc<dyn TokenPieces>,
) -> Result<(TokenProducer, TokenConsumer)> {
    let _ = (config, pieces);
    todo!()
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

pub struct TokenProducer {}

impl TokenProducer {
    /// Number of prompt tokens, for stats; call before the first push.
    pub fn set_prompt_tokens(&self, n: usize) {
        let _ = n;
        todo!()
    }
    /// Producer-reported peak memory, carried in later events' stats.
    pub fn set_peak_memory(&self, bytes: u64) {
        let _ = bytes;
        todo!()
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
        let _ = (token, logprob, top_logprobs);
        todo!()
    }
    /// Ends the stream normally (reason Stop for end-of-sequence, or Length): flushes the
    /// withheld text into a closing event that carries `token` (e.g. the EOS id, whose own
    /// text is not emitted). No-op if the stream already ended. Never blocks.
    pub fn finish(&self, reason: FinishReason, token: Option<u32>) {
        let _ = (reason, token);
        todo!()
    }
    /// Ends the stream with an error the consumer receives as CoreError::Generation.
    pub fn fail(&self, message: String) {
        let _ = message;
        todo!()
    }
    /// Some(reason) once the producer should stop (consumer gone, deadline, ...). Non-blocking.
    pub fn stop_reason(&self) -> Option<FinishReason> {
        todo!()
    }
    /// Sleeps up to `d`, waking early if the stream ends; returns stop_reason().
    pub fn wait_for(&self, d: Duration) -> Option<FinishReason> {
        let _ = d;
        todo!()
    }
}

pub struct TokenConsumer {}

impl TokenConsumer {
    /// Blocks until an event (Some), the end (None), or the deadline (CoreError::StreamTimeout).
    pub fn next(&self) -> Result<Option<TokenEvent>> {
        todo!()
    }
    /// Like `next` but waits at most `max_wait`.
    pub fn next_within(&self, max_wait: Duration) -> Result<NextWithin> {
        let _ = max_wait;
        todo!()
    }
    /// Never blocks. On Empty the waker is armed and will be called once.
    pub fn try_next(&self) -> Result<TryNext> {
        todo!()
    }
    /// Called (outside any lock, from the producer's thread) when an event or the end
    /// arrives while a `try_next` returned Empty.
    pub fn set_waker(&self, waker: Arc<dyn Fn() + Send + Sync>) {
        let _ = waker;
        todo!()
    }
    /// Closes the stream from the consumer side: the producer's next push returns
    /// Stop(Cancelled) and a blocked push wakes. Dropping the consumer does the same.
    pub fn cancel(&self) {
        todo!()
    }
    pub fn finish_reason(&self) -> Option<FinishReason> {
        todo!()
    }
    /// Latest statistics.
    pub fn stats(&self) -> StreamStats {
        todo!()
    }
}
