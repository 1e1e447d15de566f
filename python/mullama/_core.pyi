# Hand-written stubs for the Rust extension mullama._core (crates/mullama-py).
# tests/test_stubs.py checks these names against the runtime module in both directions, runs
# mypy.stubtest on the module and compares StreamConfig's constructor with its field table.
# pyo3 classes take their arguments in __new__ (their __init__ is object's), and cannot be
# subclassed, hence __new__ and @final below.

from collections.abc import Iterable, Sequence
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Literal, final

from typing_extensions import Buffer, Self

__version__: str

_FinishReason = Literal["stop", "length", "timeout", "cancelled", "error"]

# ---------------------------------------------------------------- errors

class MullamaError(Exception):
    """Base class of every mullama error."""

class ConfigError(MullamaError):
    """A configuration value is invalid."""

    field: str
    value: str

class StreamTimeoutError(MullamaError):
    """The stream's deadline (timeout_ms) passed."""

    timeout_ms: int

class GenerationError(MullamaError):
    """The producer failed; its original exception (if any) is ``__cause__``."""

class ModelLoadError(MullamaError): ...
class TokenizerError(MullamaError): ...
class ContextLengthError(MullamaError): ...

# ---------------------------------------------------------------- config

@final
class StreamConfig:
    """Sampling and streaming parameters; every assignment is validated (ConfigError)."""

    def __new__(
        cls,
        *,
        max_tokens: int = 256,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.9,
        min_p: float = 0.0,
        repeat_penalty: float = 1.0,
        seed: int | None = None,
        stop_sequences: str | Iterable[str] = [],
        include_stop: bool = False,
        buffer_size: int = 64,
        timeout_ms: int = 30000,
    ) -> Self: ...
    max_tokens: int
    temperature: float
    top_k: int
    top_p: float
    min_p: float
    repeat_penalty: float
    seed: int | None
    @property
    def stop_sequences(self) -> list[str]: ...
    @stop_sequences.setter
    def stop_sequences(self, value: str | Iterable[str]) -> None: ...
    include_stop: bool
    buffer_size: int
    timeout_ms: int
    def replace(
        self,
        *,
        max_tokens: int = ...,
        temperature: float = ...,
        top_k: int = ...,
        top_p: float = ...,
        min_p: float = ...,
        repeat_penalty: float = ...,
        seed: int | None = ...,
        stop_sequences: str | Iterable[str] = ...,
        include_stop: bool = ...,
        buffer_size: int = ...,
        timeout_ms: int = ...,
    ) -> StreamConfig: ...
    @staticmethod
    def fields() -> list[tuple[str, str, object, str]]:
        """(name, annotation, default, doc) of every field, in order."""
    def to_dict(self) -> dict[str, object]: ...
    def __getnewargs_ex__(self) -> tuple[tuple[()], dict[str, object]]: ...
    def __eq__(self, other: object, /) -> bool: ...

# ---------------------------------------------------------------- events

@final
class Token:
    """One stream event (immutable)."""

    @property
    def text(self) -> str: ...
    @property
    def token(self) -> int | None: ...
    @property
    def id(self) -> int | None: ...
    @property
    def logprob(self) -> float | None: ...
    @property
    def top_logprobs(self) -> list[tuple[int, float]]: ...
    @property
    def finish_reason(self) -> _FinishReason | None: ...
    @property
    def stop_sequence(self) -> str | None: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def prompt_tps(self) -> float: ...
    @property
    def generation_tokens(self) -> int: ...
    @property
    def generation_tps(self) -> float: ...
    @property
    def time_to_first_token(self) -> float | None: ...
    @property
    def elapsed(self) -> float: ...
    @property
    def peak_memory(self) -> float: ...

# ---------------------------------------------------------------- vocabularies

@final
class PieceTable:
    """Token id i -> pieces[i]; a vocabulary for tests and synthetic producers."""

    def __new__(cls, pieces: Iterable[bytes | bytearray]) -> Self: ...
    def __len__(self) -> int: ...
    def piece(self, id: int) -> bytes | None: ...

@final
class Tokenizer:
    """llama.cpp-exact tokenizer from a GGUF model or a Hugging Face tokenizer.json."""

    @staticmethod
    def from_gguf(source: str | PathLike[str] | GgufFile) -> Tokenizer: ...
    @staticmethod
    def from_json(path: str | PathLike[str]) -> Tokenizer: ...
    def encode(self, text: str, special: bool = True, add_bos: bool = False) -> list[int]: ...
    def decode(self, ids: Sequence[int], skip_special: bool = False) -> str: ...
    def token_bytes(self, id: int, special: bool = False) -> bytes: ...
    def is_end_of_generation(self, id: int) -> bool: ...
    def is_control(self, id: int) -> bool: ...
    def __len__(self) -> int: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def bos_token_id(self) -> int | None: ...
    @property
    def eos_token_id(self) -> int | None: ...
    @property
    def eot_token_id(self) -> int | None: ...
    @property
    def add_bos(self) -> bool: ...
    @property
    def chat_template(self) -> str | None: ...
    @property
    def end_of_generation_ids(self) -> list[int]: ...
    @property
    def control_token_ids(self) -> list[int]: ...
    @property
    def pre_tokenizer(self) -> str: ...

