//! The text side door of the token channel: a producer that has text, not token ids (a
//! remote server's stream of deltas), pushes it here and the consumer receives the same
//! `TokenEvent`s as from a local model.
//!
//! The deltas go through the same UTF-8 decoder (a delta may end inside a character, as a
//! byte-level server may send it), the same stop scanner, deadline, backpressure and
//! statistics as token pieces. Events carry no token id.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{lock, PushOutcome, Shared, TokenConsumer, TokenProducer};
use crate::config::StreamConfig;
use crate::detokenizer::PieceTable;
use crate::error::Result;
use crate::event::{FinishReason, TokenEvent};

/// Creates a stream fed with text deltas; validates `config` first.
pub fn text_stream(config: &StreamConfig) -> Result<(TextProducer, TokenConsumer)> {
    // No token ids ever reach this producer, so its vocabulary is empty.
    let (inner, consumer) = super::token_stream(config, Arc::new(PieceTable::default()))?;
    Ok((TextProducer { inner }, consumer))
}

/// The push side of a text stream. Ending it (finish, fail, drop) works as for
/// `TokenProducer`.
pub struct TextProducer {
    inner: TokenProducer,
}

impl Shared {
    /// Counts `tokens` generated tokens; returns how many have been generated. The first
    /// push stamps the time to first token even when it counts none (the text arrived).
    fn record_tokens(&self, now: Instant, tokens: usize) -> usize {
        let at = self.nanos_since_creation(now);
        let counters = &self.counters;
        let _ = counters.first_token_ns.compare_exchange(
            u64::MAX,
            at,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        counters
            .generation_tokens
            .fetch_add(tokens, Ordering::Relaxed)
            + tokens
    }
}

impl TextProducer {
    /// Pushes a text delta that stands for `tokens` generated tokens (a remote event
    /// usually carries one; 0 for text the server did not count). `delta` is UTF-8 that may
    /// start or end inside a character. Blocks while the buffer is full (never past the
    /// deadline). max_tokens counts the `tokens` pushed.
    pub fn push_text(&self, delta: &[u8], tokens: usize) -> PushOutcome {
        let inner = &self.inner;
        let mut work = lock(&inner.work);
        let now = Instant::now();
        if let Some(reason) = inner.shared.stop_reason(now) {
            return PushOutcome::Stop(reason);
        }
        let generated = inner.shared.record_tokens(now, tokens);
        let work = &mut *work;
        work.decoded.clear();
        work.decoder.push(delta, &mut work.decoded);
        // The same end rule as `TokenProducer::push`: a stop ends the reply, else reaching
        // max_tokens flushes what was withheld (which may still complete a stop).
        let mut text = String::with_capacity(work.decoded.len() + work.scanner.withheld_len());
        let mut matched = work.scanner.push(&work.decoded, &mut text);
        let terminal = if matched.is_some() {
            Some(FinishReason::Stop)
        } else if generated >= inner.max_tokens {
            matched = work.flush(&mut text, &inner.shared.counters);
            Some(if matched.is_some() {
                FinishReason::Stop
            } else {
                FinishReason::Length
            })
        } else {
            None
        };
        let event = TokenEvent {
            text: text.into(),
            token: None,
            logprob: None,
            top_logprobs: Vec::new(),
            stats: inner.shared.stats_at(now),
            finish_reason: terminal,
            stop_sequence: matched.map(|index| inner.stops[index].clone()),
        };
        inner.shared.send(event, terminal, now)
    }

    /// Ends the stream normally (Stop: the server ended the reply; Length: it hit its
    /// limit), flushing withheld text into a closing event; see `TokenProducer::finish`.
    pub fn finish(&self, reason: FinishReason) {
        self.inner.finish(reason, None);
    }

    /// Ends the stream with an error the consumer receives as CoreError::Generation.
    pub fn fail(&self, message: String) {
        self.inner.fail(message);
    }

    /// Number of prompt tokens, for stats (a remote server reports it at the end of its
    /// reply; events after the call carry it).
    pub fn set_prompt_tokens(&self, n: usize) {
        self.inner.set_prompt_tokens(n);
    }

    /// Replaces the count of generated tokens with the server's own (its usage report),
    /// for the events after the call; later pushes count on from `n`.
    pub fn set_generation_tokens(&self, n: usize) {
        self.inner
            .shared
            .counters
            .generation_tokens
            .store(n, Ordering::Relaxed);
    }

    /// Some(reason) once the producer should stop (consumer gone, deadline, ...).
    pub fn stop_reason(&self) -> Option<FinishReason> {
        self.inner.stop_reason()
    }

    /// Sleeps up to `d`, waking early if the stream ends; returns stop_reason().
    pub fn wait_for(&self, d: Duration) -> Option<FinishReason> {
        self.inner.wait_for(d)
    }
}
