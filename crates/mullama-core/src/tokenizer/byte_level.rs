//! GPT-2's byte <-> printable-character table: byte-level BPE vocabularies spell every
//! byte as a visible character, so the BPE works on text and raw bytes survive.

/// Byte b is spelled `BYTE_TO_CHAR[b]`.
pub struct ByteLevel {
    byte_to_char: [char; 256],
    /// Indexed by codepoint; every mapped char is below 324.
    char_to_byte: [Option<u8>; 324],
}

impl ByteLevel {
    pub fn new() -> Self {
        let mut byte_to_char = ['\0'; 256];
        let mut char_to_byte = [None; 324];
        // Printable Latin-1 bytes keep their own codepoint; the rest (controls, space,
        // DEL, NBSP, soft hyphen) are moved to 256.. in byte order.
        let keeps_itself = |b: u32| {
            (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
        };
        let mut next = 256u32;
        for b in 0u32..256 {
            let cpt = if keeps_itself(b) {
                b
            } else {
                next += 1;
                next - 1
            };
            let c = char::from_u32(cpt).expect("codepoints below 324 are valid chars");
            byte_to_char[b as usize] = c;
            char_to_byte[cpt as usize] = Some(b as u8);
        }
        Self {
            byte_to_char,
            char_to_byte,
        }
    }

    /// The 256 characters bytes are spelled as, in byte order.
    pub fn chars(&self) -> &[char] {
        &self.byte_to_char
    }

    /// Appends the byte-level spelling of `text` to `out`.
    pub fn encode_into(&self, text: &str, out: &mut String) {
        for &b in text.as_bytes() {
            out.push(self.byte_to_char[b as usize]);
        }
    }

    /// The byte `c` spells, if it is one of the 256 table characters.
    pub fn byte_of(&self, c: char) -> Option<u8> {
        self.char_to_byte.get(c as usize).copied().flatten()
    }

    /// The raw bytes a byte-level token text stands for. A char outside the table (not
    /// produced by GPT-2 vocabularies) is kept as its own UTF-8.
    pub fn decode(&self, token_text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(token_text.len());
        for c in token_text.chars() {
            match self.char_to_byte.get(c as usize).copied().flatten() {
                Some(b) => out.push(b),
                None => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_byte() {
        let bl = ByteLevel::new();
        let all: Vec<u8> = (0..=255).collect();
        let mut spelled = String::new();
        for &b in &all {
            spelled.push(bl.byte_to_char[b as usize]);
        }
        assert_eq!(bl.decode(&spelled), all);
        assert_eq!(bl.byte_to_char[b' ' as usize], 'Ġ');
        assert_eq!(bl.byte_to_char[b'\n' as usize], 'Ċ');
        assert_eq!(bl.byte_to_char[b'a' as usize], 'a');
    }
}
