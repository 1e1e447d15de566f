//! The pre-tokenizer of a folder tokenizer: the file's own, read by the `tokenizers`
//! crate, except that a `Split` on Llama 3's or Qwen 2's regex (the pattern of most MLX
//! folders) is run by the hand-written matcher of `pretokenize` instead of fancy-regex.
//! fancy-regex's backtracking engine is most of the encode time of these files, and
//! encode speed is measured against the `tokenizers` package.
//!
//! Ids stay the crate's: only the finding of matches changes, and every question the regex
//! engine would answer is answered from the `regex` crate's own Unicode tables, which
//! fancy-regex hands its classes to: `\p{L}`, `\p{N}`, `\s`, and which codepoints
//! `(?i:'s|...)` folds onto a contraction letter. Other patterns, and these with `invert`,
//! stay the crate's.

use std::sync::OnceLock;

use regex_syntax::hir::{Class, HirKind};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use tokenizers::tokenizer::pattern::Pattern;
use tokenizers::{
    Offsets, PreTokenizedString, PreTokenizer, PreTokenizerWrapper, SplitDelimiterBehavior,
};

use super::pretokenize::llama3_family_split;
use super::unicode::CharClass;

/// The patterns exactly as Meta's and Qwen's tokenizer.json files (and transformers'
/// conversions) spell them; any other spelling goes to fancy-regex.
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A tokenizer.json `pre_tokenizer`, for `tokenizers::TokenizerImpl`.
#[derive(Clone, Debug)]
pub(super) enum FolderPreTokenizer {
    /// As the crate reads it.
    Crate(PreTokenizerWrapper),
    /// A `Sequence` with a recognised `Split` among its parts, applied in order as the
    /// crate's `Sequence` applies them.
    Sequence(Vec<FolderPreTokenizer>),
    Split(FamilySplit),
}

/// A `Split` on Llama 3's (`max_digits` 3) or Qwen 2's (1) regex, not inverted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FamilySplit {
    max_digits: usize,
    behavior: SplitDelimiterBehavior,
}

impl FamilySplit {
    fn recognise(v: &Value) -> Option<Self> {
        if v.get("invert").and_then(Value::as_bool) != Some(false) {
            return None;
        }
        let max_digits = match v.get("pattern")?.get("Regex")?.as_str()? {
            LLAMA3_PATTERN => 3,
            QWEN2_PATTERN => 1,
            _ => return None,
        };
        let behavior = SplitDelimiterBehavior::deserialize(v.get("behavior")?).ok()?;
        Some(Self {
            max_digits,
            behavior,
        })
    }
}

impl FolderPreTokenizer {
    fn from_value(v: Value) -> serde_json::Result<Self> {
        match v.get("type").and_then(Value::as_str) {
            Some("Split") => {
                if let Some(split) = FamilySplit::recognise(&v) {
                    return Ok(Self::Split(split));
                }
            }
            Some("Sequence") => {
                let parts = v.get("pretokenizers").and_then(Value::as_array);
                if let Some(parts) = parts.filter(|p| p.iter().any(contains_family_split)) {
                    return parts
                        .iter()
                        .cloned()
                        .map(Self::from_value)
                        .collect::<serde_json::Result<_>>()
                        .map(Self::Sequence);
                }
            }
            _ => {}
        }
        serde_json::from_value(v).map(Self::Crate)
    }

    /// Whether some step is run by the hand-written matcher.
    #[cfg(test)]
    fn uses_family_split(&self) -> bool {
        match self {
            Self::Crate(_) => false,
            Self::Split(_) => true,
            Self::Sequence(parts) => parts.iter().any(Self::uses_family_split),
        }
    }
}

fn contains_family_split(v: &Value) -> bool {
    match v.get("type").and_then(Value::as_str) {
        Some("Split") => FamilySplit::recognise(v).is_some(),
        Some("Sequence") => v
            .get("pretokenizers")
            .and_then(Value::as_array)
            .is_some_and(|p| p.iter().any(contains_family_split)),
        _ => false,
    }
}

impl<'de> Deserialize<'de> for FolderPreTokenizer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(value).map_err(serde::de::Error::custom)
    }
}

impl PreTokenizer for FolderPreTokenizer {
    fn pre_tokenize(&self, pretokenized: &mut PreTokenizedString) -> tokenizers::Result<()> {
        match self {
            Self::Crate(p) => p.pre_tokenize(pretokenized),
            Self::Sequence(parts) => parts.iter().try_for_each(|p| p.pre_tokenize(pretokenized)),
            Self::Split(split) => {
                pretokenized.split(|_, normalized| normalized.split(split, split.behavior))
            }
        }
    }
}

