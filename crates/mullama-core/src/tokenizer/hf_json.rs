//! A Hugging Face `tokenizer.json` (the layout of MLX / hub model folders), applied as
//! Hugging Face applies it, with BOS/EOS, `add_bos_token` and the chat template from a
//! sibling `tokenizer_config.json` and end-of-generation ids from `generation_config.json`.
//!
//! Encoding is the `tokenizers` crate's own pipeline read from the file (normalizer,
//! pre-tokenizer sequence, model, added tokens, post-processor), so ids equal those of
//! the `tokenizers` Python package by construction.
//!
//! Decoding for streams needs each token's bytes on its own, which the crate's decoders
//! do not give (they work on whole id lists and return lossy text). `DecoderChain`
//! re-reads the file's decoder description and renders one token at a time; the only
//! context Hugging Face's decoders use is whether a token is the first of the text
//! (Metaspace drops its space marker there, `Strip` after `Fuse` cuts the text's
//! leading space, WordPiece and "no decoder" join later tokens with a space), so every
//! token gets a piece and, where different, a leading piece.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::byte_level::ByteLevel;
use super::hf_split::FolderPreTokenizer;
use super::TokenKind;
use crate::error::{CoreError, Result};

/// tokenizer.json files are a few MB; anything far larger is not one.
const MAX_JSON_BYTES: u64 = 256 << 20;
const MAX_VOCAB: usize = 4_000_000;

/// Model types of the `tokenizers` crate.
const MODEL_TYPES: &[&str] = &["BPE", "Unigram", "WordPiece", "WordLevel"];

/// The crate's component types by tokenizer.json key, with the key of a Sequence's
/// parts: checked first because the crate's own error does not name an unknown type.
const COMPONENTS: &[(&str, &str, &[&str])] = &[
    (
        "normalizer",
        "normalizers",
        &[
            "BertNormalizer",
            "Strip",
            "StripAccents",
            "NFC",
            "NFD",
            "NFKC",
            "NFKD",
            "Sequence",
            "Lowercase",
            "Nmt",
            "Precompiled",
            "Replace",
            "Prepend",
            "ByteLevel",
        ],
    ),
    (
        "pre_tokenizer",
        "pretokenizers",
        &[
            "BertPreTokenizer",
            "ByteLevel",
            "CharDelimiterSplit",
            "Metaspace",
            "Whitespace",
            "Sequence",
            "Split",
            "Punctuation",
            "WhitespaceSplit",
            "Digits",
            "UnicodeScripts",
            "FixedLength",
        ],
    ),
    (
        "post_processor",
        "processors",
        &[
            "RobertaProcessing",
            "BertProcessing",
            "ByteLevel",
            "TemplateProcessing",
            "Sequence",
        ],
    ),
];

/// Names the first component type the crate does not implement.
fn check_components(root: &Value) -> std::result::Result<(), String> {
    fn walk(v: &Value, key: &str, parts: &str, known: &[&str]) -> std::result::Result<(), String> {
        if v.is_null() {
            return Ok(());
        }
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        if !known.contains(&kind) {
            return Err(format!(
                "{key} type {kind:?} is not supported (supported: {})",
                known.join(", ")
            ));
        }
        for part in v.get(parts).and_then(Value::as_array).into_iter().flatten() {
            walk(part, key, parts, known)?;
        }
        Ok(())
    }
    for (key, parts, known) in COMPONENTS {
        walk(root.get(*key).unwrap_or(&Value::Null), key, parts, known)?;
    }
    Ok(())
}

fn tok_err(message: String) -> CoreError {
    CoreError::Tokenizer { message }
}

