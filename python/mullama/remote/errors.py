"""The errors of remote backends, all `MullamaError`s, each naming the server's URL.

Refusals the server gives before a reply starts (an HTTP status) are raised by
`generate_stream` / `generate` / `chat` themselves as one of these; a reply that breaks off
after it started reaches the consumer as `GenerationError`, with one of these as
`__cause__` (as every producer failure does).
"""

from __future__ import annotations

from mullama._core import MullamaError


class RemoteError(MullamaError):
    """A remote server failed or refused a request. `.url` is the request's URL, `.status`
    the HTTP status (None when there was none) and `.server_message` what the server said."""

    def __init__(
        self,
        message: str,
        *,
        url: str,
        status: int | None = None,
        server_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.server_message = server_message


class RemoteConnectionError(RemoteError):
    """The server cannot be reached (refused, unknown host, timed out connecting, closed)."""


class RemoteAuthError(RemoteError):
    """The server refused the credentials (HTTP 401 or 403): check api_key."""


class RemoteModelNotFoundError(RemoteError):
    """The server does not know the model asked for."""


class RemoteRateLimitError(RemoteError):
    """HTTP 429: too many requests. `.retry_after` is the server's Retry-After in seconds."""

    retry_after: float | None = None


class RemoteUnavailableError(RemoteError):
    """HTTP 503: the server is overloaded or starting. `.retry_after` as for 429."""

    retry_after: float | None = None


class RemoteRequestError(RemoteError):
    """The server refused the request (another 4xx), e.g. a value it does not accept."""


class RemoteServerError(RemoteError):
    """The server failed (a 5xx, or an error it reported in the middle of a reply)."""


class RemoteProtocolError(RemoteError):
    """The server's answer is not what its API promises (malformed HTTP, JSON or stream line)."""


def _names_missing_model(status: int, message: str, code: str | None) -> bool:
    if code == "model_not_found":
        return True
    lowered = message.lower()
    if "model" not in lowered:
        return False
    return status == 404 or any(
        words in lowered for words in ("not found", "not served", "does not exist")
    )


def status_error(
    url: str,
    status: int,
    server_message: str,
    *,
    code: str | None = None,
    model: str,
    retry_after: float | None = None,
) -> RemoteError:
    """The error for an HTTP refusal, with the server's own message (and error code)."""
    said = f": {server_message}" if server_message else ""
    details = {"url": url, "status": status, "server_message": server_message}
    if status in (401, 403):
        return RemoteAuthError(
            f"{url} refused the credentials (HTTP {status}){said}; check api_key", **details
        )
    if _names_missing_model(status, server_message, code):
        return RemoteModelNotFoundError(
            f"{url} does not serve the model {model!r} (HTTP {status}){said}", **details
        )
    if status == 404:
        return RemoteRequestError(
            f"{url} has no such route (HTTP 404){said}; is the URL's API path right "
            "(/v1 for OpenAI-compatible servers, /api or ollama:// for Ollama)?",
            **details,
        )
    kind: type[RemoteError]
    if status == 429:
        kind = RemoteRateLimitError
    elif status == 503:
        kind = RemoteUnavailableError
    elif 400 <= status < 500:
        kind = RemoteRequestError
    else:
        kind = RemoteServerError
    error = kind(f"{url} answered HTTP {status}{said}", **details)
    if isinstance(error, RemoteRateLimitError | RemoteUnavailableError):
        error.retry_after = retry_after
    return error