impl Pattern for &FamilySplit {
    /// What the crate's `Pattern for &SysRegex` returns for this regex: every codepoint is
    /// in some match (the last alternatives take any whitespace, the others the rest), so
    /// the words are all matches, and an empty text is one empty non-match.
    fn find_matches(&self, inside: &str) -> tokenizers::Result<Vec<(Offsets, bool)>> {
        if inside.is_empty() {
            return Ok(vec![((0, 0), false)]);
        }
        let classes = regex_classes();
        let words = llama3_family_split(inside, self.max_digits, |c| classes.of(c), regex_fold);
        Ok(words
            .into_iter()
            .map(|w| ((w.start, w.end), true))
            .collect())
    }
}

/// `(?i:...)` in the `regex` crate matches a contraction letter by Unicode simple case
/// folding: the ASCII pair, and U+017F (long s) for `s` (the tests check that against
/// regex-syntax for every letter the patterns use).
fn regex_fold(c: char) -> char {
    if c == '\u{17F}' {
        's'
    } else {
        c.to_ascii_lowercase()
    }
}

const LETTER: u8 = 1;
const NUMBER: u8 = 2;
const SPACE: u8 = 4;
const BMP: usize = 0x10000;

/// The `regex` crate's `\p{L}`, `\p{N}` and `\s`: a flag byte per BMP codepoint, sorted
/// ranges above it.
struct RegexClasses {
    bmp: Box<[u8]>,
    astral: Vec<(u32, u32, u8)>,
}

impl RegexClasses {
    fn build() -> Self {
        let mut bmp = vec![0u8; BMP].into_boxed_slice();
        let mut astral = Vec::new();
        for (pattern, flag) in [(r"\p{L}", LETTER), (r"\p{N}", NUMBER), (r"\s", SPACE)] {
            for (start, end) in class_ranges(pattern) {
                for cp in start..=end.min(BMP as u32 - 1) {
                    bmp[cp as usize] |= flag;
                }
                if end >= BMP as u32 {
                    astral.push((start.max(BMP as u32), end, flag));
                }
            }
        }
        // The three classes share no codepoint, so the ranges do not overlap.
        astral.sort_unstable();
        Self { bmp, astral }
    }

    fn flags(&self, c: char) -> u8 {
        let cp = c as u32;
        if let Some(&f) = self.bmp.get(cp as usize) {
            return f;
        }
        let i = self.astral.partition_point(|&(start, _, _)| start <= cp);
        match i.checked_sub(1).map(|i| self.astral[i]) {
            Some((_, end, f)) if cp <= end => f,
            _ => 0,
        }
    }

    fn of(&self, c: char) -> CharClass {
        let f = self.flags(c);
        CharClass::from_flags(f & LETTER != 0, f & NUMBER != 0, f & SPACE != 0)
    }
}

fn regex_classes() -> &'static RegexClasses {
    static CLASSES: OnceLock<RegexClasses> = OnceLock::new();
    CLASSES.get_or_init(RegexClasses::build)
}

