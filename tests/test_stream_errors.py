"""Deadlines, producer failures and Ctrl+C: the consumer always gets a typed answer, promptly."""

import signal
import threading
import time

import pytest

from mullama import GenerationError, MullamaError, StreamConfig, StreamTimeoutError
from mullama._core import PieceTable, open_stream

pytestmark = pytest.mark.timeout(30)


def test_a_stalled_producer_times_out_no_later_than_deadline_plus_100ms():
    start = time.monotonic()
    producer, stream = open_stream(StreamConfig(timeout_ms=300), PieceTable([b"a"]))
    with pytest.raises(StreamTimeoutError) as info:
        next(stream)
    elapsed = time.monotonic() - start
    assert 0.3 - 0.002 <= elapsed <= 0.3 + 0.1, f"raised after {elapsed:.3f}s"
    assert isinstance(info.value, MullamaError)
    assert info.value.timeout_ms == 300
    assert producer.push(0) is False
    assert producer.stop_reason == "timeout"
    assert stream.finish_reason == "timeout"
    with pytest.raises(StopIteration):
        next(stream)


def test_events_before_the_deadline_are_delivered_then_the_timeout_is_raised():
    start = time.monotonic()
    producer, stream = open_stream(StreamConfig(timeout_ms=250), PieceTable([b"a", b"b"]))
    producer.push(0)
    producer.push(1)
    texts = []
    with pytest.raises(StreamTimeoutError):
        for token in stream:
            texts.append(token.text)
    assert time.monotonic() - start <= 0.25 + 0.1
    assert texts == ["a", "b"]


def test_producer_failure_raises_generation_error_caused_by_the_original_exception():
    producer, stream = open_stream(StreamConfig(), PieceTable([b"a"]))
    original = ValueError("the model exploded")

    def produce():
        producer.push(0)
        try:
            raise original
        except ValueError as exc:
            producer.fail(exc)

    thread = threading.Thread(target=produce)
    thread.start()
    texts = []
    with pytest.raises(GenerationError) as info:
        for token in stream:
            texts.append(token.text)
    thread.join()
    assert texts == ["a"]
    assert info.value.__cause__ is original
    assert "ValueError: the model exploded" in str(info.value)
    assert stream.finish_reason == "error"
    assert producer.stop_reason == "error"
    with pytest.raises(StopIteration):
        next(stream)


def test_every_read_of_a_failed_stream_gets_the_same_cause():
    producer, stream = open_stream(StreamConfig(), PieceTable([b"a"]))
    original = KeyboardInterrupt()
    producer.fail(original)
    with pytest.raises(GenerationError) as info:
        stream.try_next()
    assert info.value.__cause__ is original
    assert "KeyboardInterrupt" in str(info.value)


def test_a_producer_that_disappears_without_finishing_fails_the_stream():
    producer, stream = open_stream(StreamConfig(), PieceTable([b"a"]))

    def produce(producer):
        producer.push(0)
        # Returns without finish(): the thread held the last reference.

    thread = threading.Thread(target=produce, args=(producer,))
    del producer
    thread.start()
    assert next(stream).text == "a"
    with pytest.raises(GenerationError) as info:
        next(stream)
    assert info.value.__cause__ is None
    thread.join()


def test_failure_after_a_normal_finish_is_ignored():
    producer, stream = open_stream(StreamConfig(), PieceTable([b"a"]))
    producer.push(0)
    producer.finish()
    producer.fail(RuntimeError("too late"))
    assert [t.text for t in stream] == ["a", ""]
    assert stream.finish_reason == "stop"


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signals are delivered to the main thread",
)
def test_ctrl_c_interrupts_a_blocked_next_promptly():
    producer, stream = open_stream(StreamConfig(timeout_ms=0), PieceTable([b"a"]))
    sent_at: list[float] = []

    def interrupt():
        time.sleep(0.2)  # let the main thread block in next() first
        sent_at.append(time.monotonic())
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Thread(target=interrupt)
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            next(stream)
        latency = time.monotonic() - sent_at[0]
    finally:
        timer.join()
        signal.signal(signal.SIGINT, previous)
    assert latency < 0.25, f"KeyboardInterrupt took {latency:.3f}s"
    # The interrupted stream is still usable.
    producer.push(0)
    assert next(stream).text == "a"
