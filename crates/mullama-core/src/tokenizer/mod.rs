//! The tokenizer: text <-> token ids, reproducing llama.cpp's tokenization exactly.
//!
//! llama.cpp's `src/llama-vocab.cpp` and `src/unicode.cpp` are the reference. Encoding a
//! text runs special-token partitioning (`special`), then per text fragment either
//! - byte-level BPE (`tokenizer.ggml.model = "gpt2"`): the pre-tokenizer named by
//!   `tokenizer.ggml.pre` (`pretokenize`), GPT-2 byte-level spelling (`byte_level`) and
//!   rank-ordered merges by the `tokenizers` crate (`bpe`), or
//! - SentencePiece (`"llama"`): spaces spelled U+2581 and score-ordered merges (`spm`).
//!
//! Decoding concatenates each token's raw bytes, precomputed at construction so
//! `piece(id)` is O(1) for streaming.
//!
//! Pieces follow llama.cpp's `token_to_piece`: by default (`TokenPieces::piece`, like
//! `special = false`) control and unknown tokens render as nothing, so `<|im_end|>` never
//! leaks into streamed text; `piece_with_special` / `SpecialPieces` render their text.
//!
//! Sources: a GGUF file's `tokenizer.ggml.*` metadata (`from_gguf`), llama.cpp-exact, or
//! a Hugging Face `tokenizer.json` (+ `tokenizer_config.json`, `generation_config.json`)
//! (`from_hf_json`), which encodes with the `tokenizers` crate's own pipeline so ids equal
//! Hugging Face's; its pieces come from the file's decoder chain (`hf_json`).

mod bpe;
mod byte_level;
mod hf_json;
mod hf_split;
mod pretokenize;
mod special;
mod spm;
mod unicode;
mod vocab_source;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::detokenizer::TokenPieces;
use crate::error::{CoreError, Result};
use crate::gguf::GgufMetadata;

pub use pretokenize::{PreTokenizer, PreTokenizerSettings};
pub use vocab_source::VocabSource;

use bpe::BpeModel;
use byte_level::ByteLevel;
use hf_json::HfEncoder;
use special::{Fragment, SpecialTokens};
use spm::SpmModel;

/// SentencePiece's visible space.
const SPM_SPACE: &str = "\u{2581}";

/// How text fragments become tokens (boxed: both hold kilobyte-sized lookup tables).
enum Model {
    ByteLevelBpe {
        bpe: Box<BpeModel>,
        pre: PreTokenizer,
        byte_level: Box<ByteLevel>,
        /// With llama.cpp's `ignore_merges` (Llama 3): the tokens by spelling, so a word
        /// that is a token is emitted whole.
        whole_words: Option<std::collections::HashMap<String, u32>>,
    },
    SentencePiece {
        spm: Box<SpmModel>,
        add_space_prefix: bool,
    },
    /// A Hugging Face tokenizer.json, encoded by the `tokenizers` crate.
    HuggingFace(Box<HfEncoder>),
}

/// A token's role, from `tokenizer.ggml.token_type` (same codes as llama.cpp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Undefined,
    Normal,
    Unknown,
    /// Special tokens such as `<|im_end|>`: parsed from text only with parse_special.
    Control,
    /// Added tokens that are always matched as a whole, even in plain text.
    UserDefined,
    Unused,
    /// SentencePiece byte-fallback tokens `<0xNN>`.
    Byte,
}

impl TokenKind {
    pub fn from_code(code: i64) -> Self {
        match code {
            1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Undefined,
        }
    }
}

/// Token texts that end generation in llama.cpp (matched by text, as it does).
const END_OF_GENERATION_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];

