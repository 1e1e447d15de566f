"""Pieces of text that exercise the Llama 3 / Qwen2 splits, for tests that compare a
split (or a whole tokenizer using one) with the `tokenizers` package."""

# Pieces texts are built from: letters of several scripts (with combining marks, title
# case and modifier letters), digit runs of several kinds, punctuation and symbols,
# whitespace runs (ASCII and Unicode, line breaks, trailing), contractions in any case,
# emoji sequences and invisible format characters.
FRAGMENTS = [
    *["a", "Z", "hello", " world", "The", "é", "ß", "ñ", "naïve", "ǅ", "ʰ"],
    *["Жизнь", " мир", "αβγ", "中文", "日本語", "ひらがな", "カタカナ", "한국어"],
    *["مرحبا", "שלום", "हिन्दी", "ไทย", "e\u0301"],
    *["0", "7", "42", "123", "2024", "1234567", "٣٤٥", "²", "½", "Ⅻ", "①", "３"],
    *[".", ",", "!", "?", "...", "(", ")", "[", "]", "{", "}", "-", "_", "@", "#", "$"],
    *["%", "&", "*", "+", "=", "/", "\\", "|", "<", ">", "~", "`", "^", '"', "«", "»"],
    *["—", "…", "©", "€", "¿", "、", "。"],
    *[" ", " ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\r\n", "\r", "\n\n\n", " \n"],
    *["\n ", "\u00a0", "\u3000", "\u2028", "\u2029", "\x0b", "\x0c", "\x85", "\u2003"],
    *["'s", "'S", "'t", "'T", "'re", "'RE", "'Re", "'ve", "'VE", "'m", "'M", "'ll"],
    *["'LL", "'lL", "'d", "'D", "'x", "'", "''", " '", "'\u017f", "'\n", "don't", "I'M"],
    *["😀", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "❤\ufe0f", "\u200b", "\x00", "\x1f"],
]
