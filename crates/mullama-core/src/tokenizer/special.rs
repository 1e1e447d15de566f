//! Special-token partitioning (llama.cpp's `tokenizer_st_partition`): before any
//! pre-tokenization, occurrences of special token texts are cut out of the input and
//! emitted as single tokens. Tokens are tried longest first, each over every remaining
//! text fragment; control and unknown tokens take part only when parsing specials,
//! user-defined tokens always do.

use std::ops::Range;

use aho_corasick::AhoCorasick;

/// A piece of the input after partitioning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fragment {
    /// Plain text: a byte range of the input.
    Text(Range<usize>),
    Token(u32),
}

pub struct SpecialTokens {
    /// (token id, text, is control-or-unknown), longest text first, then lowest id.
    tokens: Vec<(u32, String, bool)>,
    /// Finds which special texts occur at all, so only those are searched one by one.
    finder: Option<AhoCorasick>,
}

impl SpecialTokens {
    /// `tokens`: (id, text, is control-or-unknown) of every control, unknown and
    /// user-defined token. Empty texts are ignored.
    pub fn new(mut tokens: Vec<(u32, String, bool)>) -> Self {
        tokens.retain(|(_, text, _)| !text.is_empty());
        tokens.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        let finder = if tokens.is_empty() {
            None
        } else {
            AhoCorasick::new(tokens.iter().map(|(_, t, _)| t.as_str())).ok()
        };
        Self { tokens, finder }
    }

    pub fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let mut fragments = if text.is_empty() {
            Vec::new()
        } else {
            vec![Fragment::Text(0..text.len())]
        };
        let Some(finder) = &self.finder else {
            return fragments;
        };
        let mut present = vec![false; self.tokens.len()];
        let mut any = false;
        for m in finder.find_overlapping_iter(text) {
            present[m.pattern().as_usize()] = true;
            any = true;
        }
        if !any {
            return fragments;
        }
        for (i, (id, special_text, is_control)) in self.tokens.iter().enumerate() {
            if !present[i] || (*is_control && !parse_special) {
                continue;
            }
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                let Fragment::Text(range) = fragment else {
                    next.push(fragment);
                    continue;
                };
                let mut start = range.start;
                while let Some(found) = text[start..range.end].find(special_text.as_str()) {
                    let at = start + found;
                    if at > start {
                        next.push(Fragment::Text(start..at));
                    }
                    next.push(Fragment::Token(*id));
                    start = at + special_text.len();
                }
                if start < range.end {
                    next.push(Fragment::Text(start..range.end));
                }
            }
            fragments = next;
        }
        fragments
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_special_wins_and_control_tokens_need_parse_special() {
        let specials = SpecialTokens::new(vec![
            (1, "<a>".into(), true),
            (2, "<a><b>".into(), true),
            (3, "[u]".into(), false),
        ]);
        let text = "x<a><b>y<a>[u]";
        assert_eq!(
            specials.partition(text, true),
            [
                Fragment::Text(0..1),
                Fragment::Token(2),
                Fragment::Text(7..8),
                Fragment::Token(1),
                Fragment::Token(3)
            ]
        );
        assert_eq!(
            specials.partition(text, false),
            [Fragment::Text(0..11), Fragment::Token(3)]
        );
        assert!(specials.partition("", true).is_empty());
    }
}
