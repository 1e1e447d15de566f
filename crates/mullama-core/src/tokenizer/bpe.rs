//! Byte-pair merging of one pre-tokenized, byte-level spelled word, done by the Hugging
//! Face `tokenizers` crate's BPE model, made to agree with llama.cpp's
//! `llm_tokenizer_bpe_session` exactly.
//!
//! Both merge the adjacent pair with the lowest rank, leftmost on ties, and both treat a
//! queued pair as stale only when the text it would produce changed, so on a vocabulary
//! that holds every merge part and result they give the same tokens. llama.cpp is looser
//! about vocabularies than the crate, and three adaptations keep it exact there too:
//!
//! - A merge part or result missing from the vocabulary still merges in llama.cpp (it
//!   compares strings); the crate refuses such merges. Those strings get pseudo ids past
//!   the vocabulary, and a word ending on one falls back like llama.cpp does: each ASCII
//!   byte of its text as its one-byte token, other bytes dropped.
//! - The 256 byte-level characters get pseudo ids when missing, so no character of a
//!   word is ever unknown to the crate (it would drop it; llama.cpp keeps it as a symbol).
//! - A pair listed twice keeps its first rank (llama.cpp's `emplace`); the crate would
//!   keep the last.

use pseudo_vocab::PseudoVocab;
use tokenizers::models::bpe::BPE;
use tokenizers::Model;

use crate::error::{CoreError, Result};

const NO_TOKEN: u32 = u32::MAX;

pub struct BpeModel {
    model: BPE,
    /// Number of real tokens; ids from here on are pseudo ids.
    vocab_size: u32,
    /// Texts of the pseudo ids, `vocab_size` first.
    pseudo_texts: Vec<String>,
    /// Token of each single ASCII byte, for the fallback.
    ascii_token: [u32; 128],
}

impl BpeModel {
    /// `tokens` are the token texts by id (the last id wins for a duplicated text, as in
    /// llama.cpp); `merges` are "left right" strings in rank order; `byte_chars` are the
    /// 256 characters byte-level spelling can produce.
    pub fn new(tokens: &[String], merges: &[String], byte_chars: &[char]) -> Result<Self> {
        let mut vocab = PseudoVocab::new(tokens);
        let mut pairs = Vec::with_capacity(merges.len());
        let mut seen = std::collections::HashSet::with_capacity(merges.len());
        for (rank, merge) in merges.iter().enumerate() {
            // llama.cpp splits at the first space after the first byte, so a merge whose
            // left part is a space spelled literally still parses.
            let Some(split) = merge.bytes().skip(1).position(|b| b == b' ').map(|i| i + 1) else {
                return Err(CoreError::Tokenizer {
                    message: format!("merge #{rank} {merge:?} is not two space-separated parts"),
                });
            };
            let (left, right) = (&merge[..split], &merge[split + 1..]);
            if !seen.insert((left, right)) {
                continue;
            }
            vocab.ensure(left);
            vocab.ensure(right);
            vocab.ensure(&merge_text(left, right));
            pairs.push((left.to_owned(), right.to_owned()));
        }
        let mut buf = [0u8; 4];
        for c in byte_chars {
            vocab.ensure(c.encode_utf8(&mut buf));
        }
        let mut ascii_token = [NO_TOKEN; 128];
        for (b, slot) in ascii_token.iter_mut().enumerate() {
            if let Some(id) = vocab.real_id(&(b as u8 as char).to_string()) {
                *slot = id;
            }
        }
        let (map, pseudo_texts) = vocab.finish();
        let model = BPE::builder()
            .vocab_and_merges(map, pairs)
            .build()
            .map_err(|e| CoreError::Tokenizer {
                message: format!("cannot build the BPE model: {e}"),
            })?;
        Ok(Self {
            model,
            vocab_size: tokens.len() as u32,
            pseudo_texts,
            ascii_token,
        })
    }

    /// Appends the tokens of one pre-tokenized, byte-level spelled word to `out`.
    pub fn encode_word(&self, word: &str, out: &mut Vec<u32>) {
        // Every character of `word` is in the model's vocabulary, and the model has no
        // dropout, so tokenizing cannot fail.
        let Ok(tokens) = self.model.tokenize(word) else {
            unreachable!("BPE without unknown characters or dropout cannot fail");
        };
        for token in tokens {
            if token.id < self.vocab_size {
                out.push(token.id);
                continue;
            }
            let text = &self.pseudo_texts[(token.id - self.vocab_size) as usize];
            out.extend(
                text.bytes()
                    .filter(u8::is_ascii)
                    .map(|b| self.ascii_token[b as usize])
                    .filter(|&t| t != NO_TOKEN),
            );
        }
    }
}

fn merge_text(left: &str, right: &str) -> String {
    let mut s = String::with_capacity(left.len() + right.len());
    s.push_str(left);
    s.push_str(right);
    s
}

mod pseudo_vocab {
    use tokenizers::models::bpe::Vocab;

    /// Token text -> id, growing pseudo ids past the real vocabulary on demand.
    pub struct PseudoVocab {
        map: Vocab,
        real: u32,
        pseudo: Vec<String>,
    }

    impl PseudoVocab {
        pub fn new(tokens: &[String]) -> Self {
            let mut map = Vocab::with_capacity(tokens.len() + 256);
            for (id, text) in tokens.iter().enumerate() {
                map.insert(text.clone(), id as u32);
            }
            Self {
                map,
                real: tokens.len() as u32,
                pseudo: Vec::new(),
            }
        }

        pub fn ensure(&mut self, text: &str) {
            if !self.map.contains_key(text) {
                let id = self.real + self.pseudo.len() as u32;
                self.map.insert(text.to_owned(), id);
                self.pseudo.push(text.to_owned());
            }
        }

        pub fn real_id(&self, text: &str) -> Option<u32> {
            self.map.get(text).copied().filter(|&id| id < self.real)
        }

        pub fn finish(self) -> (Vocab, Vec<String>) {
            (self.map, self.pseudo)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(tokens: &[&str], merges: &[&str]) -> BpeModel {
        let tokens: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
        let merges: Vec<String> = merges.iter().map(|m| m.to_string()).collect();
        BpeModel::new(&tokens, &merges, &[]).unwrap()
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
    fn a_duplicated_merge_keeps_its_first_rank() {
        // "b c" listed again after "a b": its first rank (0) still beats "a b".
        let m = model(&["a", "b", "c", "ab", "bc"], &["b c", "a b", "b c"]);
        assert_eq!(encode(&m, "abc"), [0, 4]);
    }

    #[test]
    fn merges_through_strings_outside_the_vocabulary() {
        // "xy" is no token, yet "x y" then "xy z" merge to the token "xyz".
        let m = model(&["x", "y", "z", "xyz"], &["x y", "xy z"]);
        assert_eq!(encode(&m, "xyz"), [3]);
        // A word ending on the pseudo symbol "xy" falls back to its ASCII bytes.
        assert_eq!(encode(&m, "xy"), [0, 1]);
    }

    #[test]
    fn unknown_characters_fall_back_to_ascii_bytes_or_vanish() {
        let m = model(&["x", "y"], &[]);
        assert_eq!(encode(&m, "xzy"), [0, 1]);
        assert_eq!(encode(&m, "xéy"), [0, 1]);
        assert!(BpeModel::new(&[], &["nospace".to_string()], &[]).is_err());
    }
}