/// Token texts llama.cpp takes as end-of-turn when the file names none, in preference
/// order (llama.cpp's pick among several is hash-order dependent; this one is fixed).
const END_OF_TURN_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// A ready tokenizer. Cheap to share (`Arc<Tokenizer>`); all methods take `&self`.
pub struct Tokenizer {
    model: Model,
    texts: Vec<String>,
    kinds: Vec<TokenKind>,
    specials: SpecialTokens,
    /// All token pieces back to back; token i is `piece_bytes[piece_ends[i-1]..piece_ends[i]]`.
    piece_bytes: Vec<u8>,
    piece_ends: Vec<usize>,
    /// Pieces that differ when the token is the first shown in a text (Hugging Face
    /// decoders that drop a leading space there); empty for GGUF tokenizers.
    leading: HashMap<u32, Box<[u8]>>,
    /// Hidden tokens as the decoder renders them when shown (not first, first); without
    /// an entry a shown control token is its text (llama.cpp).
    shown_special: HashMap<u32, [Box<[u8]>; 2]>,
    /// The decoder reads runs of byte-fallback tokens together (Hugging Face ByteFallback).
    byte_runs: bool,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    end_of_generation: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    chat_template: Option<String>,
    pre_name: String,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.texts.len())
            .field("model", &self.model_name())
            .field("pre", &self.pre_name)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("eot", &self.eot)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Loads the tokenizer of the GGUF model at `path` (reads metadata only).
    pub fn from_gguf_path(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_gguf(&GgufMetadata::from_path(path.as_ref())?)
    }

    /// Builds the tokenizer described by already-read GGUF metadata (so a model load
    /// parses its header once); errors name the file when the metadata came from one.
    pub fn from_gguf(meta: &GgufMetadata) -> Result<Self> {
        Self::from_source(VocabSource::from_gguf(meta)?).map_err(|e| match (e, &meta.path) {
            (CoreError::Tokenizer { message }, Some(path)) => CoreError::Tokenizer {
                message: format!("{}: {message}", path.display()),
            },
            (other, _) => other,
        })
    }

    /// Loads a Hugging Face tokenizer: `path` is a `tokenizer.json` file or a folder
    /// holding one (a `tokenizer_config.json` beside it supplies BOS/EOS and the template).
    /// Encoding is Hugging Face's (normalizer, pre-tokenizer, model, added tokens,
    /// post-processor); `generation_config.json`'s eos ids also end generation.
    pub fn from_hf_json(path: impl AsRef<Path>) -> Result<Self> {
        let parts = hf_json::load(path.as_ref())?;
        let token_index: HashMap<&str, u32> = parts
            .texts
            .iter()
            .enumerate()
            .map(|(id, t)| (t.as_str(), id as u32))
            .collect();
        let by_text = |list: &[&str]| -> Vec<u32> {
            list.iter()
                .filter_map(|t| token_index.get(t).copied())
                .collect()
        };
        let eot = by_text(END_OF_TURN_TEXTS).first().copied();
        let mut end_of_generation = by_text(END_OF_GENERATION_TEXTS);
        end_of_generation.extend(parts.eos.iter().chain(&eot).chain(&parts.generation_eos));
        end_of_generation.sort_unstable();
        end_of_generation.dedup();

        let mut piece_bytes = Vec::with_capacity(parts.pieces.iter().map(Vec::len).sum());
        let mut piece_ends = Vec::with_capacity(parts.pieces.len());
        let mut leading = HashMap::new();
        let mut shown_special = HashMap::new();
        for (id, piece) in parts.pieces.iter().enumerate() {
            let lead = parts.leading.get(&(id as u32)).unwrap_or(piece);
            // Special tokens are what `decode(.., skip_special_tokens=True)` leaves out.
            if parts.kinds[id] == TokenKind::Control {
                shown_special.insert(id as u32, [piece.as_slice().into(), lead.as_slice().into()]);
            } else {
                piece_bytes.extend_from_slice(piece);
                if lead != piece {
                    leading.insert(id as u32, lead.as_slice().into());
                }
            }
            piece_ends.push(piece_bytes.len());
        }
        Ok(Self {
            model: Model::HuggingFace(Box::new(parts.encoder)),
            texts: parts.texts,
            kinds: parts.kinds,
            specials: SpecialTokens::new(Vec::new()),
            piece_bytes,
            piece_ends,
            leading,
            shown_special,
            byte_runs: parts.byte_runs,
            bos: parts.bos,
            eos: parts.eos,
            eot,
            end_of_generation,
            add_bos: parts.add_bos,
            add_eos: parts.add_eos,
            chat_template: parts.chat_template,
            pre_name: parts.description,
        })
    }

    /// Builds a tokenizer from an explicit vocabulary description.
    pub fn from_source(src: VocabSource) -> Result<Self> {
        let err = |message: String| CoreError::Tokenizer { message };
        let is_spm = match src.model.as_str() {
            "gpt2" => false,
            "llama" => true,
            other => {
                return Err(err(format!(
                    "tokenizer model {other:?} is not supported \
                     (only byte-level BPE \"gpt2\" and SentencePiece \"llama\")"
                )))
            }
        };
        let n = src.tokens.len();
        if n == 0 {
            return Err(err("the vocabulary is empty".into()));
        }
        if n > u32::MAX as usize / 2 {
            return Err(err(format!("vocabulary of {n} tokens is too large")));
        }
        if src.kinds.len() != n {
            return Err(err(format!(
                "{} token types for {n} tokens",
                src.kinds.len()
            )));
        }
        let check_id = |name: &str, id: Option<u32>| match id {
            Some(i) if i as usize >= n => Err(err(format!(
                "{name} token id {i} is outside the vocabulary of {n}"
            ))),
            _ => Ok(id),
        };
        let bos = check_id("BOS", src.bos)?;
        let eos = check_id("EOS", src.eos)?;
        let mut eot = check_id("EOT", src.eot)?;
        let eom = check_id("EOM", src.eom)?;

        let mut token_index = std::collections::HashMap::with_capacity(n);
        for (id, text) in src.tokens.iter().enumerate() {
            token_index.insert(text.clone(), id as u32);
        }
        let mut kinds = src.kinds;
        if eot.is_none() {
            eot = END_OF_TURN_TEXTS
                .iter()
                .find_map(|t| token_index.get(*t).copied());
        }
        let ended_by_text: Vec<u32> = END_OF_GENERATION_TEXTS
            .iter()
            .filter_map(|t| token_index.get(*t).copied())
            .collect();
        // llama.cpp promotes tokens it recognises by text as end-of-turn/generation to
        // control tokens, so they are parsed as specials and hidden like them.
        for &id in ended_by_text.iter().chain(eot.iter()) {
            kinds[id as usize] = TokenKind::Control;
        }
        let mut end_of_generation = ended_by_text;
        end_of_generation.extend([eos, eot, eom].into_iter().flatten());
        end_of_generation.sort_unstable();
        end_of_generation.dedup();

        let mut add_bos_default = is_spm;
        let model = if is_spm {
            Model::SentencePiece {
                spm: Box::new(SpmModel::new(&src.tokens, &src.scores)?),
                // llama.cpp's SentencePiece defaults when the file does not say.
                add_space_prefix: src.add_space_prefix.unwrap_or(true),
            }
        } else {
            let settings = PreTokenizerSettings::from_gguf_name(&src.pre)
                .ok_or_else(|| err(format!("pre-tokenizer {:?} is not supported", src.pre)))?;
            add_bos_default = settings.add_bos_default;
            let byte_level = Box::new(ByteLevel::new());
            Model::ByteLevelBpe {
                bpe: Box::new(BpeModel::new(&src.tokens, &src.merges, byte_level.chars())?),
                pre: settings.pre,
                byte_level,
                whole_words: settings.ignore_merges.then_some(token_index),
            }
        };
        let specials = SpecialTokens::new(
            (0..n)
                .filter_map(|id| match kinds[id] {
                    TokenKind::Control | TokenKind::Unknown => {
                        Some((id as u32, src.tokens[id].clone(), true))
                    }
                    TokenKind::UserDefined => Some((id as u32, src.tokens[id].clone(), false)),
                    _ => None,
                })
                .collect(),
        );

        let mut piece_bytes = Vec::with_capacity(n * 6);
        let mut piece_ends = Vec::with_capacity(n);
        for (text, &kind) in src.tokens.iter().zip(&kinds) {
            match (kind, &model) {
                (TokenKind::Normal, Model::ByteLevelBpe { byte_level, .. }) => {
                    piece_bytes.extend(byte_level.decode(text))
                }
                (TokenKind::Normal, Model::SentencePiece { .. }) => {
                    piece_bytes.extend_from_slice(text.replace(SPM_SPACE, " ").as_bytes())
                }
                (TokenKind::Byte, Model::SentencePiece { .. }) => match spm_byte(text) {
                    Some(b) => piece_bytes.push(b),
                    None => piece_bytes.extend_from_slice(text.as_bytes()),
                },
                (TokenKind::UserDefined | TokenKind::Byte, _) => {
                    piece_bytes.extend_from_slice(text.as_bytes())
                }
                // Rendered only on request (`piece_with_special`), as in llama.cpp.
                (TokenKind::Control | TokenKind::Unknown, _) => {}
                (TokenKind::Unused | TokenKind::Undefined, _) => {}
                (_, Model::HuggingFace(_)) => unreachable!("built by from_hf_json"),
            }
            piece_ends.push(piece_bytes.len());
        }

        Ok(Self {
            model,
            texts: src.tokens,
            kinds,
            specials,
            piece_bytes,
            piece_ends,
            leading: HashMap::new(),
            shown_special: HashMap::new(),
            byte_runs: false,
            bos,
            eos,
            eot,
            end_of_generation,
            add_bos: src.add_bos.unwrap_or(add_bos_default) && bos.is_some(),
            add_eos: src.add_eos.unwrap_or(false) && eos.is_some(),
            chat_template: src.chat_template,
            pre_name: src.pre,
        })
    }

    /// Token ids of `text`. `add_special` prepends BOS / appends EOS where the model asks
    /// for them (`add_bos` / `add_eos`); `parse_special` turns control-token texts such as
    /// `<|im_end|>` into their single tokens instead of tokenizing them as plain text.
    ///
    /// Never fails for GGUF tokenizers; see `try_encode` for folder tokenizers.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        // The crate fails only for a model whose unknown token is missing from its own
        // vocabulary; such a file yields no ids rather than a panic.
        self.try_encode(text, add_special, parse_special)
            .unwrap_or_default()
    }

    /// `encode`, with the error a Hugging Face tokenizer can report (a model that must
    /// emit an unknown token its vocabulary lacks).
    pub fn try_encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>> {
        if let Model::HuggingFace(hf) = &self.model {
            return hf.encode(text, add_special, parse_special);
        }
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        let mut spelled = String::new();
        let mut after_special = true;
        for fragment in self.specials.partition(text, parse_special) {
            let range = match fragment {
                Fragment::Token(id) => {
                    out.push(id);
                    after_special = true;
                    continue;
                }
                Fragment::Text(range) => range,
            };
            let fragment_text = &text[range];
            match &self.model {
                Model::ByteLevelBpe {
                    bpe,
                    pre,
                    byte_level,
                    whole_words,
                } => {
                    for word in pre.split(fragment_text) {
                        spelled.clear();
                        byte_level.encode_into(&fragment_text[word], &mut spelled);
                        match whole_words.as_ref().and_then(|w| w.get(&spelled)) {
                            Some(&id) => out.push(id),
                            None => bpe.encode_word(&spelled, &mut out),
                        }
                    }
                }
                Model::SentencePiece {
                    spm,
                    add_space_prefix,
                } => {
                    // llama.cpp prefixes the space to every fragment that follows a
                    // special token (or starts the text), not only to the first one.
                    spelled.clear();
                    if *add_space_prefix && after_special {
                        spelled.push_str(SPM_SPACE);
                    }
                    for (i, part) in fragment_text.split(' ').enumerate() {
                        if i > 0 {
                            spelled.push_str(SPM_SPACE);
                        }
                        spelled.push_str(part);
                    }
                    spm.encode(&spelled, &mut out);
                }
                Model::HuggingFace(_) => unreachable!("encoded above"),
            }
            after_special = false;
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        Ok(out)
    }

    /// The bytes token `id` renders as with control/unknown tokens shown as their text
    /// (llama.cpp's `token_to_piece(.., special = true)`).
    pub fn piece_with_special(&self, id: u32) -> Option<&[u8]> {
        match self.kinds.get(id as usize)? {
            TokenKind::Control | TokenKind::Unknown => Some(self.shown_special_piece(id, 0)),
            _ => self.piece(id),
        }
    }

    /// A hidden token shown: its decoder rendering (`which` 0: later, 1: first) if known.
    fn shown_special_piece(&self, id: u32, which: usize) -> &[u8] {
        match self.shown_special.get(&id) {
            Some(pieces) => &pieces[which],
            None => self.texts[id as usize].as_bytes(),
        }
    }

    /// `piece_with_special` for the first token of a text.
    fn leading_piece_with_special(&self, id: u32) -> Option<&[u8]> {
        match self.kinds.get(id as usize)? {
            TokenKind::Control | TokenKind::Unknown => Some(self.shown_special_piece(id, 1)),
            _ => self.leading_piece(id),
        }
    }

    /// The raw bytes of `ids` concatenated; `render_special` shows control tokens' text.
    /// The first token shown takes its leading piece, as in a stream.
    pub fn decode_bytes(&self, ids: &[u32], render_special: bool) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        let mut started = false;
        for &id in ids {
            let piece = match (render_special, started) {
                (true, false) => self.leading_piece_with_special(id),
                (true, true) => self.piece_with_special(id),
                (false, false) => self.leading_piece(id),
                (false, true) => self.piece(id),
            };
            started |= render_special || !self.is_skipped(id);
            let piece = piece.ok_or_else(|| CoreError::Tokenizer {
                message: format!(
                    "token id {id} is outside the vocabulary of {}",
                    self.texts.len()
                ),
            })?;
            out.extend_from_slice(piece);
        }
        Ok(out)
    }

    /// The text of `ids`; invalid UTF-8 becomes U+FFFD (as `String::from_utf8_lossy`).
    /// With `render_special`, control tokens appear as their text (a lossless round trip
    /// of `encode(text, false, true)`); without, they are skipped.
    /// Decodes as a stream does (`IncrementalDecoder`), so both give the same text.
    pub fn decode(&self, ids: &[u32], render_special: bool) -> Result<String> {
        let mut decoder = crate::detokenizer::IncrementalDecoder::new();
        let mut out = String::with_capacity(ids.len() * 4);
        let mut started = false;
        for &id in ids {
            let piece = match (render_special, started) {
                (true, false) => self.leading_piece_with_special(id),
                (true, true) => self.piece_with_special(id),
                (false, false) => self.leading_piece(id),
                (false, true) => self.piece(id),
            }
            .ok_or_else(|| CoreError::Tokenizer {
                message: format!(
                    "token id {id} is outside the vocabulary of {}",
                    self.texts.len()
                ),
            })?;
            let skipped = !render_special && self.is_skipped(id);
            started |= !skipped;
            if self.is_run_byte(id) {
                decoder.push_run_byte(piece);
            } else if !skipped {
                decoder.push(piece, &mut out);
            }
        }
        decoder.finish_lossy(&mut out);
        Ok(out)
    }

    /// The vocabulary's spelling of token `id` (byte-level form for BPE tokens).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }

    pub fn token_kind(&self, id: u32) -> Option<TokenKind> {
        self.kinds.get(id as usize).copied()
    }

    pub fn vocab_size(&self) -> usize {
        self.texts.len()
    }

    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos
    }

    /// End-of-turn token: `tokenizer.ggml.eot_token_id`, else found by text like llama.cpp.
    pub fn eot_token_id(&self) -> Option<u32> {
        self.eot
    }

    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// `tokenizer.ggml.model`: "gpt2" (byte-level BPE) or "llama" (SentencePiece), or
    /// "huggingface" for a tokenizer.json.
    pub fn model_name(&self) -> &str {
        match self.model {
            Model::ByteLevelBpe { .. } => "gpt2",
            Model::SentencePiece { .. } => "llama",
            Model::HuggingFace(_) => "huggingface",
        }
    }

    /// The `tokenizer.ggml.pre` name this tokenizer follows ("hf-bpe", "hf-unigram", ...
    /// for a tokenizer.json).
    pub fn pre_tokenizer_name(&self) -> &str {
        &self.pre_name
    }

    /// Sorted ids that end generation: EOS, EOT, EOM and llama.cpp's known end texts.
    pub fn end_of_generation_ids(&self) -> &[u32] {
        &self.end_of_generation
    }

    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.end_of_generation.binary_search(&id).is_ok()
    }

    /// Control tokens (token type 3), e.g. `<|im_start|>`.
    pub fn is_control(&self, id: u32) -> bool {
        self.token_kind(id) == Some(TokenKind::Control)
    }

    pub fn control_token_ids(&self) -> Vec<u32> {
        (0..self.kinds.len() as u32)
            .filter(|&id| self.is_control(id))
            .collect()
    }
}