/// The codepoint ranges regex-syntax reads a one-class pattern as.
fn class_ranges(pattern: &str) -> Vec<(u32, u32)> {
    let hir = regex_syntax::Parser::new()
        .parse(pattern)
        .expect("a Unicode class regex-syntax knows");
    match hir.kind() {
        HirKind::Class(Class::Unicode(class)) => class
            .ranges()
            .iter()
            .map(|r| (r.start() as u32, r.end() as u32))
            .collect(),
        other => unreachable!("{pattern} is not one Unicode class: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use tokenizers::utils::SysRegex;

    fn split_json(pattern: &str, invert: bool) -> Value {
        json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated",
               "invert": invert})
    }

    fn family(pattern: &str) -> FamilySplit {
        FamilySplit::recognise(&split_json(pattern, false)).unwrap()
    }

    type Matches = Vec<(Offsets, bool)>;

    /// The crate's own matches for `pattern` (fancy-regex), and the hand-written ones.
    fn both(pattern: &str, regex: &SysRegex, text: &str) -> (Matches, Matches) {
        let fast = family(pattern);
        (
            regex.find_matches(text).unwrap(),
            (&fast).find_matches(text).unwrap(),
        )
    }

    #[test]
    fn llama3_and_qwen2_splits_are_recognised_inside_sequences_only_as_spelled() {
        let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
                                "trim_offsets": true, "use_regex": false});
        for pattern in [LLAMA3_PATTERN, QWEN2_PATTERN] {
            let seq = json!({"type": "Sequence",
                             "pretokenizers": [split_json(pattern, false), byte_level]});
            assert!(FolderPreTokenizer::from_value(seq)
                .unwrap()
                .uses_family_split());
            let inverted = json!({"type": "Sequence",
                                  "pretokenizers": [split_json(pattern, true), byte_level]});
            assert!(!FolderPreTokenizer::from_value(inverted)
                .unwrap()
                .uses_family_split());
        }
        let other = split_json(&LLAMA3_PATTERN.replace("{1,3}", "{1,2}"), false);
        assert!(!FolderPreTokenizer::from_value(other)
            .unwrap()
            .uses_family_split());
        let bad = json!({"type": "Sequence", "pretokenizers": [
            split_json(LLAMA3_PATTERN, false), {"type": "NoSuchStep"}]});
        assert!(FolderPreTokenizer::from_value(bad).is_err());
    }

    #[test]
    fn contraction_folding_is_regex_syntaxs() {
        for letter in ['s', 't', 'r', 'e', 'v', 'm', 'l', 'd'] {
            let folded: Vec<char> = class_ranges(&format!("(?i:{letter})"))
                .into_iter()
                .flat_map(|(a, b)| a..=b)
                .filter_map(char::from_u32)
                .collect();
            let mut want = vec![letter.to_ascii_uppercase(), letter];
            if letter == 's' {
                want.push('\u{17F}');
            }
            assert_eq!(folded, want, "(?i:{letter})");
            assert!(folded.iter().all(|&c| regex_fold(c) == letter));
        }
    }

    /// Every codepoint's class, asked of fancy-regex itself in one pass per class.
    #[test]
    fn classes_equal_fancy_regexs_for_every_codepoint() {
        let all: String = (0..=0x10FFFFu32).filter_map(char::from_u32).collect();
        let classes = regex_classes();
        for (pattern, flag) in [(r"\p{L}", LETTER), (r"\p{N}", NUMBER), (r"\s", SPACE)] {
            let regex = SysRegex::new(pattern).unwrap();
            let mut matched = vec![false; 0x110000];
            for (start, end) in regex.find_iter(&all) {
                for c in all[start..end].chars() {
                    matched[c as usize] = true;
                }
            }
            for c in all.chars() {
                assert_eq!(
                    classes.flags(c) & flag != 0,
                    matched[c as usize],
                    "{pattern} on U+{:04X}",
                    c as u32
                );
            }
        }
    }

    /// Codepoints in the places where their class decides the split: after a letter, a
    /// digit, a space, a line break, punctuation, an apostrophe; doubled; as a contraction.
    /// All of the first planes' scripts, and elsewhere both ends of every run of one class
    /// (the classes themselves are checked for every codepoint above).
    #[test]
    fn codepoints_split_as_fancy_regex_splits_them() {
        let classes = regex_classes();
        let flags = |cp: u32| char::from_u32(cp).map(|c| classes.flags(c));
        let cps: Vec<char> = (0..=0x10FFFFu32)
            .filter(|&cp| {
                cp < 0x2000 || flags(cp) != flags(cp.wrapping_sub(1)) || flags(cp) != flags(cp + 1)
            })
            .filter_map(char::from_u32)
            .collect();
        assert!(cps.len() > 0x2000, "{}", cps.len());
        for (pattern, name) in [(LLAMA3_PATTERN, "llama3"), (QWEN2_PATTERN, "qwen2")] {
            let regex = SysRegex::new(pattern).unwrap();
            for chunk in cps.chunks(512) {
                let text: String = chunk
                    .iter()
                    .map(|c| format!("'{c}a{c}1{c} {c}\n{c}!{c}{c}'r{c}'l{c}  {c}\r\n {c}"))
                    .collect();
                let (want, got) = both(pattern, &regex, &text);
                assert!(want == got, "{name}: {text:?}");
            }
        }
    }

    fn varied_char() -> impl Strategy<Value = char> {
        prop_oneof![
            3 => prop::sample::select(
                "aZsStTrReEvVmMlLdDxk'''   \n\r\t0123456789.,!?-(\u{17F}".chars().collect::<Vec<_>>()
            ),
            2 => prop::sample::select(
                "éßЖж日本語한국어مرحباשלוםελ\u{301}\u{303}\u{200d}😀👍🏽🇫²½٣Ⅻ\u{a0}\u{3000}\u{2028}\u{85}\u{b}\u{c}\u{1680}\u{200b}\u{feff}\u{212a}"
                    .chars()
                    .collect::<Vec<_>>()
            ),
            1 => any::<char>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn varied_text_splits_as_fancy_regex_splits_it(
            chars in prop::collection::vec(varied_char(), 0..48)
        ) {
            static REGEXES: OnceLock<[SysRegex; 2]> = OnceLock::new();
            let regexes = REGEXES.get_or_init(|| {
                [LLAMA3_PATTERN, QWEN2_PATTERN].map(|p| SysRegex::new(p).unwrap())
            });
            let text: String = chars.into_iter().collect();
            for (pattern, regex) in [LLAMA3_PATTERN, QWEN2_PATTERN].into_iter().zip(regexes) {
                let (want, got) = both(pattern, regex, &text);
                prop_assert_eq!(want, got, "{:?}", text);
            }
        }
    }
}
