//! Property tests: streamed text equals "decode everything, cut at the earliest-starting stop",
//! whatever the token splits (inside UTF-8 characters too) and whatever the stop set.

use std::sync::Arc;

use mullama_core::{
    text_stream, token_stream, FinishReason, IncrementalDecoder, PieceTable, PushOutcome,
    StopScanner, StreamConfig, TokenConsumer, TokenEvent,
};
use proptest::prelude::*;

/// Fragments that stress character boundaries: multi-byte scripts, emoji with ZWJ and
/// modifiers, combining marks, and small repeated words so stops recur and overlap.
const FRAGMENTS: &[&str] = &[
    "a",
    "b",
    "ab",
    "aba",
    "the ",
    "end",
    "END",
    "\n",
    "\n\n",
    "User:",
    "</s>",
    "###",
    "é",
    "e\u{301}",
    "n\u{303}\u{308}",
    "漢",
    "字",
    "終わり",
    "🦀",
    "👨\u{200d}👩\u{200d}👧",
    "👍\u{1f3fd}",
    "🏳\u{fe0f}\u{200d}🌈",
    "\u{0}",
    "ß",
    "Ω",
];

fn text_strategy() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(FRAGMENTS).prop_map(str::to_string),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

/// Char-boundary-aligned substring of `text` chosen by two fractions.
fn substring(text: &str, from: f64, len: f64) -> String {
    let boundaries: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    let start = ((boundaries.len() - 1) as f64 * from) as usize;
    let rest = boundaries.len() - 1 - start;
    let end = start + 1 + ((rest.saturating_sub(1)) as f64 * len) as usize;
    text[boundaries[start]..boundaries[end.min(boundaries.len() - 1)]].to_string()
}

/// Stops: substrings of the text (so they do match), their prefixes (stops that are
/// prefixes of each other), and free fragments (which may or may not occur).
fn stops_for(text: String) -> impl Strategy<Value = (String, Vec<String>)> {
    let stop = prop_oneof![
        3 => (0.0..1.0f64, 0.0..0.3f64, any::<bool>()).prop_map(|(from, len, shorten)| {
            (Some((from, len, shorten)), String::new())
        }),
        2 => prop::sample::select(FRAGMENTS).prop_map(|f| (None, f.to_string())),
        1 => "[ab]{1,4}".prop_map(|s| (None, s)),
    ];
    prop::collection::vec(stop, 0..8).prop_map(move |choices| {
        let stops = choices
            .into_iter()
            .filter_map(|(from_text, fragment)| match from_text {
                None => Some(fragment),
                Some(_) if text.is_empty() => None,
                Some((from, len, shorten)) => {
                    let mut stop = substring(&text, from, len);
                    if shorten && stop.chars().count() > 1 {
                        stop.pop();
                    }
                    Some(stop)
                }
            })
            .collect();
        (text.clone(), stops)
    })
}

/// Random byte-level split points, inside characters too.
fn split(bytes: &[u8], cuts: &[f64]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| (bytes.len() as f64 * c) as usize)
        .collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| bytes[w[0]..w[1]].to_vec())
        .collect()
}

/// The reference: earliest start; ties go to the shorter stop, then the lower index.
fn reference(text: &str, stops: &[String], include_stop: bool) -> (String, Option<usize>) {
    let first = stops
        .iter()
        .enumerate()
        .filter_map(|(index, stop)| text.find(stop.as_str()).map(|at| (at, stop.len(), index)))
        .min();
    match first {
        None => (text.to_string(), None),
        Some((at, len, index)) => {
            let end = at + if include_stop { len } else { 0 };
            (text[..end].to_string(), Some(index))
        }
    }
}

/// Length of the longest suffix of `text` that is a prefix of some stop.
fn open_prefix_len(text: &str, stops: &[String]) -> usize {
    (0..=text.len())
        .filter(|&at| text.is_char_boundary(at))
        .find(|&at| stops.iter().any(|stop| stop.starts_with(&text[at..])))
        .map_or(0, |at| text.len() - at)
}

