//! `Tokenizer`: the core tokenizer (llama.cpp-exact for GGUF models) as a JS class.

use std::sync::Arc;

use mullama_core::{CoreError, TokenPieces, Tokenizer as CoreTokenizer};
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;

use crate::errors::to_napi;

#[napi]
pub struct Tokenizer {
    pub(crate) inner: Arc<CoreTokenizer>,
}

impl Tokenizer {
    pub fn pieces(&self) -> Arc<dyn TokenPieces> {
        self.inner.clone()
    }
}

fn out_of_vocab(id: u32, size: usize) -> napi::Error {
    to_napi(CoreError::Tokenizer {
        message: format!("token id {id} is outside the vocabulary of {size}"),
    })
}

#[napi]
impl Tokenizer {
    /// The tokenizer stored in a GGUF model file (reads the header only).
    #[napi(factory)]
    pub fn from_gguf(path: String) -> napi::Result<Self> {
        let inner = CoreTokenizer::from_gguf_path(&path).map_err(to_napi)?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// A Hugging Face tokenizer.json, or a folder holding one.
    #[napi(factory)]
    pub fn from_json(path: String) -> napi::Result<Self> {
        let inner = CoreTokenizer::from_hf_json(&path).map_err(to_napi)?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Token ids of `text`. `special` (default true): control-token texts such as
    /// "<|im_end|>" become single tokens. `addBos` (default false): prepend BOS when the
    /// model asks for it.
    #[napi]
    pub fn encode(
        &self,
        text: String,
        special: Option<bool>,
        add_bos: Option<bool>,
    ) -> napi::Result<Vec<u32>> {
        self.inner
            .try_encode(&text, add_bos.unwrap_or(false), special.unwrap_or(true))
            .map_err(to_napi)
    }

    /// The text of `ids` (invalid UTF-8 becomes U+FFFD); control tokens appear as their text
    /// unless `skipSpecial`.
    #[napi]
    pub fn decode(&self, ids: Vec<u32>, skip_special: Option<bool>) -> napi::Result<String> {
        self.inner
            .decode(&ids, !skip_special.unwrap_or(false))
            .map_err(to_napi)
    }

    /// The raw bytes of token `id`, as llama.cpp's token_to_piece: control tokens are empty
    /// unless `special`.
    #[napi]
    pub fn token_bytes(&self, id: u32, special: Option<bool>) -> napi::Result<Buffer> {
        let piece = if special.unwrap_or(false) {
            self.inner.piece_with_special(id)
        } else {
            self.inner.piece(id)
        };
        piece
            .map(|p| Buffer::from(p.to_vec()))
            .ok_or_else(|| out_of_vocab(id, self.inner.vocab_size()))
    }

    #[napi]
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.inner.is_end_of_generation(id)
    }

    #[napi(getter)]
    pub fn vocab_size(&self) -> u32 {
        // Vocabularies are checked to fit u32 ids when loaded.
        self.inner.vocab_size() as u32
    }

    #[napi(getter)]
    pub fn bos_token_id(&self) -> Option<u32> {
        self.inner.bos_token_id()
    }

    #[napi(getter)]
    pub fn eos_token_id(&self) -> Option<u32> {
        self.inner.eos_token_id()
    }

    /// Whether the model wants BOS prepended to prompts.
    #[napi(getter)]
    pub fn add_bos(&self) -> bool {
        self.inner.add_bos()
    }

    #[napi(getter)]
    pub fn chat_template(&self) -> Option<String> {
        self.inner.chat_template().map(str::to_owned)
    }

    /// Sorted ids that end generation.
    #[napi(getter)]
    pub fn end_of_generation_ids(&self) -> Vec<u32> {
        self.inner.end_of_generation_ids().to_vec()
    }
}
