//! The Llama 3 family's split: the regex
//! `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
//! and Qwen2's, identical but for `\p{N}` (one digit per word).
//!
//! llama.cpp runs Llama 3's with a hand-written matcher (`unicode_regex_split_custom_llama3`)
//! and Qwen2's with `std::regex` over a text where every non-ASCII codepoint is collapsed
//! to one byte standing for its class. Both behave as the leftmost-first regex itself, so
//! one matcher serves both, parameterised by the digit run length. What a regex engine
//! decides on its own comes from the caller, so the same matcher also runs these patterns
//! as tokenizer.json files state them (`hf_split`, with the `regex` crate's answers):
//! - the classes of each codepoint (for GGUF files llama.cpp's `CharClass` table, with
//!   Unicode White_Space for `\s`, which is what `std::regex` sees once non-ASCII spaces
//!   are collapsed to `\v`);
//! - how a contraction letter folds: llama.cpp compares the lowercased ASCII letter (its
//!   `'[sS]|'[tT]|...` rewrite of `(?i:...)`), a Unicode regex engine also folds U+017F.

use std::ops::Range;

use super::CharClass;

fn is_line_break(c: Option<char>) -> bool {
    matches!(c, Some('\r' | '\n'))
}

/// `[^\s\p{L}\p{N}]`, false outside the segment.
fn is_other(k: CharClass) -> bool {
    k.is_defined() && !(k.is_whitespace() || k.is_letter() || k.is_number())
}

/// Splits one segment (char indices `seg`) and appends its words to `words`.
/// `max_digits` is the `\p{N}{1,max_digits}` bound: 3 for Llama 3, 1 for Qwen2.
/// `fold` maps a codepoint to the ASCII letter `(?i:...)` matches it as (else itself).
pub(super) fn split(
    chars: &[(usize, char)],
    classes: &[CharClass],
    seg: Range<usize>,
    max_digits: usize,
    fold: fn(char) -> char,
    words: &mut Vec<Range<usize>>,
) {
    let end = seg.end;
    let char_at = |p: usize| {
        if (seg.start..end).contains(&p) {
            Some(chars[p].1)
        } else {
            None
        }
    };
    let class_at = |p: usize| {
        if (seg.start..end).contains(&p) {
            classes[p]
        } else {
            CharClass::NONE
        }
    };
    let mut pos = seg.start;
    while pos < end {
        let start = pos;
        let c = chars[pos].1;
        let class = classes[pos];
        if let Some(len) = contraction_len(c, char_at(pos + 1), char_at(pos + 2), fold) {
            pos += len;
        } else if class.is_letter()
            || (!is_line_break(Some(c)) && !class.is_number() && class_at(pos + 1).is_letter())
        {
            // [^\r\n\p{L}\p{N}]?\p{L}+ : the optional lead is the char at `start`.
            pos += 1;
            while class_at(pos).is_letter() {
                pos += 1;
            }
        } else if class.is_number() {
            while pos - start < max_digits && class_at(pos).is_number() {
                pos += 1;
            }
        } else if is_other(class) || (c == ' ' && is_other(class_at(pos + 1))) {
            // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
            pos += usize::from(c == ' ');
            while is_other(class_at(pos)) {
                pos += 1;
            }
            while is_line_break(char_at(pos)) {
                pos += 1;
            }
        } else {
            pos = whitespace_end(pos, end, &char_at, &class_at);
        }
        words.push(start..pos);
    }
}

/// End of the whitespace word starting at `pos`: `\s*[\r\n]+` (up to the last line break
/// of the run), else `\s+(?!\S)` (the run minus the space that leads the next word),
/// else `\s+`.
fn whitespace_end(
    pos: usize,
    end: usize,
    char_at: &dyn Fn(usize) -> Option<char>,
    class_at: &dyn Fn(usize) -> CharClass,
) -> usize {
    let mut run_end = pos;
    let mut after_last_break = None;
    while class_at(run_end).is_whitespace() {
        if is_line_break(char_at(run_end)) {
            after_last_break = Some(run_end + 1);
        }
        run_end += 1;
    }
    match after_last_break {
        Some(p) => p,
        None if run_end - pos > 1 && run_end < end => run_end - 1,
        // A codepoint of no class never occurs; taking it alone keeps the loop moving.
        None if run_end == pos => pos + 1,
        None => run_end,
    }
}

/// Length of `(?i:'s|'t|'re|'ve|'m|'ll|'d)` starting at `c`, if one starts there.
fn contraction_len(
    c: char,
    next: Option<char>,
    next2: Option<char>,
    fold: fn(char) -> char,
) -> Option<usize> {
    if c != '\'' {
        return None;
    }
    let next = fold(next?);
    let next2 = next2.map(fold);
    match (next, next2) {
        ('s' | 't' | 'm' | 'd', _) => Some(2),
        ('r', Some('e')) | ('v', Some('e')) | ('l', Some('l')) => Some(3),
        _ => None,
    }
}
