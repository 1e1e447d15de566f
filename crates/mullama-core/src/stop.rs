//! Stop-sequence scanning across token and character boundaries (aho-corasick), withholding
//! only the longest tail that could still begin a stop. Linear in bytes, whatever the number
//! of stops.
//!
//! The result equals "decode everything, cut at the first stop", where the first stop is the
//! one that STARTS earliest (ties: the shortest, i.e. the one that completes first; equal
//! strings: the lowest index).
//!
//! One automaton over the stops runs across pushes. In a standard (non-leftmost) Aho-Corasick
//! automaton every state is a trie node, i.e. a prefix of some stop, and the state after any
//! text is the longest suffix of that text which is a stop prefix. So the state alone tells
//! (a) how much tail must be withheld (that suffix's length, its "depth") and (b) which stops
//! end here (the longest one starts earliest). Both are tabulated per state up front.

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind, StartKind};

pub struct StopScanner {
    include_stop: bool,
    /// None when there are no stops: text passes straight through.
    automaton: Option<StopAutomaton>,
    state: StateID,
    /// Bytes of text scanned so far.
    position: usize,
    /// Scanned but unreleased text: bytes `position - held.len() .. position`.
    held: String,
    /// Earliest-starting complete stop seen so far, not yet final while a stop prefix that
    /// starts even earlier is still in progress.
    best: Option<StopMatch>,
    /// Set once the output is final: the index of the stop that ended it.
    matched: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
struct StopMatch {
    start: usize,
    len: usize,
    stop: usize,
}

struct StopAutomaton {
    dfa: DFA,
    /// DFA state ids are multiples of a power of two; shifting them gives a dense index.
    id_shift: u32,
    states: Vec<StateInfo>,
}

#[derive(Debug, Clone, Copy, Default)]
struct StateInfo {
    /// Length of the longest suffix of the text that is a prefix of a stop.
    depth: u32,
    /// Longest stop ending here (0 = none) and its index.
    full_len: u32,
    full_stop: u32,
}

impl StopAutomaton {
    /// Returns None when `stops` is empty.
    fn new(stops: &[String]) -> Option<Self> {
        // Equal stops share one pattern, reported as the lowest index.
        let mut patterns: Vec<&str> = Vec::new();
        let mut pattern_stop: Vec<usize> = Vec::new();
        for (index, stop) in stops.iter().enumerate() {
            if !patterns.contains(&stop.as_str()) {
                patterns.push(stop);
                pattern_stop.push(index);
            }
        }
        if patterns.is_empty() {
            return None;
        }
        let dfa = DFA::builder()
            .match_kind(MatchKind::Standard)
            .start_kind(StartKind::Unanchored)
            .prefilter(false)
            .build(&patterns)
            .expect("a DFA over a few non-empty stop strings always builds");
        let start = dfa
            .start_state(Anchored::No)
            .expect("the DFA was built with an unanchored start state");

        // Reading a stop prefix from the start state ends in that prefix's own trie node, so
        // walking every stop once visits every reachable state and tells its depth.
        let mut visited = vec![(start, 0u32)];
        for stop in &patterns {
            let mut state = start;
            for (depth, &byte) in stop.as_bytes().iter().enumerate() {
                state = dfa.next_state(Anchored::No, state, byte);
                visited.push((state, depth as u32 + 1));
            }
        }
        let id_shift = visited
            .iter()
            .map(|(state, _)| state.as_u32())
            .filter(|&id| id != 0)
            .map(u32::trailing_zeros)
            .min()
            .unwrap_or(0);
        let max_index = visited
            .iter()
            .map(|(state, _)| state.as_usize() >> id_shift)
            .max()
            .unwrap_or(0);
        let mut states = vec![StateInfo::default(); max_index + 1];
        for &(state, depth) in &visited {
            let info = &mut states[state.as_usize() >> id_shift];
            info.depth = depth;
            if !dfa.is_match(state) {
                continue;
            }
            for i in 0..dfa.match_len(state) {
                let pattern = dfa.match_pattern(state, i);
                let len = dfa.pattern_len(pattern) as u32;
                if len > info.full_len {
                    info.full_len = len;
                    info.full_stop = pattern_stop[pattern.as_usize()] as u32;
                }
            }
        }
        Some(Self {
            dfa,
            id_shift,
            states,
        })
    }