fn read_json(path: &Path) -> Result<Value> {
    let load_err = |message: String| CoreError::ModelLoad { message };
    let len = std::fs::metadata(path)
        .map_err(|e| load_err(format!("cannot open {}: {e}", path.display())))?
        .len();
    if len > MAX_JSON_BYTES {
        return Err(load_err(format!(
            "{} is {len} bytes, too large for a tokenizer file",
            path.display()
        )));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| load_err(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| load_err(format!("{} is not valid JSON: {e}", path.display())))
}

/// How `encode(.., add_special = true, ..)` adds BOS/EOS.
#[derive(Debug, Clone, Copy)]
enum SpecialRule {
    /// tokenizer.json's post-processor, as the `tokenizers` package applies it.
    PostProcessor,
    /// tokenizer_config.json's explicit `add_bos_token` / `add_eos_token`, which
    /// transformers' Llama/Gemma tokenizers turn into the post-processor they use.
    Config { bos: bool, eos: bool },
}

/// The crate's tokenizer with the pre-tokenizer of `hf_split`.
type FolderTokenizer = tokenizers::TokenizerImpl<
    tokenizers::ModelWrapper,
    tokenizers::NormalizerWrapper,
    FolderPreTokenizer,
    tokenizers::PostProcessorWrapper,
    tokenizers::DecoderWrapper,
>;

/// The encoding half: the crate's tokenizer, twice (the crate keeps "match special
/// tokens in text" as tokenizer state, and `encode` takes `&self`).
pub(super) struct HfEncoder {
    parses_special: FolderTokenizer,
    literal_special: FolderTokenizer,
    rule: SpecialRule,
    bos: Option<u32>,
    eos: Option<u32>,
}

impl HfEncoder {
    pub(super) fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>> {
        let tok = if parse_special {
            &self.parses_special
        } else {
            &self.literal_special
        };
        let use_post = add_special && matches!(self.rule, SpecialRule::PostProcessor);
        let encoding = tok
            .encode_fast(text, use_post)
            .map_err(|e| tok_err(format!("encoding failed: {e}")))?;
        let ids = encoding.get_ids();
        match self.rule {
            SpecialRule::Config { bos, eos } if add_special => {
                let mut out = Vec::with_capacity(ids.len() + 2);
                out.extend(self.bos.filter(|_| bos));
                out.extend_from_slice(ids);
                out.extend(self.eos.filter(|_| eos));
                Ok(out)
            }
            _ => Ok(ids.to_vec()),
        }
    }
}

/// Everything read from a folder, for `Tokenizer::from_hf_json` to assemble.
pub(super) struct HfParts {
    pub encoder: HfEncoder,
    pub texts: Vec<String>,
    pub kinds: Vec<TokenKind>,
    /// Each token's bytes when it is not the first of a text.
    pub pieces: Vec<Vec<u8>>,
    /// Tokens whose bytes differ when they lead the text.
    pub leading: HashMap<u32, Vec<u8>>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub chat_template: Option<String>,
    /// `generation_config.json`'s `eos_token_id` (one id or several).
    pub generation_eos: Vec<u32>,
    /// The decoder has a ByteFallback step (byte tokens are read in runs).
    pub byte_runs: bool,
    /// A short description such as "BPE" for `pre_tokenizer_name`.
    pub description: String,
}

pub(super) fn load(path: &Path) -> Result<HfParts> {
    let json_path: PathBuf = if path.is_dir() {
        path.join("tokenizer.json")
    } else {
        path.to_path_buf()
    };
    let mut root = read_json(&json_path)?;
    let where_ = json_path.display();
    let err = |m: String| tok_err(format!("{where_}: {m}"));
    check_components(&root).map_err(err)?;
    let Some(obj) = root.as_object_mut() else {
        return Err(err("not a JSON object".into()));
    };
    let model = obj.get("model").ok_or_else(|| err("no \"model\"".into()))?;
    // Files written by hand or by older tools leave out the type of a BPE model.
    let model_type = model
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("BPE")
        .to_owned();
    if !MODEL_TYPES.contains(&model_type.as_str()) {
        return Err(err(format!(
            "model type {model_type:?} is not supported (supported: {})",
            MODEL_TYPES.join(", ")
        )));
    }
    if let Some(m) = obj.get_mut("model").and_then(Value::as_object_mut) {
        m.entry("type").or_insert_with(|| Value::from("BPE"));
    }
    // The crate wants every top-level key; hand-written files often omit the empty ones.
    for key in [
        "normalizer",
        "pre_tokenizer",
        "post_processor",
        "decoder",
        "truncation",
        "padding",
    ] {
        obj.entry(key).or_insert(Value::Null);
    }
    let added = obj
        .entry("added_tokens")
        .or_insert_with(|| Value::Array(Vec::new()));
    for token in added.as_array_mut().into_iter().flatten() {
        let Some(token) = token.as_object_mut() else {
            continue;
        };
        let special = token
            .get("special")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        // The defaults of the Python package's AddedToken.
        for (key, default) in [
            ("single_word", false),
            ("lstrip", false),
            ("rstrip", false),
            ("normalized", !special),
            ("special", special),
        ] {
            token.entry(key).or_insert(Value::Bool(default));
        }
    }
    obj.entry("version").or_insert_with(|| Value::from("1.0"));
    let chain = DecoderChain::parse(obj.get("decoder").unwrap_or(&Value::Null)).map_err(err)?;
    let byte_fallback = obj
        .get("model")
        .and_then(|m| m.get("byte_fallback"))
        .and_then(Value::as_bool)
        .unwrap_or(false);

    let bytes = serde_json::to_vec(&root).map_err(|e| err(e.to_string()))?;
    let parses_special: FolderTokenizer = serde_json::from_slice(&bytes)
        .map_err(|e| err(format!("cannot build the tokenizer: {e}")))?;
    let mut literal_special = parses_special.clone();
    literal_special.set_encode_special_tokens(true);

    let vocab = parses_special.get_vocab(true);
    let size = vocab.values().max().map_or(0, |&m| m as usize + 1);
    if size == 0 {
        return Err(err("the vocabulary is empty".into()));
    }
    if size > MAX_VOCAB {
        return Err(err(format!("token id {} is implausibly large", size - 1)));
    }
    let added = parses_special.get_added_tokens_decoder();
    let mut texts = vec![String::new(); size];
    let mut kinds = vec![TokenKind::Unused; size];
    for (text, &id) in &vocab {
        texts[id as usize] = text.clone();
        kinds[id as usize] = match added.get(&id) {
            Some(t) if t.special => TokenKind::Control,
            Some(_) => TokenKind::UserDefined,
            None if byte_fallback && byte_token(text).is_some() => TokenKind::Byte,
            None => TokenKind::Normal,
        };
    }
    for (id, text) in texts.iter_mut().enumerate() {
        if kinds[id] == TokenKind::Unused {
            *text = format!("[PAD{id}]");
        }
    }

    let mut pieces = Vec::with_capacity(size);
    let mut leading = HashMap::new();
    for (id, (text, &kind)) in texts.iter().zip(&kinds).enumerate() {
        if kind == TokenKind::Unused {
            pieces.push(Vec::new());
            continue;
        }
        let piece = chain.render(text, false);
        let lead = chain.render(text, true);
        if lead != piece {
            leading.insert(id as u32, lead);
        }
        pieces.push(piece);
    }

    let config_path = json_path.with_file_name("tokenizer_config.json");
    let config = if config_path.is_file() {
        read_json(&config_path)?
    } else {
        Value::Null
    };
    let token_of = |key: &str| -> Option<u32> {
        let v = config.get(key)?;
        let text = v
            .as_str()
            .or_else(|| v.get("content").and_then(Value::as_str))?;
        parses_special.token_to_id(text)
    };
    let bos = token_of("bos_token");
    let eos = token_of("eos_token");
    let flag = |key: &str| config.get(key).and_then(Value::as_bool);
    let rule = match (flag("add_bos_token"), flag("add_eos_token")) {
        (None, None) => SpecialRule::PostProcessor,
        (b, e) => SpecialRule::Config {
            bos: b.unwrap_or(false),
            eos: e.unwrap_or(false),
        },
    };
    let encoder = HfEncoder {
        parses_special,
        literal_special,
        rule,
        bos,
        eos,
    };
    // What the post-processor adds shows on the empty text.
    let (add_bos, add_eos) = match rule {
        SpecialRule::Config { bos: b, eos: e } => (b && bos.is_some(), e && eos.is_some()),
        SpecialRule::PostProcessor => {
            let ids = encoder.encode("", true, true)?;
            (
                bos.is_some() && ids.first().copied() == bos,
                eos.is_some() && ids.last().copied() == eos,
            )
        }
    };
    let chat_template = match config.get("chat_template") {
        Some(Value::String(t)) => Some(t.clone()),
        Some(Value::Array(named)) => named
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template").and_then(Value::as_str))
            .map(str::to_owned),
        _ => None,
    };
    let generation_eos = generation_eos(&json_path.with_file_name("generation_config.json"), size)?;
    Ok(HfParts {
        encoder,
        texts,
        kinds,
        pieces,
        leading,
        bos,
        eos,
        add_bos,
        add_eos,
        chat_template,
        generation_eos,
        byte_runs: chain.steps.iter().any(|s| matches!(s, Step::ByteFallback)),
        description: format!("hf-{}", model_type.to_lowercase()),
    })
}

/// `eos_token_id` of generation_config.json: the ids mlx-lm / transformers stop on.
fn generation_eos(path: &Path, size: usize) -> Result<Vec<u32>> {
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let config = read_json(path)?;
    let bad = || {
        tok_err(format!(
            "{}: eos_token_id must be a token id or a list of ids below {size}",
            path.display()
        ))
    };
    let as_id = |v: &Value| {
        v.as_u64()
            .filter(|&i| (i as usize) < size)
            .map(|i| i as u32)
    };
    match config.get("eos_token_id") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => list.iter().map(|v| as_id(v).ok_or_else(bad)).collect(),
        Some(v) => Ok(vec![as_id(v).ok_or_else(bad)?]),
    }
}

