"""Early stop, drop and close: the producer learns at once, and nothing is left behind."""

import gc
import os
import threading

import pytest

from mullama import StreamConfig
from mullama._core import PieceTable, open_stream
from mullama.testing import stream_from_pieces

pytestmark = pytest.mark.timeout(60)


def os_thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def piece_producer_threads() -> int:
    """Threads of this process that stream_from_pieces started ("mullama-piece-producer",
    cut to 15 characters by the kernel): other tests' threads may come and go meanwhile."""
    count = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                count += f.read().startswith("mullama-piece")
        except FileNotFoundError:  # the thread exited while we looked
            pass
    return count


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_break_drops_the_stream_and_the_producers_next_push_returns_false():
    producer, stream = open_stream(
        StreamConfig(buffer_size=1, max_tokens=10_000), PieceTable([b"a"])
    )
    outcomes: list[bool] = []

    def produce():
        while producer.push(0):
            outcomes.append(True)
        outcomes.append(False)

    thread = threading.Thread(target=produce)
    thread.start()
    streams = [stream]
    del stream
    for token in streams.pop():  # the loop holds the only reference
        assert token.text == "a"
        break
    thread.join(5)
    assert not thread.is_alive(), "the producer was not told to stop"
    assert outcomes[-1] is False
    # The consumed token, plus at most the one that filled the 1-slot buffer meanwhile.
    assert outcomes.count(True) <= 2
    assert producer.stop_reason == "cancelled"


def test_break_out_of_a_rust_producer_stream_stops_its_thread():
    # Threads left by earlier tests (pools winding down) may exit meanwhile, never start: the
    # count after is at most the count before, and one less than while the producer ran.
    before = os_thread_count()
    for token in stream_from_pieces([b"a"] * 10_000, StreamConfig(max_tokens=10_000)):
        assert token.text == "a"
        running = os_thread_count()
        break
    # Dropping the stream joins its producer thread.
    after = os_thread_count()
    assert after <= before
    assert after < running


def test_a_delayed_producer_thread_wakes_from_its_sleep_on_close():
    before = os_thread_count()
    stream = stream_from_pieces([b"a"] * 10, delay_s=3600.0)
    assert os_thread_count() == before + 1
    stream.close()  # returns only after the thread exited; the pytest timeout catches a hang
    assert os_thread_count() == before


def _churn_rust_producers(count: int) -> None:
    pieces = [b"piece"] * 512
    config = StreamConfig(buffer_size=4, max_tokens=512)
    for i in range(count):
        stream = stream_from_pieces(pieces, config)
        assert next(stream).text == "piece"
        if i % 2:
            stream.close()
        del stream


def test_closing_or_dropping_1000_unfinished_streams_leaves_no_threads_and_no_growth():
    python_threads = threading.active_count()
    leftover = piece_producer_threads()
    _churn_rust_producers(200)  # warm up allocator arenas before measuring
    gc.collect()
    baseline = rss_bytes()
    _churn_rust_producers(1000)
    gc.collect()
    grown = rss_bytes() - baseline
    # Counted by name: an earlier test's idle threads may exit meanwhile (CI saw 5 -> 3).
    assert piece_producer_threads() == leftover
    assert threading.active_count() <= python_threads
    assert grown < 4 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 1000 streams"


def test_python_producers_of_dropped_streams_all_exit():
    threads = []
    for _ in range(100):
        producer, stream = open_stream(StreamConfig(buffer_size=2), PieceTable([b"a"]))

        def produce(producer=producer):
            while producer.push(0):
                pass

        thread = threading.Thread(target=produce)
        thread.start()
        next(stream)
        del stream, producer
        threads.append(thread)
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive()
