"""Chat templates: the model's own Jinja template, rendered the way Hugging Face renders it."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from mullama._core import ConfigError

Message = Mapping[str, Any]

# ChatML: used when a model ships no template of its own (most instruct GGUFs do ship one).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _raise_exception(message: str) -> None:
    raise ConfigError(f"chat template rejected the messages: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


def _tojson(value: Any, indent: int | None = None, **_: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


@lru_cache(maxsize=16)
def _compile(template: str):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(template)


def validate_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Checks the OpenAI-style message list; raises ConfigError naming the bad entry."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ConfigError("messages must be a list of {'role': ..., 'content': ...} dicts")
    if not messages:
        raise ConfigError("messages must not be empty")
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ConfigError(f"messages[{i}] must be a dict, got {type(message).__name__}")
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise ConfigError(f"messages[{i}] has no 'role' string")
        content = message.get("content", "")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise ConfigError(f"messages[{i}]['content'] must be a string")
        checked.append({**message, "role": role, "content": content})
    return checked


def render_chat(
    template: str | None,
    messages: Sequence[Message],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
) -> str:
    """Renders `messages` with `template` (ChatML when None)."""
    checked = validate_messages(messages)
    compiled = _compile(template or CHATML_TEMPLATE)
    return compiled.render(
        messages=checked,
        add_generation_prompt=add_generation_prompt,
        bos_token=bos_token,
        eos_token=eos_token,
    )
