"""Simultaneous generation with the wait-k policy (STACL, Ma et al. 2019) over a live source.

The source (text chunks arriving over time) is cut into words as it arrives. Target word t
is written only after min(k + t - 1, |source|) source words have been read; once the source
has ended and been read, the target runs to its end.

The prompt is the model's chat template around "instruction, source so far", followed by
the target so far (as the token ids already written). A read rebuilds that prompt with the
new source words and hands it to the sequence's `reuse_prefix`, which trims the KV cache to
the longest common prefix (instruction and old source), so only the new source words, the
template's closing tokens and the target so far are fed again. A target word is complete at
the first whitespace after its text (or at the end of generation, or after
max_tokens_per_word tokens); when a word ends at a token that starts the next word and the
schedule asks for a read first, that token (already fed by the step in flight) is trimmed
with the rest of the old prompt's tail and sampled again after the read.

Tokens travel through one core stream (exact stops, UTF-8, deadline, backpressure); the job
holds each token back until the next one shows whether it ends its word, and tells the
consumer side what each pushed token means (`TokenMark`) through a queue beside the stream.
"""

from mullama.waitk.events import WaitkEvent, WaitkEvents, WaitkStream
from mullama.waitk.job import TokenMark, WaitkJob
from mullama.waitk.metrics import ReadRecord, WaitkMetrics, average_lagging
from mullama.waitk.request import (
    DEFAULT_INSTRUCTION,
    WaitkRequest,
    WaitkSettings,
    takes_waitk_request,
    waitk_request,
    waitk_settings,
)
from mullama.waitk.source import Source, SourceWords
from mullama.waitk.start import chat_prompt_builder, open_waitk

__all__ = [
    "DEFAULT_INSTRUCTION",
    "ReadRecord",
    "Source",
    "SourceWords",
    "TokenMark",
    "WaitkEvent",
    "WaitkEvents",
    "WaitkJob",
    "WaitkMetrics",
    "WaitkRequest",
    "WaitkSettings",
    "WaitkStream",
    "average_lagging",
    "chat_prompt_builder",
    "open_waitk",
    "takes_waitk_request",
    "waitk_request",
    "waitk_settings",
]
