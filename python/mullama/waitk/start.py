"""Starting a wait-k generation on a model through a Context's start_job."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mullama._core import TokenStream, open_stream
from mullama.engines.base import EngineSequence
from mullama.scheduler import GenerationJob
from mullama.waitk.events import WaitkEvents
from mullama.waitk.job import PromptBuilder, WaitkJob
from mullama.waitk.request import WaitkRequest
from mullama.waitk.source import SourceWords, source_kind, start_source


def chat_prompt_builder(
    chat_ids: Callable[[list[dict[str, str]]], list[int]], instruction: str
) -> PromptBuilder:
    """The prompt layout: one user turn "instruction, blank line, source so far" in the
    model's chat template, ready for the assistant's reply (the target)."""

    def build(source_text: str) -> list[int]:
        content = f"{instruction}\n\n{source_text}" if instruction else source_text
        return chat_ids([{"role": "user", "content": content}])

    return build


def open_waitk(
    model: Any,
    start_job: Callable[[Callable[..., GenerationJob]], GenerationJob],
    request: WaitkRequest,
    *,
    allow_async: bool = False,
) -> tuple[TokenStream, WaitkEvents, str]:
    """Starts a wait-k generation of `model` through `start_job` (a Context's); returns the
    core stream, the event converter, and the source's kind ("async": the caller pumps)."""
    source, settings, config = request.source, request.settings, request.config
    top_logprobs = request.top_logprobs
    kind = source_kind(source, allow_async=allow_async)
    words = SourceWords()
    producer, stream = open_stream(config, model.tokenizer)
    build_prompt = chat_prompt_builder(model.chat_ids, settings.instruction)

    def build(sequence: EngineSequence, on_exit: Callable[[GenerationJob], None]) -> WaitkJob:
        return WaitkJob(
            model.scheduler,
            sequence,
            config,
            producer,
            model.end_of_generation_ids,
            settings=settings,
            words=words,
            build_prompt=build_prompt,
            token_bytes=model.token_bytes,
            top_logprobs=top_logprobs,
            on_exit=on_exit,
        )

    job = start_job(build)
    assert isinstance(job, WaitkJob)
    try:
        start_source(source, kind, words)
    except BaseException:
        stream.close()
        raise
    return stream, WaitkEvents(job, model.end_of_generation_ids), kind
