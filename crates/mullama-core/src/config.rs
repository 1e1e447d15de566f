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
    /// In [0, 1]; 0 = disabled.
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
        if self.max_tokens == 0 {
            return Err(invalid("max_tokens", 0, "must be at least 1"));
        }
        let temperature = self.temperature;
        if !temperature.is_finite() || temperature < 0.0 {
            return Err(invalid(
                "temperature",
                temperature,
                "must be finite and >= 0",
            ));
        }
        let top_p = self.top_p;
        // Written so that NaN fails: every comparison with NaN is false.
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(invalid("top_p", top_p, "must be in (0, 1]"));
        }
        let min_p = self.min_p;
        if !(0.0..=1.0).contains(&min_p) {
            return Err(invalid("min_p", min_p, "must be in [0, 1]"));
        }
        let repeat_penalty = self.repeat_penalty;
        if !repeat_penalty.is_finite() || repeat_penalty <= 0.0 {
            return Err(invalid(
                "repeat_penalty",
                repeat_penalty,
                "must be finite and > 0",
            ));
        }
        if let Some(index) = self.stop_sequences.iter().position(String::is_empty) {
            return Err(CoreError::Config {
                field: "stop_sequences",
                value: format!("{:?}", self.stop_sequences),
                reason: format!("stop sequence {index} is empty"),
            });
        }
        if self.buffer_size == 0 {
            return Err(invalid("buffer_size", 0, "must be at least 1"));
        }
        Ok(())
    }
}

fn invalid(field: &'static str, value: impl std::fmt::Display, reason: &str) -> CoreError {
    CoreError::Config {
        field,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(config: &StreamConfig) -> (&'static str, String) {
        match config.validate() {
            Err(CoreError::Config { field, value, .. }) => (field, value),
            other => panic!("expected a Config error, got {other:?}"),
        }
    }

    fn with(change: impl FnOnce(&mut StreamConfig)) -> StreamConfig {
        let mut config = StreamConfig::default();
        change(&mut config);
        config
    }

    #[test]
    fn default_is_valid() {
        assert_eq!(StreamConfig::default().validate(), Ok(()));
    }

    #[test]
    fn boundary_values_are_valid() {
        let config = with(|c| {
            c.max_tokens = 1;
            c.temperature = 0.0;
            c.top_k = 0;
            c.top_p = 1.0;
            c.min_p = 1.0;
            c.repeat_penalty = f32::MIN_POSITIVE;
            c.buffer_size = 1;
            c.timeout_ms = 0;
            c.stop_sequences = vec!["x".into()];
        });
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(with(|c| c.min_p = 0.0).validate(), Ok(()));
        assert_eq!(with(|c| c.top_k = usize::MAX).validate(), Ok(()));
        assert_eq!(with(|c| c.timeout_ms = u64::MAX).validate(), Ok(()));
    }

    #[test]
    fn max_tokens_zero() {
        assert_eq!(
            field_of(&with(|c| c.max_tokens = 0)),
            ("max_tokens", "0".into())
        );
    }

    #[test]
    fn temperature_negative_or_not_finite() {
        assert_eq!(
            field_of(&with(|c| c.temperature = -0.5)),
            ("temperature", "-0.5".into())
        );
        assert_eq!(
            field_of(&with(|c| c.temperature = f32::NAN)),
            ("temperature", "NaN".into())
        );
        assert_eq!(
            field_of(&with(|c| c.temperature = f32::INFINITY)),
            ("temperature", "inf".into())
        );
    }

    #[test]
    fn top_p_outside_zero_one() {
        assert_eq!(field_of(&with(|c| c.top_p = 0.0)), ("top_p", "0".into()));
        assert_eq!(field_of(&with(|c| c.top_p = 1.5)), ("top_p", "1.5".into()));
        assert_eq!(field_of(&with(|c| c.top_p = -1.0)), ("top_p", "-1".into()));
        assert_eq!(
            field_of(&with(|c| c.top_p = f32::NAN)),
            ("top_p", "NaN".into())
        );
    }

    #[test]
    fn min_p_outside_zero_one() {
        assert_eq!(
            field_of(&with(|c| c.min_p = -0.1)),
            ("min_p", "-0.1".into())
        );
        assert_eq!(
            field_of(&with(|c| c.min_p = 1.01)),
            ("min_p", "1.01".into())
        );
        assert_eq!(
            field_of(&with(|c| c.min_p = f32::NAN)),
            ("min_p", "NaN".into())
        );
    }

    #[test]
    fn repeat_penalty_not_positive_or_not_finite() {
        assert_eq!(
            field_of(&with(|c| c.repeat_penalty = 0.0)),
            ("repeat_penalty", "0".into())
        );
        assert_eq!(
            field_of(&with(|c| c.repeat_penalty = -2.0)),
            ("repeat_penalty", "-2".into())
        );
        assert_eq!(
            field_of(&with(|c| c.repeat_penalty = f32::NAN)),
            ("repeat_penalty", "NaN".into())
        );
        assert_eq!(
            field_of(&with(|c| c.repeat_penalty = f32::INFINITY)),
            ("repeat_penalty", "inf".into())
        );
    }

    #[test]
    fn empty_stop_string() {
        let config = with(|c| c.stop_sequences = vec!["ok".into(), String::new()]);
        let (field, value) = field_of(&config);
        assert_eq!(field, "stop_sequences");
        assert_eq!(value, r#"["ok", ""]"#);
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("stop sequence 1 is empty"), "{message}");
    }

    #[test]
    fn buffer_size_zero() {
        assert_eq!(
            field_of(&with(|c| c.buffer_size = 0)),
            ("buffer_size", "0".into())
        );
    }

    #[test]
    fn message_names_field_and_value() {
        let message = with(|c| c.top_p = 2.0).validate().unwrap_err().to_string();
        assert_eq!(message, "invalid top_p = 2: must be in (0, 1]");
    }
}
