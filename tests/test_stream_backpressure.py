"""Backpressure: a producer can never get more than the buffer ahead of the consumer."""

import threading
import time

import pytest

from mullama import StreamConfig
from mullama._core import PieceTable, open_stream
from mullama.testing import stream_from_pieces

pytestmark = pytest.mark.timeout(60)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def wait_until(condition, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.001)
    return True


def test_python_producer_blocks_after_buffer_size_tokens_until_the_consumer_reads():
    buffer_size, total = 8, 100
    producer, stream = open_stream(
        StreamConfig(buffer_size=buffer_size, max_tokens=1000), PieceTable([b"a"])
    )
    pushed = 0

    def produce():
        nonlocal pushed
        for _ in range(total):
            if not producer.push(0):
                return
            pushed += 1
        producer.finish()

    thread = threading.Thread(target=produce)
    thread.start()
    assert wait_until(lambda: pushed == buffer_size)
    # Proving a negative needs some time: with nobody reading, no further push completes.
    thread.join(0.3)
    assert thread.is_alive()
    assert pushed == buffer_size

    assert next(stream).text == "a"
    assert wait_until(lambda: pushed > buffer_size), "reading did not resume the producer"
    rest = list(stream)
    thread.join(5)
    assert not thread.is_alive()
    assert pushed == total
    assert len(rest) == total  # the other 99 tokens plus the closing event
    assert stream.finish_reason == "stop"


def test_in_flight_events_and_memory_stay_bounded_with_a_slow_consumer():
    buffer_size, total = 16, 200_000
    piece = b"0123456789abcdef" * 4
    # One shared bytes object: the list costs 8 bytes per entry, the table ~90 per token.
    stream = stream_from_pieces(
        [piece] * total, StreamConfig(buffer_size=buffer_size, max_tokens=total)
    )
    consumed = 0
    most_ahead = 0
    baseline = rss_bytes()
    for event in stream:
        consumed += 1
        finish_reason = event.finish_reason
        if consumed % 1000 == 0:
            most_ahead = max(most_ahead, stream.tokens_generated - consumed)
            time.sleep(0.0005)  # a slow consumer: the producer is always waiting on it
    grown = rss_bytes() - baseline
    assert consumed == total  # the last token carries finish_reason "length"
    assert finish_reason == "length"
    # At most buffer_size waiting (in the core or in the binding's batch), plus the token
    # of the push that is blocked on them.
    assert most_ahead <= buffer_size + 1
    # Unbounded buffering would hold total * (64 B text + event) > 20 MB here.
    assert grown < 8 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB"