/// The byte of a byte-fallback token `<0xNN>` (exactly as the crate's ByteFallback reads it).
fn byte_token(text: &str) -> Option<u8> {
    if text.len() == 6 && text.starts_with("<0x") && text.ends_with('>') {
        u8::from_str_radix(&text[3..5], 16).ok()
    } else {
        None
    }
}

#[derive(Debug)]
enum Step {
    /// GPT-2's byte-to-character table reversed; a token with any other character keeps
    /// its own UTF-8. Fuses the tokens (so later steps see one text).
    ByteLevel,
    ByteFallback,
    Fuse,
    Replace {
        from: String,
        to: String,
    },
    /// The marker becomes a space, except in the first token where it is dropped
    /// (unless the prepend scheme is "never").
    Metaspace {
        marker: char,
        drop_first: bool,
    },
    Strip {
        content: char,
        start: usize,
        stop: usize,
    },
    /// Later tokens start with a space unless they carry the continuation prefix.
    WordPiece {
        prefix: String,
        cleanup: bool,
    },
}

/// A tokenizer.json decoder, applied to one token at a time.
struct DecoderChain {
    steps: Vec<Step>,
    /// No decoder: Hugging Face joins the tokens with spaces.
    joins_with_space: bool,
    byte_level: ByteLevel,
}

