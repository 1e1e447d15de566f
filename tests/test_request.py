"""One request type: every generation entry point takes `generation_request`'s arguments and
rejects bad ones with ConfigError before anything starts."""

from __future__ import annotations

import inspect

import pytest

from mullama import AsyncContext, AsyncModel, ConfigError, Context, StreamConfig
from mullama.remote import AsyncRemoteModel, RemoteModel
from mullama.request import generation_request

ENTRY_POINTS = [
    Context.generate_stream,
    Context.generate,
    AsyncModel.generate_stream,
    AsyncModel.generate,
    AsyncContext.generate_stream,
    AsyncContext.generate,
    RemoteModel.generate_stream,
    RemoteModel.generate,
    AsyncRemoteModel.generate_stream,
    AsyncRemoteModel.generate,
]


@pytest.mark.parametrize("method", ENTRY_POINTS, ids=lambda m: m.__qualname__)
def test_every_entry_point_has_the_request_signature(method) -> None:
    params = list(inspect.signature(method).parameters.values())
    assert params[0].name == "self"
    assert params[1:] == list(inspect.signature(generation_request).parameters.values())


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({}, "exactly one of prompt or messages"),
        ({"prompt": "hi", "messages": []}, "exactly one of prompt or messages"),
        ({"prompt": 3}, "prompt must be a str or a list of token ids"),
        ({"messages": "hi"}, "messages must be a list"),
        ({"prompt": "hi", "top_logprobs": 21}, "top_logprobs"),
        ({"prompt": "hi", "top_logprobs": True}, "top_logprobs"),
        ({"prompt": "hi", "config": {"max_tokens": 3}}, "config must be a StreamConfig"),
        ({"prompt": "hi", "progress_interval_s": 1.0}, "progress_interval_s"),
        ({"prompt": "hi", "max_tokens": -1}, "max_tokens"),
    ],
)
def test_bad_arguments_raise_config_error_naming_them(kwargs, names) -> None:
    with pytest.raises(ConfigError, match=names):
        generation_request(**kwargs)


def test_overrides_apply_on_top_of_the_config() -> None:
    request = generation_request([1, 2], StreamConfig(max_tokens=9), max_tokens=3, seed=4)
    assert request.prompt == [1, 2]
    assert (request.config.max_tokens, request.config.seed) == (3, 4)


def test_a_context_rejects_bad_arguments_before_starting(tiny_gguf) -> None:
    from mullama import Model

    ctx = Context(Model.load(tiny_gguf))
    with pytest.raises(ConfigError):
        ctx.generate_stream("hi", top_logprobs=99)
    assert ctx.last_generation is None and not ctx.busy
