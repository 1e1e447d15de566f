//! What the consumer receives: one `TokenEvent` per pushed token, with running statistics.

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinishReason {
    /// A stop sequence matched, or the producer reported end-of-sequence.
    Stop,
    /// max_tokens was reached.
    Length,
    /// The deadline (timeout_ms) passed.
    Timeout,
    /// The consumer closed or dropped the stream.
    Cancelled,
    /// The producer failed.
    Error,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Timeout => "timeout",
            FinishReason::Cancelled => "cancelled",
            FinishReason::Error => "error",
        }
    }
}

/// Running statistics, a snapshot of which travels with every event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamStats {
    pub prompt_tokens: usize,
    /// prompt_tokens / time to first token.
    pub prompt_tps: f64,
    pub generation_tokens: usize,
    /// Tokens after the first, per second since the first.
    pub generation_tps: f64,
    /// Seconds from stream creation to the first pushed token.
    pub time_to_first_token_s: Option<f64>,
    /// Seconds since stream creation, at the time of this snapshot.
    pub elapsed_s: f64,
    /// Reported by the producer (e.g. MLX peak memory), in bytes; 0 if never reported.
    pub peak_memory_bytes: u64,
    /// Bytes of an unfinished character at the end of the reply (cut by max_tokens, a stop,
    /// or end of generation) that were dropped instead of shown as U+FFFD.
    pub incomplete_bytes_dropped: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenEvent {
    /// Text released by this event; empty while text is withheld (possible stop prefix,
    /// incomplete UTF-8).
    pub text: String,
    /// The token pushed; None for a closing event that carries no token.
    pub token: Option<u32>,
    pub logprob: Option<f32>,
    pub top_logprobs: Vec<(u32, f32)>,
    pub stats: StreamStats,
    /// Set on the last event only.
    pub finish_reason: Option<FinishReason>,
    /// The stop sequence that matched, when finish_reason is Stop because of one.
    pub stop_sequence: Option<String>,
}