# ---------------------------------------------------------------- GGUF files

@final
class GgufTensor:
    """One tensor directory entry (immutable)."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str:
        """ggml's type name, e.g. "Q4_1" or "F32"."""
    @property
    def shape(self) -> tuple[int, ...]:
        """Outermost dimension first (numpy's order; GGUF's ne[] reversed)."""
    @property
    def offset(self) -> int:
        """Absolute offset of the data in the file."""
    @property
    def nbytes(self) -> int: ...

@final
class GgufFile:
    """The checked header of a GGUF file: metadata and tensor directory (no tensor data).
    Metadata value types use the GGUF specification's names ("uint32", "string", ...)."""

    @staticmethod
    def open(path: str | PathLike[str]) -> GgufFile: ...
    @property
    def path(self) -> Path: ...
    @property
    def version(self) -> int: ...
    @property
    def alignment(self) -> int: ...
    @property
    def data_offset(self) -> int: ...
    @property
    def file_size(self) -> int: ...
    @property
    def architecture(self) -> str | None: ...
    @property
    def metadata(self) -> dict[str, object]:
        """A new dict; arrays over 1000 elements become
        {"type": "array", "element_type": <type name>, "length": n}."""
    def get(self, key: str, default: object = None) -> object:
        """The whole value of `key` (arrays as lists), or `default`."""
    @property
    def tensors(self) -> list[GgufTensor]: ...
    def tensor(self, name: str) -> GgufTensor | None: ...

def gguf_metadata(path: str | PathLike[str], full_arrays: bool = False) -> dict[str, object]:
    """GGUF key/value metadata; arrays over 1000 elements are summarised unless full_arrays."""

def pretokenize(kind: str, text: str) -> list[str]:
    """The words pre-tokenizer `kind` (a tokenizer.ggml.pre name) cuts `text` into."""

# ---------------------------------------------------------------- logits

def summarize_logits(logits: Buffer) -> tuple[int, float, float] | None:
    """(argmax, max, log_sum_exp) of a 1-D C-contiguous float32 buffer (a token's logprob is
    its logit minus log_sum_exp); None when the buffer is empty or holds a NaN."""

# ---------------------------------------------------------------- the stream

@final
class TokenProducer:
    """The push side of a stream; every method may be called from any thread."""

    def set_prompt_tokens(self, n: int) -> None: ...
    def set_peak_memory(self, bytes: int) -> None: ...
    def push(
        self,
        token: int,
        logprob: float | None = None,
        top_logprobs: Sequence[tuple[int, float]] | None = None,
    ) -> bool: ...
    def finish(
        self, reason: Literal["stop", "length"] = "stop", token: int | None = None
    ) -> None: ...
    def fail(self, exc: BaseException) -> None: ...
    @property
    def stop_reason(self) -> _FinishReason | None: ...
    def wait(self, seconds: float) -> bool: ...
    def room(self) -> int: ...
    def set_room_signal(self, signal: RoomSignal) -> None: ...

@final
class RoomSignal:
    """Wakes a loop feeding many streams when one frees room or ends (or on notify())."""

    def __new__(cls) -> Self: ...
    @property
    def epoch(self) -> int: ...
    def notify(self) -> None: ...
    def wait(self, epoch: int, seconds: float) -> int: ...

@final
class TextProducer:
    """The push side of a stream fed with text deltas (remote backends), not token ids."""

    def push(self, delta: str | bytes | bytearray, tokens: int = 1) -> bool: ...
    def finish(self, reason: Literal["stop", "length"] = "stop") -> None: ...
    def fail(self, exc: BaseException) -> None: ...
    def set_prompt_tokens(self, n: int) -> None: ...
    def set_generation_tokens(self, n: int) -> None: ...
    @property
    def stop_reason(self) -> _FinishReason | None: ...
    def wait(self, seconds: float) -> bool: ...

@final
class TokenStream:
    """The consumer side: iterate to receive Token events."""

    def __iter__(self) -> Self: ...
    def __next__(self) -> Token: ...
    def try_next(self) -> Token | None: ...
    def set_wakeup_fd(self, fd: int) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...
    @property
    def finish_reason(self) -> _FinishReason | None: ...
    @property
    def stop_sequence(self) -> str | None: ...
    @property
    def stats(self) -> dict[str, float | int | None]: ...
    @property
    def tokens_generated(self) -> int: ...
    def tokens_per_second(self) -> float: ...
    def time_left(self) -> float | None: ...

def open_stream(
    config: StreamConfig | None, vocab: PieceTable | Tokenizer
) -> tuple[TokenProducer, TokenStream]: ...
def open_text_stream(config: StreamConfig | None = None) -> tuple[TextProducer, TokenStream]: ...
def spawn_piece_producer(
    pieces: Sequence[bytes], config: StreamConfig | None = None, delay_s: float = 0.0
) -> TokenStream: ...
