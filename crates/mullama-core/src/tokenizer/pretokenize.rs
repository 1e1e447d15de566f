//! llama.cpp's BPE pre-tokenization: how text is cut into words before merges.
//!
//! Mirrors `unicode_regex_split` in llama.cpp's `src/unicode.cpp`: a list of passes, each
//! refining the segments of the previous one (a pass never looks across a segment
//! boundary). Where llama.cpp uses a hand-written matcher for a regex (GPT-2's), its
//! exact behaviour is reproduced here, including how `\s+(?!\S)` is handled at the end
//! of a segment.

use std::ops::Range;

use super::unicode::CharClass;

/// The pre-tokenizer families named by `tokenizer.ggml.pre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2's regex alone (`gpt-2`, `mpt`, `olmo`, `jais`, ...).
    Gpt2,
    /// Every `\p{N}` codepoint isolated, then GPT-2's regex (`smollm`, `starcoder`,
    /// `refact`, `command-r`, `codeshell`, `exaone`, `minerva-7b`).
    DigitsThenGpt2,
}

impl PreTokenizer {
    /// The pre-tokenizer for a `tokenizer.ggml.pre` value, or None when unsupported.
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        Some(match name {
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais"
            | "exaone4" | "trillion" | "granite-docling" => Self::Gpt2,
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" => Self::DigitsThenGpt2,
            _ => return None,
        })
    }

    /// Cuts `text` into words (byte ranges of `text`), in order, covering all of it.
    pub fn split(self, text: &str) -> Vec<Range<usize>> {
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let classes: Vec<CharClass> = chars.iter().map(|&(_, c)| CharClass::of(c)).collect();
        let whole = std::iter::once(0..chars.len());
        let segments: Vec<Range<usize>> = match self {
            Self::Gpt2 => whole.collect(),
            Self::DigitsThenGpt2 => whole
                .flat_map(|seg| isolate_numbers(&classes, seg))
                .collect(),
        };
        let mut words = Vec::with_capacity(chars.len() / 3 + 1);
        for seg in segments {
            gpt2_split(&chars, &classes, seg, &mut words);
        }
        let byte_at = |i: usize| chars.get(i).map_or(text.len(), |&(b, _)| b);
        words
            .into_iter()
            .map(|w| byte_at(w.start)..byte_at(w.end))
            .collect()
    }
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
}
