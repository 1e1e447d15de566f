"""`Model`: an engine (the forward pass) plus the Rust tokenizer, loaded from a GGUF file or an
MLX folder."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mullama._core import ConfigError, ModelLoadError, Tokenizer, TokenizerError
from mullama.chat import Message, render_chat
from mullama.engines.base import Engine
from mullama.loader.info import ModelInfo, gguf_info
from mullama.scheduler import Scheduler

if TYPE_CHECKING:
    from mullama.remote import RemoteModel


class Model:
    """A loaded model: call `Model.load(path)`; generate through a `Context`.

    `engine` runs the forward pass (MLX or llama.cpp, see `mullama.engines`); `engine.reason`
    says why it was chosen. One scheduler per Model owns the forward pass: every stream on it
    (from any thread or task) joins one batch, decoded one step for all, each stream still
    under its own backpressure; `parallel` sequences at most are in the batch, later requests
    wait their turn in arrival order.
    """

    def __init__(
        self,
        engine: Engine,
        info: ModelInfo,
        tokenizer: Tokenizer,
        chat_template: str | None,
        special_tokens: dict[str, str],
    ) -> None:
        self.engine = engine
        """The forward pass (see `mullama.engines`)."""
        self._info = info
        self._tokenizer = tokenizer
        self._chat_template = chat_template
        self._special_tokens = special_tokens
        self.scheduler = Scheduler(engine)
        """Runs every generation and engine call on this model (see `mullama.scheduler`)."""
        self._eog_ids = frozenset(tokenizer.end_of_generation_ids)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        engine: str | None = None,
        n_ctx: int | None = None,
        parallel: int | None = None,
        n_threads: int | None = None,
    ) -> Model:
        """Loads a GGUF file, an MLX/Hugging Face safetensors folder, or (no argument, or
        "smollm2") the built-in SmolLM2-135M-Instruct.

        `engine`: "auto" (the default, or $MULLAMA_ENGINE): MLX where it has a GPU, llama.cpp
        on CPU-only hosts where it is installed, else MLX on the CPU; or "mlx" / "llama.cpp".
        `n_ctx`: the most tokens a Context may hold (default: the model's n_ctx_train; on
        llama.cpp min(n_ctx_train, 4096), the KV cells it allocates per resident Context).
        `parallel`: the most sequences one batched step advances (default 4); more
        concurrent streams queue for a place in the batch.
        `n_threads`: llama.cpp's compute threads (default 1: its workers spin, and on a host
        shared with other work more threads than free cores stall each other; on an otherwise
        idle machine, one per core is faster). MLX picks its own.
        Raises ModelLoadError naming the problem (for an engine that is not installed, with
        the command that installs it)."""
        from mullama import loader
        from mullama.engines.choice import choose_engine

        if n_ctx is not None and (
            not isinstance(n_ctx, int) or isinstance(n_ctx, bool) or n_ctx < 1
        ):
            raise ConfigError(f"invalid n_ctx = {n_ctx!r}: must be a positive integer")
        if parallel is not None and (
            not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1
        ):
            raise ConfigError(f"invalid parallel = {parallel!r}: must be a positive integer")
        if n_threads is not None and (
            not isinstance(n_threads, int) or isinstance(n_threads, bool) or n_threads < 1
        ):
            raise ConfigError(f"invalid n_threads = {n_threads!r}: must be a positive integer")
        sequences = {} if parallel is None else {"max_sequences": parallel}
        threads = {} if n_threads is None else {"n_threads": n_threads}
        resolved = loader.resolve_model(None if path is None else os.fspath(path))
        gguf = None if resolved.is_dir() else loader.open_model_file(resolved)
        unsupported = None if gguf is None else loader.mlx_unsupported(gguf)
        choice = choose_engine(engine, resolved, mlx_supports=unsupported)
        if choice.name == "llama.cpp":
            from mullama.engines.llamacpp import LlamaCppEngine

            assert gguf is not None  # choose_engine picks llama.cpp for GGUF files only
            runner: Engine = LlamaCppEngine(resolved, n_ctx=n_ctx, **sequences, **threads)
            info = gguf_info(gguf, n_vocab=runner.n_vocab, n_ctx_train=runner.n_ctx_train)
        else:
            from mullama.engines.mlx import MlxEngine

            loaded = loader.load_gguf(gguf) if gguf is not None else loader.load_model(resolved)
            runner = MlxEngine(loaded, n_ctx=n_ctx, **sequences)
            info = loaded.info
        runner.reason = choice.reason
        if gguf is None:
            tokenizer, template, specials = _folder_tokenizer(resolved)
        else:
            # From the header the loader already parsed: one parse per load.
            tokenizer = Tokenizer.from_gguf(gguf)
            template = tokenizer.chat_template
            specials = {}
        return cls(runner, info, tokenizer, template, specials)

    @staticmethod
    def connect(url: str, *, model: str, api_key: str | None = None, **options: Any) -> RemoteModel:
        """A model on an OpenAI-compatible (http(s)://host/v1) or Ollama (ollama://host:port,
        http://host:port/api) server, with a Context's generate_stream / generate / chat
        (see mullama.remote)."""
        from mullama.remote import connect

        return connect(url, model=model, api_key=api_key, **options)

    # -- what the model is ---------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        """Path, architecture, metadata, sizes and quantization, as loaded."""
        return self._info

    @property
    def path(self) -> Path:
        return self._info.path

    @property
    def architecture(self) -> str:
        return self._info.architecture

    @property
    def metadata(self) -> dict[str, Any]:
        return self._info.metadata

    @property
    def n_vocab(self) -> int:
        return self._info.n_vocab

    @property
    def n_ctx_train(self) -> int:
        return self._info.n_ctx_train

    @property
    def n_ctx(self) -> int:
        """The most tokens a Context on this model may hold (its default n_ctx)."""
        return self.engine.n_ctx

    @property
    def quantization(self) -> str:
        return self._info.quantization

    @property
    def chat_template(self) -> str | None:
        return self._chat_template

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    @property
    def end_of_generation_ids(self) -> frozenset[int]:
        return self._eog_ids

    @property
    def mlx_model(self) -> Any:
        """The mlx-lm model module (for advanced use); only on the MLX engine."""
        module = getattr(self.engine, "model", None)
        if self.engine.name != "mlx" or module is None:
            raise AttributeError(
                f"this model runs on the {self.engine.name} engine, which has no MLX module "
                "(load it with engine='mlx')"
            )
        return module

    # -- tokens ----------------------------------------------------------------------------
    def tokenize(self, text: str, special: bool = True, add_bos: bool = False) -> list[int]:
        """Token ids of `text`; `special` parses control tokens such as <|im_end|>."""
        ids = self._tokenizer.encode(text, special)
        bos = self._tokenizer.bos_token_id
        if add_bos and bos is not None and (not ids or ids[0] != bos):
            ids.insert(0, bos)
        return ids

    def detokenize(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode(list(ids))

    def token_bytes(self, token_id: int) -> bytes:
        return self._tokenizer.token_bytes(token_id)

    def prompt_ids(self, prompt: str | Sequence[int]) -> list[int]:
        """A raw prompt as the model should see it: BOS added where the model wants one."""
        if isinstance(prompt, str):
            return self.tokenize(prompt, special=True, add_bos=bool(self._tokenizer.add_bos))
        ids = [int(i) for i in prompt]
        for i in ids:
            if not 0 <= i < self.n_vocab:
                raise TokenizerError(f"token id {i} is outside the vocabulary (0..{self.n_vocab})")
        return ids

    def apply_chat_template(
        self, messages: Sequence[Message], add_generation_prompt: bool = True
    ) -> str:
        bos_id = self._tokenizer.bos_token_id
        eos_id = self._tokenizer.eos_token_id
        bos = self._special_tokens.get("bos_token")
        eos = self._special_tokens.get("eos_token")
        if bos is None:
            bos = self.token_bytes(bos_id).decode("utf-8", "replace") if bos_id is not None else ""
        if eos is None:
            eos = self.token_bytes(eos_id).decode("utf-8", "replace") if eos_id is not None else ""
        return render_chat(
            self._chat_template,
            messages,
            bos_token=bos,
            eos_token=eos,
            add_generation_prompt=add_generation_prompt,
        )

    def chat_ids(self, messages: Sequence[Message]) -> list[int]:
        text = self.apply_chat_template(messages)
        ids = self.tokenize(text, special=True)
        bos = self._tokenizer.bos_token_id
        if self._tokenizer.add_bos and bos is not None and (not ids or ids[0] != bos):
            ids.insert(0, bos)
        return ids

    # -- forward pass ------------------------------------------------------------------------
    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Logits of shape (len(ids), n_vocab) from one forward pass; no sampling, no cache."""
        ids = self.prompt_ids(list(ids))
        if not ids:
            raise TokenizerError("logits() needs at least one token id")
        return self.scheduler.call(self.engine.logits, ids)

    def close(self) -> None:
        """Frees the engine's weights and caches now rather than when the Model is collected
        (waits for a running step). Generating afterwards is a GenerationError."""
        self.scheduler.call(self.engine.close)

    def __repr__(self) -> str:
        return (
            f"Model(path={str(self.path)!r}, architecture={self.architecture!r}, "
            f"n_vocab={self.n_vocab}, n_ctx_train={self.n_ctx_train}, "
            f"engine={self.engine.name!r})"
        )


def _folder_tokenizer(folder: Path) -> tuple[Tokenizer, str | None, dict[str, str]]:
    """Tokenizer, chat template and special token texts of an MLX / Hugging Face folder."""
    if not (folder / "tokenizer.json").is_file():
        raise ModelLoadError(f"{folder}: no tokenizer.json in the model folder")
    tokenizer = Tokenizer.from_json(str(folder))
    template = tokenizer.chat_template
    specials: dict[str, str] = {}
    config_path = folder / "tokenizer_config.json"
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{config_path}: not valid JSON ({exc})") from exc
        template = config.get("chat_template") or template
        for key in ("bos_token", "eos_token"):
            value = config.get(key)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                specials[key] = value
    if isinstance(template, list):  # HF allows named templates; "default" is the chat one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return tokenizer, template, specials
