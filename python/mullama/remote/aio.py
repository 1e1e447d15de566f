"""`AsyncRemoteModel`: a RemoteModel for asyncio and trio (through anyio).

Sending the request and waiting for the server's answer runs in a worker thread on the
stream's first iteration (refusals are raised there); the reply then reaches the event loop
through `AsyncTokenStream`, like a local model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio.to_thread

from mullama._core import StreamConfig, TokenStream
from mullama.aio.stream import AsyncTokenStream
from mullama.chat import Message
from mullama.remote.backend import RemoteModel
from mullama.request import GenerationRequest, takes_request
from mullama.result import GenerationResult, ResultCollector


class AsyncRemoteModel:
    """The async twin of `RemoteModel` (same arguments); `.remote` is the sync object."""

    def __init__(self, remote: RemoteModel) -> None:
        self.remote = remote

    @property
    def url(self) -> str:
        return self.remote.url

    @property
    def model(self) -> str:
        return self.remote.model

    @takes_request
    def generate_stream(self, request: GenerationRequest) -> AsyncTokenStream:
        """Streams Token events; a refusal is raised by the first `__anext__`."""
        return self.stream_request(request)

    def stream_request(self, request: GenerationRequest) -> AsyncTokenStream:
        call = self.remote.prepare(request)

        async def send() -> TokenStream:
            try:
                await anyio.to_thread.run_sync(call.connect, abandon_on_cancel=True)
            except BaseException:
                # Cancelled while waiting: closing the stream makes the worker give up.
                if call.stream is not None:
                    call.stream.close()
                raise
            return call.start()

        return AsyncTokenStream.opened_later(
            send,
            on_progress=request.on_progress,
            progress_interval_s=request.progress_interval_s,
        )

    @takes_request
    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """The whole reply with its statistics."""
        collector = ResultCollector(frozenset())
        stream = self.stream_request(request)
        async with stream:
            async for event in stream:
                collector.add(event)
        return collector.result(stream.finish_reason, stream.stop_sequence)

    async def chat(
        self,
        messages: Sequence[Message],
        config: StreamConfig | None = None,
        **overrides: Any,
    ) -> GenerationResult:
        """One assistant turn for `messages`."""
        return await self.generate(None, config, messages=messages, **overrides)

    async def reset(self) -> None:
        """Nothing to forget: the server keeps no conversation between requests."""

    def __repr__(self) -> str:
        return f"Async{self.remote!r}"