impl DecoderChain {
    fn parse(decoder: &Value) -> std::result::Result<Self, String> {
        let mut steps = Vec::new();
        if !decoder.is_null() {
            parse_step(decoder, &mut steps)?;
        }
        // After the tokens are fused, a trailing strip would act on the end of the whole
        // text, which a stream does not know until it ends.
        let mut fused = false;
        for step in &steps {
            match step {
                Step::ByteLevel | Step::Fuse => fused = true,
                Step::Strip { stop, .. } if fused && *stop > 0 => {
                    return Err("decoder Strip with stop > 0 after Fuse is not supported \
                         (it cuts the end of the whole text, unknown while streaming)"
                        .into())
                }
                _ => {}
            }
        }
        Ok(Self {
            steps,
            joins_with_space: decoder.is_null(),
            byte_level: ByteLevel::new(),
        })
    }

    /// The bytes `token` contributes; `first`: it is the first token of the text.
    fn render(&self, token: &str, first: bool) -> Vec<u8> {
        if self.joins_with_space {
            return if first {
                token.as_bytes().to_vec()
            } else {
                format!(" {token}").into_bytes()
            };
        }
        let mut cur = token.as_bytes().to_vec();
        // Once fused, per-token steps act on the whole text: only the first token sees
        // its start.
        let mut fused = false;
        for step in &self.steps {
            match step {
                Step::ByteLevel => {
                    let text = String::from_utf8_lossy(&cur);
                    let mapped: Option<Vec<u8>> =
                        text.chars().map(|c| self.byte_level.byte_of(c)).collect();
                    if let Some(bytes) = mapped {
                        cur = bytes;
                    }
                    fused = true;
                }
                Step::ByteFallback => {
                    if let Some(b) = std::str::from_utf8(&cur).ok().and_then(byte_token) {
                        cur = vec![b];
                    }
                }
                Step::Fuse => fused = true,
                Step::Replace { from, to } => {
                    if !from.is_empty() {
                        cur = replace_bytes(&cur, from.as_bytes(), to.as_bytes());
                    }
                }
                Step::Metaspace { marker, drop_first } => {
                    let drop = first && *drop_first;
                    let mut buf = [0u8; 4];
                    let marker = marker.encode_utf8(&mut buf).as_bytes();
                    cur = replace_bytes(&cur, marker, if drop { b"" } else { b" " });
                }
                Step::Strip {
                    content,
                    start,
                    stop,
                } => {
                    if !fused || first {
                        cur = strip(&cur, *content, *start, if fused { 0 } else { *stop });
                    }
                }
                Step::WordPiece { prefix, cleanup } => {
                    if !first {
                        cur = match cur.strip_prefix(prefix.as_bytes()) {
                            Some(rest) if !prefix.is_empty() => rest.to_vec(),
                            _ => [b" ".as_slice(), &cur].concat(),
                        };
                    }
                    if *cleanup {
                        cur = wordpiece_cleanup(&cur);
                    }
                }
            }
        }
        cur
    }
}

