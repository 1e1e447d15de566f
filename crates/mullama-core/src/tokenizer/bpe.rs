//! Byte-pair merging exactly as llama.cpp's `llm_tokenizer_bpe_session` does it: start
//! from one symbol per character of the (byte-level spelled) word, repeatedly merge the
//! adjacent pair with the lowest merge rank (leftmost on ties), then map each final
//! symbol to its token, falling back to one token per byte for symbols the vocabulary
//! lacks.
//!
//! Strings are interned once at construction so a merge lookup is one hash probe on a
//! pair of integers instead of building strings per candidate pair.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::error::{CoreError, Result};

const NO_TOKEN: u32 = u32::MAX;

pub struct BpeModel {
    /// Interned string id -> token id (NO_TOKEN when the string is only a merge part).
    symbol_token: Vec<u32>,
    symbol_index: HashMap<String, u32>,
    /// (left symbol, right symbol) -> (rank, merged symbol).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Token of each single ASCII byte, for the byte fallback.
    ascii_token: [u32; 128],
}

/// One symbol of the word being merged.
#[derive(Clone, Copy)]
struct Symbol {
    /// Interned id of its text, or None for a character no merge mentions.
    interned: Option<u32>,
    start: usize,
    end: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

impl BpeModel {
    /// `token_index` maps token text to id (duplicates: the last id wins, as in llama.cpp);
    /// `merges` are "left right" strings in rank order.
    pub fn new(token_index: &HashMap<String, u32>, merges: &[String]) -> Result<Self> {
        let mut model = Self {
            symbol_token: Vec::with_capacity(token_index.len() + merges.len() / 4),
            symbol_index: HashMap::with_capacity(token_index.len() + merges.len() / 4),
            merges: HashMap::with_capacity(merges.len()),
            ascii_token: [NO_TOKEN; 128],
        };
        for (text, &id) in token_index {
            let sym = model.intern(text);
            model.symbol_token[sym as usize] = id;
        }
        for (rank, merge) in merges.iter().enumerate() {
            // llama.cpp splits at the first space after the first byte, so a merge whose
            // left part is a space spelled literally still parses.
            let Some(split) = merge.bytes().skip(1).position(|b| b == b' ').map(|i| i + 1) else {
                return Err(CoreError::Tokenizer {
                    message: format!("merge #{rank} {merge:?} is not two space-separated parts"),
                });
            };
            let (left, right) = (&merge[..split], &merge[split + 1..]);
            let l = model.intern(left);
            let r = model.intern(right);
            let merged = model.intern(&format!("{left}{right}"));
            model.merges.entry((l, r)).or_insert((rank as u32, merged));
        }
        for b in 0u8..128 {
            if let Some(&id) = token_index.get((b as char).encode_utf8(&mut [0; 4]) as &str) {
                model.ascii_token[b as usize] = id;
            }
        }
        Ok(model)
    }

    fn intern(&mut self, text: &str) -> u32 {
        if let Some(&sym) = self.symbol_index.get(text) {
            return sym;
        }
        let sym = self.symbol_token.len() as u32;
        self.symbol_token.push(NO_TOKEN);
        self.symbol_index.insert(text.to_owned(), sym);
        sym
    }

    /// Appends the tokens of one pre-tokenized, byte-level spelled word to `out`.
    pub fn encode_word(&self, word: &str, out: &mut Vec<u32>) {
        let mut symbols: Vec<Symbol> = Vec::with_capacity(word.len());
        let mut buf = [0u8; 4];
        for (start, c) in word.char_indices() {
            let idx = symbols.len();
            symbols.push(Symbol {
                interned: self
                    .symbol_index
                    .get(c.encode_utf8(&mut buf) as &str)
                    .copied(),
                start,
                end: start + c.len_utf8(),
                prev: idx.checked_sub(1),
                next: None,
            });
            if idx > 0 {
                symbols[idx - 1].next = Some(idx);
            }
        }

        // (rank, left index, right index, left symbol, right symbol): the heap pops the
        // lowest rank, then the leftmost pair; stale entries are detected by the symbols.
        let mut queue = BinaryHeap::new();
        let candidate = |symbols: &[Symbol], left: usize, right: usize| {
            let (l, r) = (symbols[left].interned?, symbols[right].interned?);
            let &(rank, _) = self.merges.get(&(l, r))?;
            Some(Reverse((rank, left, right, l, r)))
        };
        for left in 1..symbols.len() {
            queue.extend(candidate(&symbols, left - 1, left));
        }
        while let Some(Reverse((_, left, right, l, r))) = queue.pop() {
            if symbols[left].interned != Some(l)
                || symbols[right].interned != Some(r)
                || symbols[left].next != Some(right)
            {
                continue;
            }
            let (_, merged) = self.merges[&(l, r)];
            let right_sym = symbols[right];
            symbols[right].interned = None;
            symbols[right].start = right_sym.end; // now empty
            let left_sym = &mut symbols[left];
            left_sym.interned = Some(merged);
            left_sym.end = right_sym.end;
            left_sym.next = right_sym.next;
            if let Some(n) = right_sym.next {
                symbols[n].prev = Some(left);
            }
            if let Some(p) = symbols[left].prev {
                queue.extend(candidate(&symbols, p, left));
            }
            if let Some(n) = symbols[left].next {
                queue.extend(candidate(&symbols, left, n));
            }
        }

        let mut cursor = if symbols.is_empty() { None } else { Some(0) };
        while let Some(i) = cursor {
            let sym = symbols[i];
            let token = sym
                .interned
                .map_or(NO_TOKEN, |s| self.symbol_token[s as usize]);
            if token != NO_TOKEN {
                out.push(token);
            } else {
                // llama.cpp looks each byte up as a one-byte token and skips misses.
                out.extend(
                    word.as_bytes()[sym.start..sym.end]
                        .iter()
                        .filter(|b| b.is_ascii())
                        .map(|&b| self.ascii_token[b as usize])
                        .filter(|&t| t != NO_TOKEN),
                );
            }
            cursor = sym.next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(tokens: &[&str], merges: &[&str]) -> BpeModel {
        let index = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        BpeModel::new(
            &index,
            &merges.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        )
        .unwrap()
    }

    fn encode(m: &BpeModel, word: &str) -> Vec<u32> {
        let mut out = Vec::new();
        m.encode_word(word, &mut out);
        out
    }

    #[test]
    fn merges_lowest_rank_first_and_leftmost_on_ties() {
        let m = model(&["a", "b", "c", "ab", "bc", "abc"], &["b c", "a b", "a bc"]);
        // "b c" has rank 0, so "abc" goes a + bc -> abc.
        assert_eq!(encode(&m, "abc"), [5]);
        let m = model(&["a", "aa", "aaa"], &["a a", "aa a"]);
        // leftmost pair first: (aa)(a) -> aaa; (aa)(aa) stays two tokens.
        assert_eq!(encode(&m, "aaa"), [2]);
        assert_eq!(encode(&m, "aaaa"), [1, 1]);
    }

    #[test]
    fn unknown_characters_fall_back_to_ascii_bytes_or_vanish() {
        let m = model(&["x", "y"], &[]);
        assert_eq!(encode(&m, "xzy"), [0, 1]);
        assert!(BpeModel::new(&HashMap::new(), &["nospace".to_string()]).is_err());
    }
}
