//! Reading a Hugging Face `tokenizer.json` (byte-level BPE) into a `VocabSource`, with
//! BOS/EOS, `add_bos_token` and the chat template from a sibling `tokenizer_config.json`.
//!
//! The pre-tokenizer is recognised by shape and mapped to the llama.cpp pre-tokenizer
//! that implements it: `ByteLevel` alone is "gpt-2"; `Digits(individual)` followed by
//! `ByteLevel` is "smollm". Anything else is rejected rather than tokenized differently.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{TokenKind, VocabSource};
use crate::error::{CoreError, Result};

/// tokenizer.json files are a few MB; anything far larger is not one.
const MAX_JSON_BYTES: u64 = 256 << 20;
const MAX_VOCAB: usize = 4_000_000;

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

pub fn load(path: &Path) -> Result<VocabSource> {
    let json_path: PathBuf = if path.is_dir() {
        path.join("tokenizer.json")
    } else {
        path.to_path_buf()
    };
    let root = read_json(&json_path)?;
    let where_ = json_path.display();
    let model = root
        .get("model")
        .ok_or_else(|| tok_err(format!("{where_}: no \"model\"")))?;
    let model_type = model.get("type").and_then(Value::as_str).unwrap_or("BPE");
    if model_type != "BPE" {
        return Err(tok_err(format!(
            "{where_}: model type {model_type:?} is not supported (only BPE)"
        )));
    }
    let pre = pre_tokenizer_name(root.get("pre_tokenizer").unwrap_or(&Value::Null))
        .map_err(|m| tok_err(format!("{where_}: {m}")))?;

    let vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| tok_err(format!("{where_}: model.vocab is not an object")))?;
    let mut by_id: HashMap<u32, (String, TokenKind)> = HashMap::with_capacity(vocab.len());
    for (text, id) in vocab {
        let id = as_id(id)
            .ok_or_else(|| tok_err(format!("{where_}: vocab entry {text:?} has a bad id")))?;
        by_id.insert(id, (text.clone(), TokenKind::Normal));
    }
    for added in root
        .get("added_tokens")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(id), Some(content)) = (
            added.get("id").and_then(as_id),
            added.get("content").and_then(Value::as_str),
        ) else {
            return Err(tok_err(format!(
                "{where_}: an added_tokens entry lacks id or content"
            )));
        };
        let special = added
            .get("special")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let kind = if special {
            TokenKind::Control
        } else {
            TokenKind::UserDefined
        };
        by_id.insert(id, (content.to_owned(), kind));
    }
    let size = by_id.keys().max().map_or(0, |&m| m as usize + 1);
    if size > MAX_VOCAB {
        return Err(tok_err(format!(
            "{where_}: token id {} is implausibly large",
            size - 1
        )));
    }
    let mut tokens = Vec::with_capacity(size);
    let mut kinds = Vec::with_capacity(size);
    for id in 0..size as u32 {
        let (text, kind) = by_id
            .remove(&id)
            .unwrap_or_else(|| (format!("[PAD{id}]"), TokenKind::Unused));
        tokens.push(text);
        kinds.push(kind);
    }

    let merges = model
        .get("merges")
        .and_then(Value::as_array)
        .map(|list| list.iter().map(merge_string).collect::<Option<Vec<_>>>())
        .unwrap_or(Some(Vec::new()))
        .ok_or_else(|| {
            tok_err(format!(
                "{where_}: model.merges has an entry that is not a pair"
            ))
        })?;

    let mut src = VocabSource {
        model: "gpt2".into(),
        pre,
        tokens,
        kinds,
        merges,
        ..Default::default()
    };
    let config_path = json_path.with_file_name("tokenizer_config.json");
    if config_path.is_file() {
        apply_config(&mut src, &read_json(&config_path)?);
    }
    Ok(src)
}

fn as_id(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|x| u32::try_from(x).ok())
}

/// Merges are "a b" strings in older files and ["a", "b"] pairs in newer ones.
fn merge_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(pair) if pair.len() == 2 => {
            Some(format!("{} {}", pair[0].as_str()?, pair[1].as_str()?))
        }
        _ => None,
    }
}

fn pre_tokenizer_name(pre: &Value) -> std::result::Result<String, String> {
    let kind = |v: &Value| {
        v.get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let is_plain_byte_level = |v: &Value| {
        kind(v) == "ByteLevel"
            && v.get("use_regex").and_then(Value::as_bool).unwrap_or(true)
            && !v
                .get("add_prefix_space")
                .and_then(Value::as_bool)
                .unwrap_or(false)
    };
    if is_plain_byte_level(pre) {
        return Ok("gpt-2".into());
    }
    if kind(pre) == "Sequence" {
        let parts = pre
            .get("pretokenizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let [digits, byte_level] = parts.as_slice() {
            let individual = digits.get("individual_digits").and_then(Value::as_bool) == Some(true);
            if kind(digits) == "Digits" && individual && is_plain_byte_level(byte_level) {
                return Ok("smollm".into());
            }
        }
    }
    Err(format!(
        "pre_tokenizer {} is not supported (supported: ByteLevel, or Digits(individual) + ByteLevel)",
        serde_json::to_string(pre).unwrap_or_default().chars().take(200).collect::<String>()
    ))
}

fn apply_config(src: &mut VocabSource, config: &Value) {
    let token_of = |key: &str| -> Option<u32> {
        let v = config.get(key)?;
        let text = v
            .as_str()
            .or_else(|| v.get("content").and_then(Value::as_str))?;
        src.tokens.iter().rposition(|t| t == text).map(|i| i as u32)
    };
    src.bos = token_of("bos_token");
    src.eos = token_of("eos_token");
    src.add_bos = config.get("add_bos_token").and_then(Value::as_bool);
    src.add_eos = config.get("add_eos_token").and_then(Value::as_bool);
    src.chat_template = match config.get("chat_template") {
        Some(Value::String(t)) => Some(t.clone()),
        Some(Value::Array(named)) => named
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template").and_then(Value::as_str))
            .map(str::to_owned),
        _ => None,
    };
}