fn parse_step(v: &Value, steps: &mut Vec<Step>) -> std::result::Result<(), String> {
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
    let str_of = |key: &str| v.get(key).and_then(Value::as_str);
    let char_of = |key: &str| -> std::result::Result<char, String> {
        let s = str_of(key).ok_or_else(|| format!("decoder {kind} has no {key}"))?;
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Ok(c),
            _ => Err(format!("decoder {kind}: {key} {s:?} is not one character")),
        }
    };
    match kind {
        "Sequence" => {
            for d in v
                .get("decoders")
                .and_then(Value::as_array)
                .ok_or("decoder Sequence has no decoders list")?
            {
                parse_step(d, steps)?;
            }
        }
        "ByteLevel" => steps.push(Step::ByteLevel),
        "ByteFallback" => steps.push(Step::ByteFallback),
        "Fuse" => steps.push(Step::Fuse),
        "Replace" => {
            let pattern = v.get("pattern");
            let from = pattern
                .and_then(|p| p.get("String"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    format!(
                        "decoder Replace with pattern {} is not supported (only String patterns)",
                        pattern.map(Value::to_string).unwrap_or_default()
                    )
                })?;
            let to = str_of("content").ok_or("decoder Replace has no content")?;
            steps.push(Step::Replace {
                from: from.to_owned(),
                to: to.to_owned(),
            });
        }
        "Metaspace" => {
            let scheme = match str_of("prepend_scheme") {
                Some(s) => s.to_owned(),
                None => match v.get("add_prefix_space").and_then(Value::as_bool) {
                    Some(false) => "never".into(),
                    _ => "always".into(),
                },
            };
            steps.push(Step::Metaspace {
                marker: char_of("replacement")?,
                drop_first: scheme != "never",
            });
        }
        "Strip" => {
            let count = |key: &str| v.get(key).and_then(Value::as_u64).unwrap_or(0) as usize;
            steps.push(Step::Strip {
                content: char_of("content")?,
                start: count("start"),
                stop: count("stop"),
            });
        }
        "WordPiece" => steps.push(Step::WordPiece {
            prefix: str_of("prefix").unwrap_or("##").to_owned(),
            cleanup: v.get("cleanup").and_then(Value::as_bool).unwrap_or(true),
        }),
        other => {
            return Err(format!(
                "decoder {other:?} is not supported for streaming (supported: ByteLevel, \
                 Metaspace, ByteFallback, Fuse, Replace, Strip, WordPiece, Sequence)"
            ))
        }
    }
    Ok(())
}

