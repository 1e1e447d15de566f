//! llama.cpp's BPE pre-tokenization: how text is cut into words before merges.
//!
//! Mirrors `unicode_regex_split` in llama.cpp's `src/unicode.cpp`: a list of passes, each
//! refining the segments of the previous one (a pass never looks across a segment
//! boundary). Where llama.cpp uses a hand-written matcher for a regex (GPT-2's), its
//! exact behaviour is reproduced here, including how `\s+(?!\S)` is handled at the end
//! of a segment. The Llama 3 / Qwen2 family's split lives in `pretokenize_llama3.rs`.

use std::ops::Range;

use super::unicode::CharClass;

#[path = "pretokenize_llama3.rs"]
mod llama3;

/// The pre-tokenizer families named by `tokenizer.ggml.pre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2's regex alone (`gpt-2`, `mpt`, `olmo`, `jais`, ...).
    Gpt2,
    /// Every `\p{N}` codepoint isolated, then GPT-2's regex (`smollm`, `starcoder`,
    /// `refact`, `command-r`, `codeshell`, `exaone`, `minerva-7b`).
    DigitsThenGpt2,
    /// Llama 3's regex: contractions, letters with one leading non-letter, numbers in
    /// runs of up to three digits, line breaks kept with what precedes them (`llama3`,
    /// `llama-bpe`, `falcon3`, `pixtral`, `dbrx`, `smaug-bpe`, ...).
    Llama3,
    /// Llama 3's regex with each `\p{N}` codepoint a word of its own (`qwen2`,
    /// `deepseek-r1-qwen`, `megrez`, `stablelm2`, `hunyuan`, ...).
    Qwen2,
}

/// What llama.cpp's vocabulary loader decides from a `tokenizer.ggml.pre` name besides
/// the split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreTokenizerSettings {
    pub pre: PreTokenizer,
    /// A word that is itself a token is emitted whole, without merging (`ignore_merges`).
    pub ignore_merges: bool,
    /// Whether BOS is prepended when the file's `tokenizer.ggml.add_bos_token` is absent.
    pub add_bos_default: bool,
}

/// Names llama.cpp maps to its LLAMA3 pre-type, which also sets `ignore_merges` and
/// `add_bos`.
const LLAMA3_NAMES: &[&str] = &[
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "falcon-h1",
    "pixtral",
    "midm-2.0",
    "lfm2",
    "jina-v5-nano",
];

impl PreTokenizerSettings {
    /// The settings for a `tokenizer.ggml.pre` value, or None when unsupported.
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        let pre = PreTokenizer::from_gguf_name(name)?;
        let llama3 = LLAMA3_NAMES.contains(&name);
        Some(Self {
            pre,
            ignore_merges: llama3,
            add_bos_default: llama3,
        })
    }
}

impl PreTokenizer {
    /// The pre-tokenizer for a `tokenizer.ggml.pre` value, or None when unsupported.
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        Some(match name {
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais"
            | "exaone4" | "trillion" | "granite-docling" => Self::Gpt2,
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" | "mellum2" => Self::DigitsThenGpt2,
            "dbrx" | "smaug-bpe" => Self::Llama3,
            n if LLAMA3_NAMES.contains(&n) => Self::Llama3,
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" | "stablelm2"
            | "hunyuan" | "solar-open" | "grok-2" => Self::Qwen2,
            _ => return None,
        })
    }

    /// Cuts `text` into words (byte ranges of `text`), in order, covering all of it.
    pub fn split(self, text: &str) -> Vec<Range<usize>> {
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let classes: Vec<CharClass> = chars.iter().map(|&(_, c)| CharClass::of(c)).collect();
        let whole = 0..chars.len();
        let mut words = Vec::with_capacity(chars.len() / 3 + 1);
        let ascii_lower = |c: char| c.to_ascii_lowercase();
        match self {
            Self::Gpt2 => gpt2_split(&chars, &classes, whole, &mut words),
            Self::DigitsThenGpt2 => {
                for seg in isolate_numbers(&classes, whole) {
                    gpt2_split(&chars, &classes, seg, &mut words);
                }
            }
            Self::Llama3 => llama3::split(&chars, &classes, whole, 3, ascii_lower, &mut words),
            Self::Qwen2 => llama3::split(&chars, &classes, whole, 1, ascii_lower, &mut words),
        }
        to_byte_ranges(text, &chars, words)
    }
}

