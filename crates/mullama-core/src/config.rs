//! `StreamConfig`: sampling and streaming parameters, validated in one place.

use crate::error::{CoreError, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// Most tokens to generate (>= 1).
    pub max_tokens: usize,
    /// 0 = greedy; must be finite and >= 0.
    pub temperature: f32,
    /// 0 = disabled.
    pub top_k: usize,
    /// In (0, 1]; 1 = disabled.
    pub top_p: f32,
    /// In [0, 1); 0 = disabled.
    pub min_p: f32,
    /// > 0; 1 = disabled.
    pub repeat_penalty: f32,
    /// Same seed, same tokens. None = nondeterministic.
    pub seed: Option<u64>,
    /// Text that ends generation; each must be non-empty.
    pub stop_sequences: Vec<String>,
    /// Emit the matched stop text as part of the output.
    pub include_stop: bool,
    /// Capacity of the token channel, in events (>= 1).
    pub buffer_size: usize,
    /// Deadline for the whole stream, from its creation; 0 = none.
    pub timeout_ms: u64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.8,
            top_k: 40,
            top_p: 0.9,
            min_p: 0.0,
            repeat_penalty: 1.0,
            seed: None,
            stop_sequences: Vec::new(),
            include_stop: false,
            buffer_size: 64,
            timeout_ms: 30_000,
        }
    }
}

impl StreamConfig {
    /// Checks every field; the error names the first bad field and its value.
    pub fn validate(&self) -> Result<()> {
        let _ = CoreError::Config { field: "", value: String::new(), reason: String::new() };
        todo!("validate each field")
    }
}
