//! Incremental detokenization: token ids -> byte pieces -> only complete UTF-8 is released.

/// Maps a token id to the bytes it contributes to the text. Implemented by the tokenizer
/// and by `PieceTable` (an explicit list, for tests and synthetic producers).
pub trait TokenPieces: Send + Sync {
    /// The bytes of token `id`, or None when `id` is outside the vocabulary.
    fn piece(&self, id: u32) -> Option<&[u8]>;
    /// The bytes of `id` when it is the first token shown in a text: Hugging Face
    /// decoders (Metaspace, Strip) drop a leading space there. Same as `piece` by default.
    fn leading_piece(&self, id: u32) -> Option<&[u8]> {
        self.piece(id)
    }
    /// Whether `id` is left out of the text altogether (a hidden special token), so the
    /// token after it still counts as the first shown.
    fn is_skipped(&self, _id: u32) -> bool {
        false
    }
    /// Whether `id` is a byte-fallback token that Hugging Face's ByteFallback decoder
    /// reads together with its neighbours: a run of them is its UTF-8 text when valid and
    /// one U+FFFD per byte when not (`IncrementalDecoder::push_run_byte`).
    fn is_run_byte(&self, _id: u32) -> bool {
        false
    }
    /// Number of token ids.
    fn vocab_size(&self) -> usize;
}

/// Token id i -> pieces[i].
#[derive(Debug, Clone, Default)]
pub struct PieceTable {
    pieces: Vec<Vec<u8>>,
}

impl PieceTable {
    pub fn new(pieces: Vec<Vec<u8>>) -> Self {
        Self { pieces }
    }
}

impl TokenPieces for PieceTable {
    fn piece(&self, id: u32) -> Option<&[u8]> {
        self.pieces.get(id as usize).map(Vec::as_slice)
    }
    fn vocab_size(&self) -> usize {
        self.pieces.len()
    }
}

/// Releases only complete UTF-8; invalid bytes become U+FFFD exactly where
/// `String::from_utf8_lossy` over the whole byte stream would put them, except an unfinished
/// character at the very end, which is dropped (see `finish`).
///
/// This holds because std's decoder decides about a byte sequence from its own bytes only:
/// an invalid sequence (`error_len` is Some) is invalid whatever follows, and a sequence cut
/// off by the end of the input (`error_len` is None) is kept until more bytes decide it.
#[derive(Debug, Default)]
pub struct IncrementalDecoder {
    /// At most 3 bytes: the start of a character whose remaining bytes have not arrived.
    pending: Vec<u8>,
    /// Byte-fallback bytes of the current run, held until the run ends.
    run: Vec<u8>,
}

impl IncrementalDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `bytes`; writes the newly complete text to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut String) {
        self.settle_run(out);
        self.push_bytes(bytes, out);
    }

    /// Appends the bytes of a byte-fallback token; the run they belong to is released
    /// when it ends (the next `push` or `finish`), valid or as one U+FFFD per byte.
    pub fn push_run_byte(&mut self, bytes: &[u8]) {
        self.run.extend_from_slice(bytes);
    }

    fn settle_run(&mut self, out: &mut String) {
        if self.run.is_empty() {
            return;
        }
        let run = std::mem::take(&mut self.run);
        if std::str::from_utf8(&run).is_ok() {
            self.push_bytes(&run, out);
        } else {
            self.push_bytes("\u{FFFD}".repeat(run.len()).as_bytes(), out);
        }
        self.run = run;
        self.run.clear();
    }

    fn push_bytes(&mut self, bytes: &[u8], out: &mut String) {
        if self.pending.is_empty() {
            let consumed = decode_complete(bytes, out);
            self.pending.extend_from_slice(&bytes[consumed..]);
        } else {
            // Reuses the pending buffer's allocation: no allocation per token.
            self.pending.extend_from_slice(bytes);
            let consumed = decode_complete(&self.pending, out);
            self.pending.drain(..consumed);
        }
    }

    /// End of a stream: drops the start of a character whose remaining bytes never came (a
    /// reply cut by max_tokens in the middle of an emoji shows no U+FFFD) and returns how many
    /// bytes it dropped, for the stream's statistics. A byte run (byte-fallback tokens) that
    /// is cut short is dropped whole; any other run is released as at any run's end.
    pub fn finish(&mut self, out: &mut String) -> usize {
        let mut dropped = 0;
        if let Err(error) = std::str::from_utf8(&self.run) {
            if error.error_len().is_none() {
                // A byte run cut short: decode-all would show all of it as U+FFFD (it is
                // invalid as a whole), so the stream drops all of it.
                dropped = self.run.len();
                self.run.clear();
            }
        }
        self.settle_run(out);
        dropped += self.pending.len();
        self.pending.clear();
        dropped
    }

    /// End of a whole decode (`Tokenizer::decode`): an unfinished tail becomes U+FFFD, as
    /// `from_utf8_lossy` (and Hugging Face's byte fallback, per byte) shows it.
    pub fn finish_lossy(&mut self, out: &mut String) {
        self.settle_run(out);
        if !self.pending.is_empty() {
            out.push_str(&String::from_utf8_lossy(&self.pending));
            self.pending.clear();
        }
    }
}