/// Llama 3's (`max_digits` 3) or Qwen2's (1) split with the caller's codepoint classes
/// and contraction folding: how a tokenizer.json's `Split` on these patterns is run
/// without a regex engine (`hf_split`). Byte ranges of `text`, covering all of it.
pub(super) fn llama3_family_split(
    text: &str,
    max_digits: usize,
    class_of: impl Fn(char) -> CharClass,
    fold: fn(char) -> char,
) -> Vec<Range<usize>> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let classes: Vec<CharClass> = chars.iter().map(|&(_, c)| class_of(c)).collect();
    let mut words = Vec::with_capacity(chars.len() / 3 + 1);
    llama3::split(
        &chars,
        &classes,
        0..chars.len(),
        max_digits,
        fold,
        &mut words,
    );
    to_byte_ranges(text, &chars, words)
}

/// Char-index ranges as byte ranges of `text`.
fn to_byte_ranges(
    text: &str,
    chars: &[(usize, char)],
    words: Vec<Range<usize>>,
) -> Vec<Range<usize>> {
    let byte_at = |i: usize| chars.get(i).map_or(text.len(), |&(b, _)| b);
    words
        .into_iter()
        .map(|w| byte_at(w.start)..byte_at(w.end))
        .collect()
}

/// The `\p{N}` pass: each number codepoint becomes its own segment; the text between
/// numbers stays whole.
fn isolate_numbers(classes: &[CharClass], seg: Range<usize>) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = seg.start;
    for i in seg.clone() {
        if classes[i].is_number() {
            if start < i {
                out.push(start..i);
            }
            out.push(i..i + 1);
            start = i + 1;
        }
    }
    if start < seg.end {
        out.push(start..seg.end);
    }
    out
}

/// GPT-2's `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
/// over one segment, in char indices, appended to `words`.
fn gpt2_split(
    chars: &[(usize, char)],
    classes: &[CharClass],
    seg: Range<usize>,
    words: &mut Vec<Range<usize>>,
) {
    let (ini, end) = (seg.start, seg.end);
    let char_at = |p: usize| {
        if (ini..end).contains(&p) {
            Some(chars[p].1)
        } else {
            None
        }
    };
    let class_at = |p: usize| {
        if (ini..end).contains(&p) {
            classes[p]
        } else {
            CharClass::NONE
        }
    };
    let mut pos = ini;
    while pos < end {
        let start = pos;
        let c = chars[pos].1;
        if let Some(len) = contraction_len(c, char_at(pos + 1), char_at(pos + 2)) {
            pos += len;
        } else {
            let lead_space = usize::from(c == ' ');
            let head = if c == ' ' {
                class_at(pos + 1)
            } else {
                classes[pos]
            };
            let is_other = |k: CharClass| {
                k.is_defined() && !(k.is_whitespace() || k.is_letter() || k.is_number())
            };
            let run: Option<&dyn Fn(CharClass) -> bool> = if head.is_letter() {
                Some(&CharClass::is_letter)
            } else if head.is_number() {
                Some(&CharClass::is_number)
            } else if is_other(head) {
                Some(&is_other)
            } else {
                None
            };
            if let Some(in_run) = run {
                pos += lead_space;
                while in_run(class_at(pos)) {
                    pos += 1;
                }
            } else {
                let mut spaces = 0;
                while class_at(pos + spaces).is_whitespace() {
                    spaces += 1;
                }
                pos += if spaces > 1 && char_at(pos + spaces).is_some() {
                    // \s+(?!\S): leave the last space to lead the next word.
                    spaces - 1
                } else if spaces > 0 {
                    spaces
                } else {
                    1
                };
            }
        }
        words.push(start..pos);
    }
}

