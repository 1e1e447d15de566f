//! Stop-sequence scanning across token and character boundaries (aho-corasick), withholding
//! only the longest tail that could still begin a stop. Linear in bytes, whatever the number
//! of stops.

pub struct StopScanner {}

impl StopScanner {
    /// `stops` must be non-empty strings (validated by StreamConfig).
    pub fn new(stops: &[String], include_stop: bool) -> Self {
        let _ = (stops, include_stop);
        todo!()
    }
    /// Feeds newly decoded text; appends the text that is now safe to release to `out`.
    /// Returns Some(index into `stops`) once a stop has matched: the output is then final
    /// (cut at the first stop, the stop text included if include_stop) and later calls are
    /// ignored.
    pub fn push(&mut self, text: &str, out: &mut String) -> Option<usize> {
        let _ = (text, out);
        todo!()
    }
    /// End of stream: releases whatever is still withheld (or cuts at a pending match).
    pub fn finish(&mut self, out: &mut String) -> Option<usize> {
        let _ = out;
        todo!()
    }
}