fn replace_bytes(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Up to `start` leading and `stop` trailing `content` characters removed (as the
/// crate's Strip decoder counts them). Works on bytes: a piece may be part of a character.
fn strip(bytes: &[u8], content: char, start: usize, stop: usize) -> Vec<u8> {
    let mut buf = [0u8; 4];
    let content = content.encode_utf8(&mut buf).as_bytes();
    let mut rest = bytes;
    for _ in 0..start {
        match rest.strip_prefix(content) {
            Some(r) => rest = r,
            None => break,
        }
    }
    for _ in 0..stop {
        match rest.strip_suffix(content) {
            Some(r) => rest = r,
            None => break,
        }
    }
    rest.to_vec()
}

/// The WordPiece decoder's clean-up of spaces before punctuation and contractions.
fn wordpiece_cleanup(bytes: &[u8]) -> Vec<u8> {
    const RULES: &[(&str, &str)] = &[
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" do not", " don't"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ];
    RULES.iter().fold(bytes.to_vec(), |cur, (from, to)| {
        replace_bytes(&cur, from.as_bytes(), to.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metaspace_drops_the_marker_of_the_first_token_only() {
        let chain = DecoderChain::parse(&json!({
            "type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always"
        }))
        .unwrap();
        assert_eq!(chain.render("\u{2581}hi", true), b"hi");
        assert_eq!(chain.render("\u{2581}hi", false), b" hi");
    }

    #[test]
    fn llama2_sequence_strips_one_leading_space_and_reads_byte_tokens() {
        let chain = DecoderChain::parse(&json!({"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}
        ]}))
        .unwrap();
        assert_eq!(chain.render("\u{2581}\u{2581}a", true), b" a");
        assert_eq!(chain.render("\u{2581}\u{2581}a", false), b"  a");
        assert_eq!(chain.render("<0xE4>", false), [0xE4]);
        assert_eq!(chain.render("<0x20>", true), b"");
        // A byte that starts a character is not a space and stays.
        assert_eq!(chain.render("<0xED>", true), [0xED]);
    }

    #[test]
    fn byte_level_keeps_tokens_outside_the_table_whole() {
        let chain = DecoderChain::parse(&json!({"type": "ByteLevel"})).unwrap();
        assert_eq!(chain.render("\u{120}hi", false), b" hi");
        assert_eq!(
            chain.render("\u{120}\u{4e2d}", false),
            "\u{120}\u{4e2d}".as_bytes()
        );
    }

    #[test]
    fn unsupported_decoders_are_named() {
        let e = DecoderChain::parse(&json!({"type": "CTC"})).err().unwrap();
        assert!(e.contains("CTC"), "{e}");
        let e = DecoderChain::parse(&json!({"type": "Sequence", "decoders": [
            {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 0, "stop": 1}
        ]}))
        .err()
        .unwrap();
        assert!(e.contains("stop"), "{e}");
    }
}