/// Decodes the longest prefix of `bytes` whose meaning cannot change when more bytes follow;
/// returns its length. What is left is the start of a possibly valid character.
fn decode_complete(mut bytes: &[u8], out: &mut String) -> usize {
    let total = bytes.len();
    loop {
        match std::str::from_utf8(bytes) {
            Ok(text) => {
                out.push_str(text);
                return total;
            }
            Err(error) => {
                let (valid, rest) = bytes.split_at(error.valid_up_to());
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                match error.error_len() {
                    Some(invalid_len) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        bytes = &rest[invalid_len..];
                    }
                    None => return total - rest.len(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_split(chunks: &[&[u8]]) -> (Vec<String>, String) {
        let mut decoder = IncrementalDecoder::new();
        let mut released = Vec::new();
        for chunk in chunks {
            let mut out = String::new();
            decoder.push(chunk, &mut out);
            released.push(out);
        }
        let mut tail = String::new();
        let dropped = decoder.finish(&mut tail);
        (released, tail + &"?".repeat(dropped))
    }

    #[test]
    fn split_character_is_released_whole() {
        let crab = "\u{1F980}".as_bytes();
        let (released, tail) = decode_split(&[&crab[..1], &crab[1..3], &crab[3..]]);
        assert_eq!(released, ["", "", "\u{1F980}"]);
        assert_eq!(tail, "");
    }

    #[test]
    fn invalid_bytes_match_from_utf8_lossy() {
        let bytes: &[u8] = b"a\xF0\x9F\xA6b\xFF\xC3";
        let (released, tail) = decode_split(&[&bytes[..2], &bytes[2..5], &bytes[5..]]);
        // Everything before the unfinished last character is exactly the lossy decoding.
        assert_eq!(released.concat(), String::from_utf8_lossy(&bytes[..6]));
        assert_eq!(released, ["a", "\u{FFFD}b", "\u{FFFD}"]);
        assert_eq!(tail, "?"); // the lone 0xC3 was dropped, not shown
    }

    #[test]
    fn unfinished_tail_at_finish_is_dropped_and_counted() {
        let (released, tail) = decode_split(&[b"ok\xF0\x9F", b"\x98"]);
        assert_eq!(released, ["ok", ""]);
        assert_eq!(tail, "???");
    }

    #[test]
    fn invalid_bytes_before_the_end_still_become_replacements() {
        let (released, tail) = decode_split(&[b"x\xE2\x82y"]);
        assert_eq!(released, ["x\u{FFFD}y"]);
        assert_eq!(tail, "");
    }

    #[test]
    fn byte_runs_are_released_whole_or_as_one_replacement_per_byte() {
        let mut d = IncrementalDecoder::new();
        let mut out = String::new();
        for b in "日".as_bytes() {
            d.push_run_byte(&[*b]);
        }
        assert!(out.is_empty());
        d.push(b"x", &mut out);
        assert_eq!(out, "日x");
        // A truncated character: lossy decoding would give one U+FFFD, ByteFallback two.
        d.push_run_byte(&[0xE6]);
        d.push_run_byte(&[0x97]);
        d.push(b"G", &mut out);
        d.push_run_byte(&[0xF0]);
        let mut lossy = String::new();
        d.finish_lossy(&mut lossy);
        assert_eq!(out + &lossy, "日x\u{FFFD}\u{FFFD}G\u{FFFD}");
        // A stream cut inside a run's last character drops the run.
        let mut d = IncrementalDecoder::new();
        let mut out = String::new();
        for b in "日本".as_bytes()[..4].iter() {
            d.push_run_byte(&[*b]);
        }
        assert_eq!(d.finish(&mut out), 4);
        assert_eq!(out, "");
    }

    #[test]
    fn piece_table_looks_up_ids() {
        let table = PieceTable::new(vec![b"a".to_vec(), b"bc".to_vec()]);
        assert_eq!(table.piece(1), Some(&b"bc"[..]));
        assert_eq!(table.piece(2), None);
        assert_eq!(table.vocab_size(), 2);
    }
}