    #[inline]
    fn info(&self, state: StateID) -> StateInfo {
        let index = state.as_usize() >> self.id_shift;
        debug_assert!(index < self.states.len(), "unreachable DFA state {state:?}");
        self.states.get(index).copied().unwrap_or_default()
    }
}

impl StopScanner {
    /// `stops` must be non-empty strings (validated by StreamConfig); an empty one would
    /// match before any text.
    pub fn new(stops: &[String], include_stop: bool) -> Self {
        let automaton = StopAutomaton::new(stops);
        let state = match &automaton {
            Some(automaton) => automaton
                .dfa
                .start_state(Anchored::No)
                .expect("the DFA was built with an unanchored start state"),
            None => StateID::ZERO,
        };
        Self {
            include_stop,
            automaton,
            state,
            position: 0,
            held: String::new(),
            best: None,
            matched: stops.iter().position(String::is_empty),
        }
    }

    /// Feeds newly decoded text; appends the text that is now safe to release to `out`.
    /// Returns Some(index into `stops`) once a stop has matched: the output is then final
    /// (cut at the first stop, the stop text included if include_stop) and later calls are
    /// ignored.
    pub fn push(&mut self, text: &str, out: &mut String) -> Option<usize> {
        if self.matched.is_some() {
            return self.matched;
        }
        let Some(automaton) = &self.automaton else {
            out.push_str(text);
            return None;
        };
        let mut state = self.state;
        for (offset, &byte) in text.as_bytes().iter().enumerate() {
            state = automaton.dfa.next_state(Anchored::No, state, byte);
            if automaton.dfa.is_match(state) {
                let info = automaton.info(state);
                let len = info.full_len as usize;
                let start = self.position + offset + 1 - len;
                if !matches!(self.best, Some(best) if best.start <= start) {
                    let stop = info.full_stop as usize;
                    self.best = Some(StopMatch { start, len, stop });
                }
            }
        }
        self.state = state;
        self.position += text.len();

        // No stop can start before the longest tail that is still a stop prefix.
        let open_start = self.position - automaton.info(state).depth as usize;
        match self.best {
            // Nothing in progress can start before the best match any more: it is the first.
            Some(best) if open_start >= best.start => {
                self.cut_at(best, text, out);
                self.matched
            }
            // Otherwise open_start < best.start, so releasing up to open_start is safe.
            _ => {
                self.release_until(open_start, text, out);
                None
            }
        }
    }

    /// End of stream: releases whatever is still withheld (or cuts at a pending match).
    pub fn finish(&mut self, out: &mut String) -> Option<usize> {
        if self.matched.is_some() {
            return self.matched;
        }
        match self.best {
            Some(best) => self.cut_at(best, "", out),
            None => {
                out.push_str(&self.held);
                self.held.clear();
            }
        }
        self.matched
    }

    /// Byte length of the text withheld as a possible stop prefix.
    pub fn withheld_len(&self) -> usize {
        self.held.len()
    }

    fn cut_at(&mut self, best: StopMatch, text: &str, out: &mut String) {
        let end = best.start + if self.include_stop { best.len } else { 0 };
        self.release_until(end, text, out);
        self.held.clear();
        self.matched = Some(best.stop);
    }

