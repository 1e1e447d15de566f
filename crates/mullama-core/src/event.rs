//! What the consumer receives: one `TokenEvent` per pushed token, with running statistics.

use std::fmt;
use std::str::FromStr;

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
    /// Every reason, in declaration order.
    pub const ALL: [FinishReason; 5] = [
        FinishReason::Stop,
        FinishReason::Length,
        FinishReason::Timeout,
        FinishReason::Cancelled,
        FinishReason::Error,
    ];

    /// Whether a producer may end a stream with this reason itself (`TokenProducer::finish`):
    /// cancellation, timeouts and errors are decided by the stream or reported by `fail`.
    pub fn is_producer_end(self) -> bool {
        matches!(self, FinishReason::Stop | FinishReason::Length)
    }

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

impl fmt::Display for FinishReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that names no finish reason; shows the text and the reasons there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFinishReason(pub String);

impl fmt::Display for UnknownFinishReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = FinishReason::ALL.iter().map(|r| r.as_str()).collect();
        write!(
            f,
            "unknown finish reason {:?}; the reasons are {}",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownFinishReason {}

/// The inverse of `as_str`.
impl FromStr for FinishReason {
    type Err = UnknownFinishReason;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FinishReason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == s)
            .ok_or_else(|| UnknownFinishReason(s.to_owned()))
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

/// Bytes an `EventText` holds without a heap allocation: nearly every token's text fits, and
/// a stream makes one event per token.
const INLINE_TEXT: usize = 22;

/// An event's text, read as a `&str` (it derefs to one). Short texts, nearly every token's,
/// live inside the event; only longer ones (a flush of withheld text, a remote chunk) take a
/// heap allocation. The same size as a `String`.
#[derive(Clone)]
pub struct EventText(TextRepr);

#[derive(Clone)]
enum TextRepr {
    Inline { len: u8, bytes: [u8; INLINE_TEXT] },
    Heap(Box<str>),
}

impl EventText {
    pub fn new(text: &str) -> Self {
        if text.len() <= INLINE_TEXT {
            let mut bytes = [0u8; INLINE_TEXT];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            Self(TextRepr::Inline {
                len: text.len() as u8,
                bytes,
            })
        } else {
            Self(TextRepr::Heap(text.into()))
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            TextRepr::Inline { len, bytes } => {
                let used = &bytes[..usize::from(*len)];
                // SAFETY: `new` copied these bytes from a `&str` whole, so they are UTF-8.
                unsafe { std::str::from_utf8_unchecked(used) }
            }
            TextRepr::Heap(text) => text,
        }
    }
}

impl Default for EventText {
    fn default() -> Self {
        Self::new("")
    }
}

impl std::ops::Deref for EventText {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for EventText {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for EventText {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<String> for EventText {
    fn from(text: String) -> Self {
        if text.len() <= INLINE_TEXT {
            Self::new(&text)
        } else {
            Self(TextRepr::Heap(text.into_boxed_str()))
        }
    }
}

impl PartialEq for EventText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for EventText {}

impl PartialEq<str> for EventText {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for EventText {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for EventText {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl fmt::Debug for EventText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for EventText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenEvent {
    /// Text released by this event; empty while text is withheld (possible stop prefix,
    /// incomplete UTF-8).
    pub text: EventText,
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

/// One statistic as bindings show it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StatValue {
    Count(usize),
    Number(f64),
    /// A number that may not be known yet (time to first token before the first token).
    MaybeNumber(Option<f64>),
}

/// The names bindings show the statistics under, in the order of `StreamStats::entries`
/// (snake_case; a binding may only change the case, as Node does).
pub const STAT_NAMES: [&str; 8] = [
    "prompt_tokens",
    "prompt_tps",
    "generation_tokens",
    "generation_tps",
    "time_to_first_token",
    "elapsed",
    "peak_memory",
    "incomplete_bytes_dropped",
];

/// mlx-lm reports peak memory in GB (bytes / 1e9); the same unit keeps numbers comparable.
pub fn bytes_to_gb(bytes: u64) -> f64 {
    bytes as f64 / 1e9
}

impl StreamStats {
    /// The values of `entries` as numbers, in the same order (NaN for one not known yet):
    /// for bindings that hand statistics over in numeric arrays.
    pub fn numbers(&self) -> [f64; 8] {
        [
            self.prompt_tokens as f64,
            self.prompt_tps,
            self.generation_tokens as f64,
            self.generation_tps,
            self.time_to_first_token_s.unwrap_or(f64::NAN),
            self.elapsed_s,
            bytes_to_gb(self.peak_memory_bytes),
            self.incomplete_bytes_dropped as f64,
        ]
    }

    /// The statistics as bindings show them: times in seconds, peak memory in GB.
    pub fn entries(&self) -> [(&'static str, StatValue); 8] {
        let values = [
            StatValue::Count(self.prompt_tokens),
            StatValue::Number(self.prompt_tps),
            StatValue::Count(self.generation_tokens),
            StatValue::Number(self.generation_tps),
            StatValue::MaybeNumber(self.time_to_first_token_s),
            StatValue::Number(self.elapsed_s),
            StatValue::Number(bytes_to_gb(self.peak_memory_bytes)),
            StatValue::Count(self.incomplete_bytes_dropped),
        ];
        let mut index = 0;
        values.map(|value| {
            index += 1;
            (STAT_NAMES[index - 1], value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_numbers_are_the_entries_in_their_order() {
        let stats = StreamStats {
            prompt_tokens: 3,
            prompt_tps: 1.5,
            generation_tokens: 7,
            generation_tps: 2.5,
            time_to_first_token_s: None,
            elapsed_s: 4.0,
            peak_memory_bytes: 2_000_000_000,
            incomplete_bytes_dropped: 1,
        };
        let numbers = stats.numbers();
        for (number, (_, value)) in numbers.iter().zip(stats.entries()) {
            let expected = match value {
                StatValue::Count(n) => n as f64,
                StatValue::Number(x) => x,
                StatValue::MaybeNumber(x) => x.unwrap_or(f64::NAN),
            };
            assert!(number == &expected || (number.is_nan() && expected.is_nan()));
        }
    }

    #[test]
    fn finish_reasons_round_trip_through_text() {
        for reason in FinishReason::ALL {
            assert_eq!(reason.as_str().parse::<FinishReason>(), Ok(reason));
        }
        let err = "done".parse::<FinishReason>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown finish reason \"done\"; the reasons are stop, length, timeout, cancelled, error"
        );
    }

    #[test]
    fn only_stop_and_length_are_producer_ends() {
        let ends: Vec<_> = FinishReason::ALL
            .into_iter()
            .filter(|r| r.is_producer_end())
            .collect();
        assert_eq!(ends, [FinishReason::Stop, FinishReason::Length]);
    }

    #[test]
    fn entries_follow_the_names_and_convert_units() {
        let stats = StreamStats {
            prompt_tokens: 3,
            generation_tokens: 5,
            peak_memory_bytes: 2_500_000_000,
            time_to_first_token_s: None,
            ..StreamStats::default()
        };
        let entries = stats.entries();
        let names: Vec<&str> = entries.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, STAT_NAMES);
        assert_eq!(entries[0].1, StatValue::Count(3));
        assert_eq!(entries[2].1, StatValue::Count(5));
        assert_eq!(entries[4].1, StatValue::MaybeNumber(None));
        assert_eq!(entries[6].1, StatValue::Number(2.5));
    }
}

#[cfg(test)]
mod event_text_tests {
    use super::EventText;

    #[test]
    fn short_and_long_texts_read_back_whole() {
        for text in [
            "",
            "a",
            " hello",
            "🙂🚀 東京",
            &"x".repeat(22),
            &"y".repeat(23),
            &"é".repeat(40),
        ] {
            let held = EventText::new(text);
            assert_eq!(held.as_str(), text);
            assert_eq!(EventText::from(text.to_owned()), held);
            assert_eq!(format!("{held:?}"), format!("{text:?}"));
        }
        assert_eq!(
            std::mem::size_of::<EventText>(),
            std::mem::size_of::<String>()
        );
    }
}
