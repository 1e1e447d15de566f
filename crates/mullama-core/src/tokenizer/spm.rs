//! SentencePiece-style merging as llama.cpp's `llm_tokenizer_spm_session` does it, for
//! `tokenizer.ggml.model = "llama"` vocabularies (Gemma, Llama 2, Mistral v1).
//!
//! The text (spaces already spelled U+2581) starts as one symbol per character; while
//! some adjacent pair concatenates to a vocabulary token, the pair whose token has the
//! highest score merges (leftmost on equal scores). Each final symbol is its token, or,
//! when it is a character the vocabulary lacks, one `<0xNN>` byte token per UTF-8 byte.
//!
//! The `tokenizers` crate cannot stand in here: its BPE ranks merge *pairs*, while this
//! ranks merge *results*, so two different splits of one token competing at different
//! positions are ordered by rank there and by position here; and Gemma's 6k control
//! tokens share one score (-1000) that no rank order can express.
//!
//! llama.cpp's `resegment` recursion (through `rev_merge`) never applies: every merge
//! makes a vocabulary token, so a final symbol that is not a token is an unmerged
//! character, which `rev_merge` (keyed by token texts) cannot hold.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use crate::error::{CoreError, Result};

pub struct SpmModel {
    /// Token text -> id; a duplicated text keeps its last id, as in llama.cpp.
    index: HashMap<String, u32>,
    scores: Vec<f32>,
    /// Token for each byte: `<0xNN>`, else the byte itself as a one-byte token.
    byte_token: [Option<u32>; 256],
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    /// Byte length; 0 once merged into its left neighbour.
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of `left` and its right neighbour `right` into a token of `score`.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    /// Byte length of the merged text: a popped bigram is stale unless both symbols
    /// still add up to it (the check llama.cpp makes).
    len: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// The heap's maximum is the highest score, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(other.left.cmp(&self.left))
    }
}

impl SpmModel {
    /// `tokens` and `scores` are indexed by token id.
    pub fn new(tokens: &[String], scores: &[f32]) -> Result<Self> {
        if scores.len() != tokens.len() {
            return Err(CoreError::Tokenizer {
                message: format!("{} token scores for {} tokens", scores.len(), tokens.len()),
            });
        }
        let mut index = HashMap::with_capacity(tokens.len());
        for (id, text) in tokens.iter().enumerate() {
            index.insert(text.clone(), id as u32);
        }
        let mut byte_token = [None; 256];
        for (b, slot) in byte_token.iter_mut().enumerate() {
            *slot = index.get(&format!("<0x{b:02X}>")).copied().or_else(|| {
                let raw = [b as u8];
                std::str::from_utf8(&raw)
                    .ok()
                    .and_then(|s| index.get(s).copied())
            });
        }
        Ok(Self {
            index,
            scores: scores.to_vec(),
            byte_token,
        })
    }

    /// Appends the tokens of `text` (whitespace already escaped) to `out`.
    pub fn encode(&self, text: &str, out: &mut Vec<u32>) {
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (start, c) in text.char_indices() {
            let i = symbols.len();
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: None,
            });
            if i > 0 {
                symbols[i - 1].next = Some(i);
            }
        }
        let mut queue = BinaryHeap::with_capacity(symbols.len());
        for right in 1..symbols.len() {
            self.push_bigram(text, &symbols, right - 1, right, &mut queue);
        }
        while let Some(bigram) = queue.pop() {
            let (left, right) = (symbols[bigram.left], symbols[bigram.right]);
            if left.len == 0 || right.len == 0 || left.len + right.len != bigram.len {
                continue;
            }
            symbols[bigram.left].len += right.len;
            symbols[bigram.right].len = 0;
            symbols[bigram.left].next = right.next;
            if let Some(n) = right.next {
                symbols[n].prev = Some(bigram.left);
            }
            if let Some(p) = left.prev {
                self.push_bigram(text, &symbols, p, bigram.left, &mut queue);
            }
            if let Some(n) = right.next {
                self.push_bigram(text, &symbols, bigram.left, n, &mut queue);
            }
        }

        let mut cursor = (!symbols.is_empty()).then_some(0);
        while let Some(i) = cursor {
            let sym = symbols[i];
            let piece = &text[sym.start..sym.start + sym.len];
            match self.index.get(piece) {
                Some(&id) => out.push(id),
                // A vocabulary without a byte's token loses that byte (llama.cpp aborts).
                None => out.extend(piece.bytes().filter_map(|b| self.byte_token[b as usize])),
            }
            cursor = sym.next;
        }
    }

    fn push_bigram(
        &self,
        text: &str,
        symbols: &[Symbol],
        left: usize,
        right: usize,
        queue: &mut BinaryHeap<Bigram>,
    ) {
        let start = symbols[left].start;
        let len = symbols[left].len + symbols[right].len;
        if let Some(&id) = self.index.get(&text[start..start + len]) {
            queue.push(Bigram {
                score: self.scores[id as usize],
                left,
                right,
                len,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(vocab: &[(&str, f32)]) -> SpmModel {
        let tokens: Vec<String> = vocab.iter().map(|(t, _)| t.to_string()).collect();
        let scores: Vec<f32> = vocab.iter().map(|&(_, s)| s).collect();
        SpmModel::new(&tokens, &scores).unwrap()
    }

    fn encode(m: &SpmModel, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        m.encode(text, &mut out);
        out
    }

    #[test]
    fn highest_scoring_token_merges_first() {
        let m = model(&[
            ("a", 0.0),
            ("b", 0.0),
            ("c", 0.0),
            ("ab", -2.0),
            ("bc", -1.0),
        ]);
        assert_eq!(encode(&m, "abc"), [0, 4]);
        let m = model(&[
            ("a", 0.0),
            ("b", 0.0),
            ("c", 0.0),
            ("ab", -1.0),
            ("bc", -2.0),
        ]);
        assert_eq!(encode(&m, "abc"), [3, 2]);
    }

    #[test]
    fn equal_scores_merge_leftmost_first() {
        let m = model(&[("a", 0.0), ("aa", -1.0)]);
        assert_eq!(encode(&m, "aaa"), [1, 0]);
    }

    #[test]
    fn merges_need_no_intermediate_pair_rule() {
        // "abc" forms from "ab" + "c" even though only tokens, not merge rules, exist.
        let m = model(&[
            ("a", 0.0),
            ("b", 0.0),
            ("c", 0.0),
            ("ab", -1.0),
            ("abc", -3.0),
        ]);
        assert_eq!(encode(&m, "abc"), [4]);
    }

    #[test]
    fn unknown_characters_become_byte_tokens() {
        let mut vocab: Vec<(String, f32)> =
            (0..=255u8).map(|b| (format!("<0x{b:02X}>"), 0.0)).collect();
        vocab.push(("x".into(), 0.0));
        let tokens: Vec<String> = vocab.iter().map(|(t, _)| t.clone()).collect();
        let scores: Vec<f32> = vocab.iter().map(|&(_, s)| s).collect();
        let m = SpmModel::new(&tokens, &scores).unwrap();
        assert_eq!(encode(&m, "xé"), [256, 0xC3, 0xA9]);
        assert!(SpmModel::new(&tokens, &scores[1..]).is_err());
    }
}