    /// Releases the held text followed by `text` (just scanned) up to byte `until` of the
    /// whole stream; keeps the rest held.
    fn release_until(&mut self, until: usize, text: &str, out: &mut String) {
        let held_start = self.position - text.len() - self.held.len();
        let release_len = until - held_start;
        out.reserve(release_len);
        if release_len <= self.held.len() {
            out.push_str(&self.held[..release_len]);
            self.held.drain(..release_len);
            self.held.push_str(text);
        } else {
            let from_text = release_len - self.held.len();
            out.push_str(&self.held);
            out.push_str(&text[..from_text]);
            self.held.clear();
            self.held.push_str(&text[from_text..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(stops: &[&str], include_stop: bool, pieces: &[&str]) -> (Vec<String>, Option<usize>) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut scanner = StopScanner::new(&stops, include_stop);
        let mut released = Vec::new();
        for piece in pieces {
            let mut out = String::new();
            let matched = scanner.push(piece, &mut out);
            released.push(out);
            if matched.is_some() {
                return (released, matched);
            }
        }
        let mut out = String::new();
        let matched = scanner.finish(&mut out);
        released.push(out);
        (released, matched)
    }

    #[test]
    fn no_stops_passes_text_through() {
        assert_eq!(
            scan(&[], false, &["ab", "c"]),
            (vec!["ab".into(), "c".into(), "".into()], None)
        );
    }

    #[test]
    fn withholds_only_a_possible_prefix() {
        let (released, matched) = scan(&["END"], false, &["hello E", "N", "ding"]);
        assert_eq!(released, ["hello ", "", "ENding", ""]);
        assert_eq!(matched, None);
    }

    #[test]
    fn match_across_pieces_cuts_before_stop() {
        let (released, matched) = scan(&["x", "END"], false, &["ok E", "ND more"]);
        assert_eq!(released, ["ok ", ""]);
        assert_eq!(matched, Some(1));
    }

    #[test]
    fn include_stop_keeps_the_stop_text() {
        let (released, matched) = scan(&["END"], true, &["ok E", "ND more"]);
        assert_eq!(released.concat(), "ok END");
        assert_eq!(matched, Some(0));
    }

    #[test]
    fn earliest_start_wins_over_earliest_end() {
        // "bc" completes first but "abcd" starts earlier.
        let (released, matched) = scan(&["bc", "abcd"], false, &["xab", "c", "d"]);
        assert_eq!(released.concat(), "x");
        assert_eq!(matched, Some(1));
        // When "abcd" fails to complete, "bc" is the cut.
        let (released, matched) = scan(&["bc", "abcd"], false, &["xab", "c", "e"]);
        assert_eq!(released.concat(), "xa");
        assert_eq!(matched, Some(0));
    }

    #[test]
    fn pending_match_is_cut_at_finish() {
        let (released, matched) = scan(&["bc", "abcd"], true, &["xab", "c"]);
        assert_eq!(released.concat(), "xabc");
        assert_eq!(matched, Some(0));
    }

    #[test]
    fn equal_start_prefers_the_shorter_stop() {
        let (released, matched) = scan(&["abc", "ab"], true, &["xabc"]);
        assert_eq!(released.concat(), "xab");
        assert_eq!(matched, Some(1));
    }

    #[test]
    fn duplicate_stops_report_the_lowest_index() {
        let (_, matched) = scan(&["zz", "q", "zz"], false, &["azzb"]);
        assert_eq!(matched, Some(0));
    }

    #[test]
    fn multibyte_stops() {
        let (released, matched) = scan(&["🦀🦀", "終わり"], false, &["a🦀b🦀", "🦀c"]);
        assert_eq!(released.concat(), "a🦀b");
        assert_eq!(matched, Some(0));
    }

    #[test]
    fn empty_stop_matches_immediately() {
        let (released, matched) = scan(&["a", ""], false, &["xyz"]);
        assert_eq!(released.concat(), "");
        assert_eq!(matched, Some(1));
    }

    #[test]
    fn calls_after_a_match_are_ignored() {
        let stops = vec!["b".to_string()];
        let mut scanner = StopScanner::new(&stops, false);
        let mut out = String::new();
        assert_eq!(scanner.push("ab", &mut out), Some(0));
        assert_eq!(scanner.push("more", &mut out), Some(0));
        assert_eq!(scanner.finish(&mut out), Some(0));
        assert_eq!(out, "a");
    }
}
