//! Codepoint classes as llama.cpp's pre-tokenizers see them: one general-category bit per
//! codepoint (from the generated table) plus the Unicode White_Space set.

#[path = "unicode_flags_table.rs"]
mod table;

// Category bits, in the order `gen_unicode_flags.py` assigns them. The pre-tokenizers
// only ask about letters and numbers; the rest document the table (and its tests).
const NUMBER: u8 = 1 << 0;
const LETTER: u8 = 1 << 1;
#[cfg(test)]
const ACCENT_MARK: u8 = 1 << 3;
#[cfg(test)]
const SYMBOL: u8 = 1 << 5;
#[cfg(test)]
const CONTROL: u8 = 1 << 6;
/// Not a table bit: marks a codepoint of another table that is neither letter nor number.
const OTHER: u8 = 1 << 7;

/// The classes of one codepoint. `NONE` marks "outside the current segment", which no
/// real codepoint has: every codepoint (even unassigned ones, as \p{C}) has a category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CharClass {
    category: u8,
    whitespace: bool,
}

impl CharClass {
    pub const NONE: CharClass = CharClass {
        category: 0,
        whitespace: false,
    };

    pub fn of(c: char) -> CharClass {
        CharClass {
            category: category_bits(c as u32),
            whitespace: is_whitespace(c),
        }
    }

    /// The class another table gives (the `regex` crate's, for tokenizer.json patterns).
    pub fn from_flags(letter: bool, number: bool, whitespace: bool) -> CharClass {
        let mut category = 0;
        if letter {
            category |= LETTER;
        }
        if number {
            category |= NUMBER;
        }
        CharClass {
            // A real codepoint is never `NONE`.
            category: if category == 0 { OTHER } else { category },
            whitespace,
        }
    }

    pub fn is_letter(self) -> bool {
        self.category & LETTER != 0
    }
    pub fn is_number(self) -> bool {
        self.category & NUMBER != 0
    }
    pub fn is_whitespace(self) -> bool {
        self.whitespace
    }
    /// Any real codepoint (as opposed to `NONE`).
    pub fn is_defined(self) -> bool {
        self.category != 0 || self.whitespace
    }
}

fn category_bits(cpt: u32) -> u8 {
    let runs = &table::CATEGORY_RUNS;
    // The run containing `cpt` is the last one starting at or before it.
    let idx = runs.partition_point(|&(start, _)| start <= cpt);
    runs[idx.saturating_sub(1)].1
}

/// Unicode White_Space (what the `regex` module's `\s` matches, llama.cpp's list).
fn is_whitespace(c: char) -> bool {
    matches!(
        c as u32,
        0x09..=0x0D | 0x20 | 0x85 | 0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_match_unicode_categories() {
        assert!(CharClass::of('a').is_letter());
        assert!(CharClass::of('é').is_letter());
        assert!(CharClass::of('代').is_letter());
        assert!(CharClass::of('7').is_number());
        assert!(CharClass::of('²').is_number());
        assert!(CharClass::of('٣').is_number());
        assert!(CharClass::of(' ').is_whitespace());
        assert!(CharClass::of('\u{a0}').is_whitespace());
        assert!(!CharClass::of('\u{200b}').is_whitespace());
        let comma = CharClass::of(',');
        assert!(comma.is_defined() && !comma.is_letter() && !comma.is_number());
        assert_eq!(category_bits('\u{301}' as u32), ACCENT_MARK);
        assert_eq!(category_bits('😀' as u32), SYMBOL);
        assert_eq!(category_bits('\n' as u32), CONTROL);
        assert_eq!(category_bits(0x10FFFF), CONTROL);
        assert!(!CharClass::NONE.is_defined());
    }
}