/// The byte a SentencePiece byte token `<0xNN>` stands for.
fn spm_byte(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

impl TokenPieces for Tokenizer {
    fn piece(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        let end = *self.piece_ends.get(i)?;
        let start = if i == 0 { 0 } else { self.piece_ends[i - 1] };
        Some(&self.piece_bytes[start..end])
    }

    fn leading_piece(&self, id: u32) -> Option<&[u8]> {
        match self.leading.get(&id) {
            Some(lead) => Some(lead),
            None => self.piece(id),
        }
    }

    fn is_skipped(&self, id: u32) -> bool {
        matches!(
            self.token_kind(id),
            Some(TokenKind::Control | TokenKind::Unknown)
        )
    }

    fn is_run_byte(&self, id: u32) -> bool {
        self.byte_runs && self.token_kind(id) == Some(TokenKind::Byte)
    }

    fn vocab_size(&self) -> usize {
        self.texts.len()
    }
}

/// A view of a tokenizer whose pieces show control tokens' text (e.g. for a raw stream
/// that should display `<|im_start|>`).
#[derive(Debug, Clone)]
pub struct SpecialPieces(pub Arc<Tokenizer>);

impl TokenPieces for SpecialPieces {
    fn piece(&self, id: u32) -> Option<&[u8]> {
        self.0.piece_with_special(id)
    }

    fn leading_piece(&self, id: u32) -> Option<&[u8]> {
        self.0.leading_piece_with_special(id)
    }

    fn is_run_byte(&self, id: u32) -> bool {
        self.0.is_run_byte(id)
    }

    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }
}