/// The documented rule: `from_utf8_lossy`, except that an unfinished character at the very
/// end (bytes that could still start a valid one) is dropped, not shown as U+FFFD.
fn lossy_without_unfinished_tail(mut bytes: &[u8]) -> String {
    let mut out = String::new();
    loop {
        match std::str::from_utf8(bytes) {
            Ok(text) => {
                out.push_str(text);
                return out;
            }
            Err(error) => {
                let (valid, rest) = bytes.split_at(error.valid_up_to());
                out.push_str(std::str::from_utf8(valid).unwrap());
                match error.error_len() {
                    Some(invalid) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        bytes = &rest[invalid..];
                    }
                    None => return out,
                }
            }
        }
    }
}

struct Streamed {
    events: Vec<String>,
    matched: Option<usize>,
}

/// Runs decoder + scanner over `chunks`, checking after every push that released text is
/// final (a prefix of `expected`) and that only the longest possible stop prefix is held.
fn stream_chunks(
    chunks: &[Vec<u8>],
    stops: &[String],
    include_stop: bool,
    expected: &str,
) -> std::result::Result<Streamed, TestCaseError> {
    let mut decoder = IncrementalDecoder::new();
    let mut scanner = StopScanner::new(stops, include_stop);
    let mut decoded_so_far = String::new();
    let mut released = String::new();
    let mut events = Vec::new();
    let mut decoded = String::new();
    for chunk in chunks {
        decoded.clear();
        decoder.push(chunk, &mut decoded);
        decoded_so_far.push_str(&decoded);
        let mut out = String::new();
        let matched = scanner.push(&decoded, &mut out);
        released.push_str(&out);
        events.push(out);
        prop_assert!(
            expected.starts_with(&released),
            "released {released:?} is not a prefix of {expected:?}"
        );
        if matched.is_some() {
            return Ok(Streamed { events, matched });
        }
        let held = open_prefix_len(&decoded_so_far, stops);
        prop_assert_eq!(
            released.len(),
            decoded_so_far.len() - held,
            "withheld too much"
        );
    }
    decoded.clear();
    decoder.finish(&mut decoded);
    let mut out = String::new();
    let matched = scanner
        .push(&decoded, &mut out)
        .or_else(|| scanner.finish(&mut out));
    events.push(out);
    Ok(Streamed { events, matched })
}