/// Length of `'s|'t|'re|'ve|'m|'ll|'d` starting at `c`, if one starts there.
fn contraction_len(c: char, next: Option<char>, next2: Option<char>) -> Option<usize> {
    if c != '\'' {
        return None;
    }
    match (next?, next2) {
        ('s' | 't' | 'm' | 'd', _) => Some(2),
        ('r', Some('e')) | ('v', Some('e')) | ('l', Some('l')) => Some(3),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(pre: PreTokenizer, text: &str) -> Vec<&str> {
        pre.split(text).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn gpt2_keeps_one_space_for_the_next_word() {
        assert_eq!(
            words(PreTokenizer::Gpt2, "hello   world"),
            ["hello", "  ", " world"]
        );
        assert_eq!(
            words(PreTokenizer::Gpt2, "trailing   "),
            ["trailing", "   "]
        );
        assert_eq!(words(PreTokenizer::Gpt2, "I'm here"), ["I", "'m", " here"]);
        assert_eq!(words(PreTokenizer::Gpt2, "a, b!"), ["a", ",", " b", "!"]);
    }

    #[test]
    fn smollm_isolates_each_digit_and_stops_lookahead_at_segment_ends() {
        let pre = PreTokenizer::DigitsThenGpt2;
        assert_eq!(words(pre, "x 42"), ["x", " ", "4", "2"]);
        assert_eq!(words(pre, "a  1"), ["a", "  ", "1"]);
        assert_eq!(words(pre, "i² = n"), ["i", "²", " =", " n"]);
    }

    #[test]
    fn llama3_groups_digits_by_three_and_letters_take_one_lead() {
        let pre = PreTokenizer::Llama3;
        assert_eq!(words(pre, "1234567 x"), ["123", "456", "7", " x"]);
        assert_eq!(words(pre, "(hello)"), ["(hello", ")"]);
        assert_eq!(words(pre, "\tword  next"), ["\tword", " ", " next"]);
        assert_eq!(words(pre, "año 2024年"), ["año", " ", "202", "4", "年"]);
        assert_eq!(words(pre, "😀abc"), ["😀abc"]);
    }

    #[test]
    fn llama3_contractions_ignore_case_but_only_ascii() {
        let pre = PreTokenizer::Llama3;
        assert_eq!(
            words(pre, "I'M YOU'LL we'Re"),
            ["I", "'M", " YOU", "'LL", " we", "'Re"]
        );
        // 's wins over the letter rule, so the rest of the word starts a new one.
        assert_eq!(words(pre, "'sup"), ["'s", "up"]);
        // U+017F (long s) is not lowercased to 's' by llama.cpp: a lead plus letters.
        assert_eq!(words(pre, "'ſup"), ["'ſup"]);
    }

    #[test]
    fn llama3_line_breaks_end_whitespace_and_trail_punctuation() {
        let pre = PreTokenizer::Llama3;
        assert_eq!(
            words(pre, "a  \n\n  b   "),
            ["a", "  \n\n", " ", " b", "   "]
        );
        assert_eq!(words(pre, "end.\r\n\r\nNext"), ["end", ".\r\n\r\n", "Next"]);
        assert_eq!(words(pre, "x \n"), ["x", " \n"]);
        assert_eq!(words(pre, " !?\nz"), [" !?\n", "z"]);
        assert_eq!(
            words(pre, "x\u{3000}\u{3000}y"),
            ["x", "\u{3000}", "\u{3000}y"]
        );
    }

    #[test]
    fn qwen2_isolates_every_digit() {
        let pre = PreTokenizer::Qwen2;
        assert_eq!(words(pre, "x 1234"), ["x", " ", "1", "2", "3", "4"]);
        assert_eq!(words(pre, "²½٣"), ["²", "½", "٣"]);
        assert_eq!(words(pre, "it's 'LL"), ["it", "'s", " '", "LL"]);
    }

    #[test]
    fn settings_follow_llama_cpp_per_name() {
        let llama = PreTokenizerSettings::from_gguf_name("llama-bpe").unwrap();
        assert_eq!(llama.pre, PreTokenizer::Llama3);
        assert!(llama.ignore_merges && llama.add_bos_default);
        let dbrx = PreTokenizerSettings::from_gguf_name("dbrx").unwrap();
        assert_eq!(dbrx.pre, PreTokenizer::Llama3);
        assert!(!dbrx.ignore_merges && !dbrx.add_bos_default);
        for name in ["qwen2", "deepseek-r1-qwen", "megrez"] {
            let qwen = PreTokenizerSettings::from_gguf_name(name).unwrap();
            assert_eq!(qwen.pre, PreTokenizer::Qwen2);
            assert!(!qwen.ignore_merges && !qwen.add_bos_default);
        }
        assert!(PreTokenizerSettings::from_gguf_name("no-such-pre").is_none());
    }

    /// A byte-level vocabulary (every byte's character, plus `extra`) with `merges`.
    fn synthetic_source(
        pre: &str,
        extra: &[&str],
        merges: &[&str],
    ) -> crate::tokenizer::VocabSource {
        use crate::tokenizer::{TokenKind, VocabSource};
        let byte_level = super::super::byte_level::ByteLevel::new();
        let mut tokens: Vec<String> = byte_level.chars().iter().map(char::to_string).collect();
        tokens.extend(extra.iter().map(|t| t.to_string()));
        tokens.push("<|begin_of_text|>".into());
        let mut kinds = vec![TokenKind::Normal; tokens.len()];
        *kinds.last_mut().unwrap() = TokenKind::Control;
        VocabSource {
            model: "gpt2".into(),
            pre: pre.into(),
            bos: Some(tokens.len() as u32 - 1),
            tokens,
            kinds,
            merges: merges.iter().map(|m| m.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn llama_bpe_tokenizer_encodes_with_whole_word_tokens_and_bos() {
        use crate::tokenizer::{Tokenizer, VocabSource};
        // "Ġhi" is a token but no merge builds it: Llama 3 (ignore_merges) emits it whole.
        let src = synthetic_source("llama-bpe", &["Ġhi", "12", "123"], &["1 2", "12 3"]);
        let tok = Tokenizer::from_source(src.clone()).unwrap();
        assert!(tok.add_bos());
        let ids = tok.encode("x hi 1234", true, false);
        let texts: Vec<&str> = ids.iter().map(|&i| tok.token_text(i).unwrap()).collect();
        assert_eq!(texts, ["<|begin_of_text|>", "x", "Ġhi", "Ġ", "123", "4"]);
        assert_eq!(tok.decode(&ids, false).unwrap(), "x hi 1234");

        // dbrx splits the same way but merges every word, and adds no BOS by default.
        let tok = Tokenizer::from_source(VocabSource {
            pre: "dbrx".into(),
            ..src
        })
        .unwrap();
        assert!(!tok.add_bos());
        let ids = tok.encode("x hi", true, false);
        let texts: Vec<&str> = ids.iter().map(|&i| tok.token_text(i).unwrap()).collect();
        assert_eq!(texts, ["x", "Ġ", "h", "i"]);
    }

    #[test]
    fn qwen2_tokenizer_encodes_digits_one_by_one() {
        use crate::tokenizer::Tokenizer;
        let src = synthetic_source("qwen2", &["12"], &["1 2"]);
        let tok = Tokenizer::from_source(src).unwrap();
        let ids = tok.encode("12", false, false);
        let texts: Vec<&str> = ids.iter().map(|&i| tok.token_text(i).unwrap()).collect();
        assert_eq!(texts, ["1", "2"]);
    }
}
