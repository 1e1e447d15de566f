"""The server's defaults, in one place: `mullama serve`'s flags and ServedModel/create_app take
them from here. Imports nothing, so the CLI's parser can read them without loading Starlette."""

DEFAULT_HOST = "127.0.0.1"
"""This machine only: listening elsewhere is a choice the user makes with --host."""
DEFAULT_PORT = 8080
DEFAULT_MAX_CONCURRENT = 8
"""Generations in the batch at once (`--parallel`): the model's scheduler steps them together."""
DEFAULT_MAX_QUEUE = 64
"""Requests that may wait for a place in the batch; beyond it a request is answered 503."""
RETRY_AFTER_S = 1
"""The Retry-After a full server answers: a decode step frees places every few tens of ms."""
DEFAULT_MAX_TOKENS = 512
"""Reply length when a request sets none (chat, Ollama, WebSocket; completions default to 16)."""
DEFAULT_TIMEOUT_MS = 600_000
"""Deadline of one generation (0: none)."""
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_LOG_LEVEL = "info"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
