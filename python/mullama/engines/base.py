"""The engine interface: what the producer needs from a forward pass, whatever runs it.

An engine owns weights and compute; tokenization, detokenization, stop scanning, deadlines and
statistics stay in the Rust core for every engine. The interface is shaped for several
sequences per step from the start: `step` takes the sequences to advance and returns one token
for each, so batching changes the scheduler, not the engines.

Lifecycle of one sequence (one conversation's KV region and sampler state):

    seq = engine.new_sequence(n_ctx)
    todo = seq.reuse_prefix(prompt_ids)        # trims the KV cache to the shared prefix
    engine.prefill(seq, todo[:-1])             # in chunks, checking for stop in between
    seq.configure(SamplerSettings.from_config(config), history=prompt_ids[:-1])
    pending = engine.step([StepRequest(seq, todo[-1:])])   # feeds the last prompt token
    while ...:
        nxt = engine.step([StepRequest(seq)])  # feeds the token `pending` sampled (may run
        out = pending.result()[0]              # ahead of reading it: one step in flight)
        pending = nxt

`cached_ids` always lists exactly the tokens whose keys and values are in the sequence's cache:
a sampled token joins it only when a later step feeds it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

REPETITION_CONTEXT = 64
"""How many recent tokens the repetition penalty looks at (mlx-lm's and llama.cpp's default)."""


@dataclass(frozen=True)
class SamplerSettings:
    """One sequence's sampling parameters (the StreamConfig fields an engine needs)."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    seed: int | None = None
    repetition_context: int = REPETITION_CONTEXT

    @classmethod
    def from_config(cls, config: Any) -> SamplerSettings:
        return cls(
            temperature=float(config.temperature),
            top_k=int(config.top_k),
            top_p=float(config.top_p),
            min_p=float(config.min_p),
            repeat_penalty=float(config.repeat_penalty),
            seed=config.seed,
        )

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True)
class StepOutput:
    """What one step produced for one sequence."""

    token: int
    logprob: float
    """The log-softmax of the logits the token was sampled from, at that token."""
    top_logprobs: list[tuple[int, float]] | None = None
    """The `top_logprobs` most likely (token, logprob) pairs, best first, when asked."""


class EngineSequence(ABC):
    """One sequence on an engine: its KV cache region and its sampler state."""

    n_ctx: int

    @property
    @abstractmethod
    def cached_ids(self) -> list[int]:
        """The tokens whose keys and values are in this sequence's cache, in order."""

    @abstractmethod
    def reuse_prefix(self, ids: Sequence[int]) -> list[int]:
        """Keeps the longest cached prefix shared with `ids` (trimming the rest) and returns
        the ids still to feed: at least one, since the last one's logits start generation."""

    @abstractmethod
    def trim(self, n: int) -> None:
        """Drops the last `n` cached tokens (invalidates everything if the cache cannot trim)."""

    @abstractmethod
    def invalidate(self) -> None:
        """Forgets the whole cache (after a failure left it in an unknown state)."""

    @abstractmethod
    def configure(self, settings: SamplerSettings, history: Sequence[int]) -> None:
        """Sets the sampler for the coming steps. `history` seeds the repetition penalty's
        window: the tokens before the next step's input (the prompt less its last token),
        since every step adds what it feeds. A set seed restarts the random state."""

    def close(self) -> None:  # noqa: B027 - engines without per-sequence resources keep it
        """Frees the sequence's resources (its KV region)."""


@dataclass(frozen=True)
class StepRequest:
    """Advance `sequence` by one token: feed `input_ids` (None: the token its previous step
    sampled) and sample the next token. `top_logprobs` asks for that many alternatives."""

    sequence: EngineSequence
    input_ids: Sequence[int] | None = None
    top_logprobs: int = 0


class StepHandle(ABC):
    """A step that may still be computing; `result()` waits for it."""

    @abstractmethod
    def result(self) -> list[StepOutput]:
        """One output per request, in request order."""


class Engine(ABC):
    """A forward pass over token ids, with KV caches and samplers."""

    name: str
    """"mlx" or "llama.cpp"."""

    steps_run_ahead: bool = False
    """Whether `step` returns before its compute is done (MLX's lazy graphs): the producer
    then queues the next step before reading a token, so the device never waits on Python.
    A synchronous engine's token is handed out first, so the consumer never waits for the
    step after it."""

    prefill_chunk: int | None = None
    """A fixed prompt chunk length, for engines whose numerics depend on how a prompt is
    split (llama.cpp's kernels differ by batch size: chunks sized by the clock made greedy
    text differ from run to run). None: the producer sizes chunks by time."""

    reason: str = ""
    """Why this engine runs the model (set by `Model.load`'s choice, e.g. "auto: no GPU for
    MLX; llama.cpp is faster on CPU")."""

    @property
    @abstractmethod
    def n_ctx_train(self) -> int: ...

    @property
    def n_ctx(self) -> int:
        """The most tokens one sequence may hold (a Context's default and maximum n_ctx)."""
        return self.n_ctx_train

    @property
    def device(self) -> str:
        """Where the forward pass runs, for people: "cpu", "Metal", "CUDA"."""
        return "cpu"

    @property
    @abstractmethod
    def n_vocab(self) -> int: ...

    @property
    def max_sequences(self) -> int:
        """How many sequences one step can advance together."""
        return 1

    @abstractmethod
    def new_sequence(self, n_ctx: int) -> EngineSequence: ...

    @abstractmethod
    def prefill(
        self,
        sequence: EngineSequence,
        ids: Sequence[int],
        should_stop: Callable[[], bool] | None = None,
    ) -> bool:
        """Feeds `ids` into the sequence's cache without sampling (one chunk: the caller
        splits long prompts and checks for stop between chunks). An engine that can stop
        inside a chunk polls `should_stop` meanwhile and returns False when it stopped
        (the cache then holds the tokens fed before); True when all of `ids` went in."""

    @abstractmethod
    def step(self, requests: Sequence[StepRequest]) -> StepHandle: ...

    @abstractmethod
    def logits(self, ids: Sequence[int]) -> Any:
        """Logits (len(ids), n_vocab) as a numpy array from one cache-less forward pass."""

    def peak_memory(self) -> int:
        """Peak memory the engine has used, in bytes (0 if it cannot tell)."""
        return 0

    def n_params(self) -> int | None:
        """How many weights the model has (None if the engine cannot tell)."""
        return None

    def close(self) -> None:  # noqa: B027 - engines that hold nothing keep the default
        """Releases the weights and every sequence."""

    def describe(self) -> str:
        """One line for people: "llama.cpp on cpu (auto: no GPU for MLX; ...)"."""
        line = f"{self.name} on {self.device}"
        return f"{line} ({self.reason})" if self.reason else line

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"