fn text_case() -> impl Strategy<Value = (String, Vec<String>, Vec<f64>, bool)> {
    (
        text_strategy().prop_flat_map(stops_for),
        prop::collection::vec(0.0..1.0f64, 0..30),
        any::<bool>(),
    )
        .prop_map(|((text, stops), cuts, include)| (text, stops, cuts, include))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn streamed_text_equals_cut_reference((text, stops, cuts, include_stop) in text_case()) {
        let (expected, expected_stop) = reference(&text, &stops, include_stop);
        let chunks = split(text.as_bytes(), &cuts);
        let streamed = stream_chunks(&chunks, &stops, include_stop, &expected)?;
        prop_assert_eq!(streamed.events.concat(), expected);
        prop_assert_eq!(streamed.matched, expected_stop);
    }

    #[test]
    fn invalid_bytes_become_what_from_utf8_lossy_gives_and_a_cut_character_is_dropped(
        parts in prop::collection::vec(
            prop_oneof![
                text_strategy().prop_map(String::into_bytes),
                prop::collection::vec(any::<u8>(), 0..6),
                // Truncated multi-byte characters.
                prop::sample::select(FRAGMENTS).prop_map(|f| f.as_bytes()[..f.len() / 2 + 1].to_vec()),
            ],
            0..8,
        ),
        cuts in prop::collection::vec(0.0..1.0f64, 0..30),
        stop_pick in (0.0..1.0f64, 0.0..0.2f64),
        include_stop in any::<bool>(),
    ) {
        let bytes = parts.concat();
        let lossy = lossy_without_unfinished_tail(&bytes);
        let chunks = split(&bytes, &cuts);

        let plain = stream_chunks(&chunks, &[], false, &lossy)?;
        prop_assert_eq!(plain.events.concat(), lossy.clone());

        // A stop taken from the decoded text, which may contain U+FFFD itself.
        if !lossy.is_empty() {
            let stops = vec![substring(&lossy, stop_pick.0, stop_pick.1)];
            let (expected, expected_stop) = reference(&lossy, &stops, include_stop);
            let cut = stream_chunks(&chunks, &stops, include_stop, &expected)?;
            prop_assert_eq!(cut.events.concat(), expected);
            prop_assert_eq!(cut.matched, expected_stop);
        }
    }

    #[test]
    fn token_stream_delivers_the_reference((text, stops, cuts, include_stop) in text_case()) {
        let (expected, expected_stop) = reference(&text, &stops, include_stop);
        let chunks = split(text.as_bytes(), &cuts);
        let token_count = chunks.len();
        let config = StreamConfig {
            stop_sequences: stops.clone(),
            include_stop,
            buffer_size: token_count + 1,
            max_tokens: token_count.max(1) + 1,
            timeout_ms: 0,
            ..StreamConfig::default()
        };
        let (producer, consumer) = token_stream(&config, Arc::new(PieceTable::new(chunks))).unwrap();
        for token in 0..token_count as u32 {
            if producer.push(token, None, Vec::new()).unwrap() != mullama_core::PushOutcome::Continue {
                break;
            }
        }
        producer.finish(FinishReason::Length, None);
        let mut events = Vec::new();
        while let Some(event) = consumer.next().unwrap() {
            events.push(event);
        }
        let last = events.last().expect("a stream always ends with a closing event");
        let text: String = events.iter().map(|event| event.text.as_str()).collect();
        prop_assert_eq!(text, expected);
        match expected_stop {
            Some(index) => {
                prop_assert_eq!(last.finish_reason, Some(FinishReason::Stop));
                prop_assert_eq!(last.stop_sequence.as_deref(), Some(stops[index].as_str()));
            }
            None => {
                prop_assert_eq!(last.finish_reason, Some(FinishReason::Length));
                prop_assert_eq!(last.stop_sequence.as_deref(), None);
            }
        }
        prop_assert!(events[..events.len() - 1].iter().all(|event| event.finish_reason.is_none()));
        prop_assert_eq!(consumer.finish_reason(), last.finish_reason);
    }
}

fn drain(consumer: &TokenConsumer) -> Vec<(String, Option<FinishReason>, Option<String>)> {
    let mut events = Vec::new();
    while let Some(TokenEvent {
        text,
        finish_reason,
        stop_sequence,
        ..
    }) = consumer.next().unwrap()
    {
        events.push((text.to_string(), finish_reason, stop_sequence));
    }
    events
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// A remote producer pushing the same bytes as text deltas gets exactly the events a
    /// local producer gets pushing them as tokens, stops, cut characters and max_tokens
    /// included.
    #[test]
    fn text_stream_gives_the_events_of_a_token_stream(
        (text, stops, cuts, include_stop) in text_case(),
        limit in 1usize..40,
    ) {
        let chunks = split(text.as_bytes(), &cuts);
        let config = StreamConfig {
            stop_sequences: stops,
            include_stop,
            buffer_size: chunks.len() + 1,
            max_tokens: limit,
            timeout_ms: 0,
            ..StreamConfig::default()
        };
        let (tokens, token_consumer) =
            token_stream(&config, Arc::new(PieceTable::new(chunks.clone()))).unwrap();
        let (deltas, text_consumer) = text_stream(&config).unwrap();
        for (id, chunk) in chunks.iter().enumerate() {
            let by_token = tokens.push(id as u32, None, Vec::new()).unwrap();
            let by_text = deltas.push_text(chunk, 1);
            prop_assert_eq!(by_token, by_text);
            if by_text != PushOutcome::Continue {
                break;
            }
        }
        tokens.finish(FinishReason::Stop, None);
        deltas.finish(FinishReason::Stop);
        prop_assert_eq!(drain(&text_consumer), drain(&token_consumer));
        prop_assert_eq!(
            text_consumer.stats().incomplete_bytes_dropped,
            token_consumer.stats().incomplete_bytes_dropped
        );
    }
}
