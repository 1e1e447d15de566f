"""The stream's text rule, for tests: a whole decode, except that an unfinished character at the
very end of a reply is dropped (and counted in stats["incomplete_bytes_dropped"]) instead of
shown as U+FFFD."""

from __future__ import annotations

import codecs

REPLACEMENT = "\ufffd"


def lossy_without_unfinished_tail(data: bytes) -> str:
    """What a stream of `data` shows: errors="replace" decoding, holding back (and so dropping)
    an incomplete last sequence, as an incremental decoder that is never told the input ended."""
    return codecs.getincrementaldecoder("utf-8")("replace").decode(data, final=False)


def unfinished_tail_len(data: bytes) -> int:
    """How many bytes at the end of `data` start a character that never finished."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    decoder.decode(data, final=False)
    pending, _ = decoder.getstate()
    return len(pending)


def streamed_matches_decode_all(streamed: str, decoded_all: str, dropped: int) -> bool:
    """Whether a stream's text fits a decode-all of the same ids (e.g. Hugging Face's): equal,
    or, where the stream dropped an unfinished last character, decode-all less the U+FFFD that
    stood for it."""
    if not dropped:
        return streamed == decoded_all
    cut = decoded_all.rstrip(REPLACEMENT)
    return (
        len(cut) < len(decoded_all)
        and streamed.startswith(cut)
        and set(streamed[len(cut) :]) <= {REPLACEMENT}
        and len(streamed) < len(decoded_all)
    )
