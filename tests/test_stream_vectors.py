"""The shared stream vectors (testdata/stream_vectors.jsonl), read by the Rust core's and the
Node tests too: sync and async Python streams give the same text, byte for byte, and the same
ending."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mullama import StreamConfig
from mullama.testing import astream_from_pieces, stream_from_pieces

VECTORS_FILE = Path(__file__).resolve().parent.parent / "testdata" / "stream_vectors.jsonl"
VECTORS = [json.loads(line) for line in VECTORS_FILE.read_text("utf-8").splitlines() if line]


def _pieces(vector: dict) -> list[bytes]:
    return [bytes.fromhex(p) for p in vector["pieces_hex"]]


def _expected(vector: dict) -> tuple[str, str, str | None]:
    return vector["text"], vector["finish_reason"], vector["stop_sequence"]


def test_there_are_vectors():
    assert len(VECTORS) >= 10


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_sync_stream_matches_the_vector(vector):
    with stream_from_pieces(_pieces(vector), StreamConfig(**vector["config"])) as stream:
        text = "".join(token.text for token in stream)
        assert (text, stream.finish_reason, stream.stop_sequence) == _expected(vector)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
async def test_async_stream_matches_the_vector(vector, anyio_backend):
    stream = astream_from_pieces(_pieces(vector), StreamConfig(**vector["config"]))
    async with stream:
        parts = [token.text async for token in stream]
        assert ("".join(parts), stream.finish_reason, stream.stop_sequence) == _expected(vector)
