//! The vocabulary description a `Tokenizer` is built from, and reading it from GGUF
//! metadata (`tokenizer.ggml.*`).

use super::TokenKind;
use crate::error::{CoreError, Result};
use crate::gguf::GgufMetadata;

/// Everything needed to build a tokenizer, independent of the file it came from.
#[derive(Debug, Clone, Default)]
pub struct VocabSource {
    /// `tokenizer.ggml.model`: "gpt2" (byte-level BPE) or "llama" (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.pre`, e.g. "smollm".
    pub pre: String,
    /// Token texts indexed by id, in the vocabulary's spelling.
    pub tokens: Vec<String>,
    pub kinds: Vec<TokenKind>,
    /// BPE merges, "left right", in rank order.
    pub merges: Vec<String>,
    /// SentencePiece token scores by id (empty for BPE).
    pub scores: Vec<f32>,
    /// SentencePiece: prefix each text with a space (`tokenizer.ggml.add_space_prefix`).
    pub add_space_prefix: Option<bool>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub chat_template: Option<String>,
}

fn tokenizer_error(message: String) -> CoreError {
    CoreError::Tokenizer { message }
}

impl VocabSource {
    pub fn from_gguf(meta: &GgufMetadata) -> Result<Self> {
        let model = meta
            .get_str("tokenizer.ggml.model")
            .ok_or_else(|| tokenizer_error("GGUF has no tokenizer.ggml.model".into()))?
            .to_owned();
        let tokens = meta
            .get_string_array("tokenizer.ggml.tokens")
            .ok_or_else(|| {
                tokenizer_error("GGUF has no tokenizer.ggml.tokens string array".into())
            })?
            .to_vec();
        let kinds = match meta.get_array("tokenizer.ggml.token_type") {
            Some(arr) => arr
                .to_i64_vec()
                .ok_or_else(|| {
                    tokenizer_error("tokenizer.ggml.token_type is not an integer array".into())
                })?
                .into_iter()
                .map(TokenKind::from_code)
                .collect(),
            None => vec![TokenKind::Normal; tokens.len()],
        };
        let merges = match meta.get("tokenizer.ggml.merges") {
            Some(_) => meta
                .get_string_array("tokenizer.ggml.merges")
                .ok_or_else(|| {
                    tokenizer_error("tokenizer.ggml.merges is not a string array".into())
                })?
                .to_vec(),
            None => Vec::new(),
        };
        let scores = match meta.get("tokenizer.ggml.scores") {
            Some(_) => meta
                .get_array("tokenizer.ggml.scores")
                .and_then(|a| a.to_f32_vec())
                .ok_or_else(|| {
                    tokenizer_error("tokenizer.ggml.scores is not a number array".into())
                })?,
            None => Vec::new(),
        };
        let id = |key: &str| -> Result<Option<u32>> {
            match meta.get(key) {
                None => Ok(None),
                Some(_) => match meta.get_i64(key) {
                    // -1 (as i32 or u32) means "none" in llama.cpp's converters.
                    Some(-1) | Some(0xFFFF_FFFF) => Ok(None),
                    Some(v) => u32::try_from(v)
                        .map(Some)
                        .map_err(|_| tokenizer_error(format!("{key} = {v} is not a token id"))),
                    None => Err(tokenizer_error(format!("{key} is not an integer"))),
                },
            }
        };
        Ok(Self {
            model,
            pre: meta
                .get_str("tokenizer.ggml.pre")
                .unwrap_or("default")
                .to_owned(),
            tokens,
            kinds,
            merges,
            scores,
            add_space_prefix: meta.get_bool("tokenizer.ggml.add_space_prefix"),
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            eot: id("tokenizer.ggml.eot_token_id")?,
            eom: id("tokenizer.ggml.eom_token_id")?,
            add_bos: meta.get_bool("tokenizer.ggml.add_bos_token"),
            add_eos: meta.get_bool("tokenizer.ggml.add_eos_token"),
            chat_template: meta.get_str("tokenizer.chat_template").map(str::to_owned),
        })
    }
}
