"""Property tests: whatever the byte splits and stop sets, the streamed text equals "decode
everything, cut at the earliest-starting stop", and every released prefix is final."""

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mullama import StreamConfig
from mullama.testing import stream_from_pieces
from text_rules import lossy_without_unfinished_tail, unfinished_tail_len

pytestmark = pytest.mark.timeout(120)

# Multi-byte UTF-8 of every length, plus combining marks and ZWJ emoji sequences, so byte
# splits land inside characters and stops can start inside grapheme clusters.
ALPHABET = st.sampled_from(
    list("ab \n.")
    + ["é", "ß", "中", "文", "字", "😀", "👍🏽", "👩‍💻", "\u0301", "\u0308", "e\u0301", "ｱ", "🇫🇷"]
)
TEXTS = st.lists(ALPHABET, max_size=40).map("".join)


def split_bytes(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def reference(text: str, stops: list[str], include_stop: bool) -> tuple[str, str | None]:
    """Earliest start wins; at the same start the shortest (it completes first)."""
    best: tuple[int, int, str] | None = None
    for stop in stops:
        at = text.find(stop)
        if at >= 0 and (best is None or (at, len(stop)) < best[:2]):
            best = (at, len(stop), stop)
    if best is None:
        return text, None
    at, length, stop = best
    return text[: at + length if include_stop else at], stop


@st.composite
def cases(draw):
    text = draw(TEXTS)
    data = text.encode()
    pieces = split_bytes(data, draw(st.lists(st.integers(0, 10_000), max_size=30)))
    # Stops drawn from the text itself match often; free-form ones exercise near misses.
    substring = st.builds(
        lambda a, n: text[a : a + n] if text else "",
        st.integers(0, max(len(text) - 1, 0)),
        st.integers(1, 4),
    ).filter(bool)
    stops = draw(st.lists(substring | st.lists(ALPHABET, min_size=1, max_size=3).map("".join)))
    return text, pieces, stops[:6], draw(st.booleans())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
# Two stops starting at the same place and completing inside one token: the shorter wins,
# exactly as when the bytes arrive one token at a time.
@example(("aa", [b"aa"], ["aa", "a"], True))
@example(("xaay", [b"xaay"], ["aa", "a"], False))
def test_streamed_text_equals_the_cut_reference_and_prefixes_are_final(case):
    text, pieces, stops, include_stop = case
    expected, expected_stop = reference(text, stops, include_stop)
    config = StreamConfig(max_tokens=10_000, stop_sequences=stops, include_stop=include_stop)
    stream = stream_from_pieces(pieces, config)
    released = ""
    for event in stream:
        released += event.text
        # Nothing released is ever taken back: no withheld stop prefix leaks out early.
        assert expected.startswith(released), (released, expected)
    assert released == expected
    assert stream.finish_reason == "stop"
    assert stream.stop_sequence == expected_stop


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60), st.lists(st.integers(0, 1000), max_size=20))
def test_invalid_utf8_is_replaced_exactly_like_a_whole_decode(data, cuts):
    pieces = split_bytes(data, cuts)
    stream = stream_from_pieces(pieces, StreamConfig(max_tokens=10_000))
    shown = "".join(t.text for t in stream)
    # Invalid bytes become U+FFFD where a whole decode puts them; an unfinished last character
    # is dropped and counted.
    assert shown == lossy_without_unfinished_tail(data)
    assert stream.stats["incomplete_bytes_dropped"] == unfinished_tail_len(data)
