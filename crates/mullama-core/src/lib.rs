//! mullama's streaming core.
//!
//! Everything between "the model produced token id N" and "the consumer received text":
//! configuration, the bounded token channel, incremental UTF-8-safe detokenization,
//! stop-sequence scanning, events and statistics, and the tokenizer. This crate knows
//! nothing about Python or Node; the bindings only convert types and errors.

pub mod config;
pub mod detokenizer;
pub mod error;
pub mod event;
pub mod gguf;
pub mod logits;
pub mod reader;
pub mod signal;
pub mod stop;
pub mod stream;
pub mod tokenizer;

pub use config::StreamConfig;
pub use detokenizer::{IncrementalDecoder, PieceTable, TokenPieces};
pub use error::CoreError;
pub use event::{EventText, FinishReason, StatValue, StreamStats, TokenEvent, STAT_NAMES};
pub use gguf::{GgufMetadata, GgufValue};
pub use logits::LogitSummary;
pub use reader::{Read, StreamReader};
pub use signal::RoomSignal;
pub use stop::StopScanner;
pub use stream::{
    push_ids_in_order, text_stream, token_stream, Batch, NextWithin, PushOutcome, TextProducer,
    TokenConsumer, TokenProducer, TryNext,
};
pub use tokenizer::Tokenizer;
