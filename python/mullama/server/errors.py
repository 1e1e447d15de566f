"""API errors and how each API family spells them on the wire.

OpenAI routes answer `{"error": {"message", "type", "param", "code"}}`; Ollama routes answer
`{"error": "message"}` (what the ollama SDK turns into `ResponseError`).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from mullama import (
    ConfigError,
    ContextLengthError,
    GenerationError,
    MullamaError,
    TokenizerError,
)


class APIError(Exception):
    """A request the server refuses, with the HTTP status to answer."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        """Seconds for the Retry-After header (503s of a full server)."""
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def openai_body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def ollama_body(self) -> dict[str, Any]:
        return {"error": self.message}


def bad_param(param: str, message: str) -> APIError:
    return APIError(400, message, param=param, code="invalid_value")


def from_mullama_error(exc: MullamaError, prompt_field: str = "messages") -> APIError:
    """The API error for a mullama exception, raised starting a generation or while it runs;
    a prompt over the context names `prompt_field`, the request field that holds the prompt."""
    if isinstance(exc, ContextLengthError):
        return APIError(400, str(exc), param=prompt_field, code="context_length_exceeded")
    if isinstance(exc, (ConfigError, TokenizerError)):
        return APIError(400, str(exc), code="invalid_value")
    # The core's GenerationError already says "generation failed: ..."; others get it here.
    message = str(exc) if isinstance(exc, GenerationError) else f"generation failed: {exc}"
    return APIError(500, message, type="server_error", code="internal_error")


def headers(err: APIError) -> dict[str, str]:
    """The HTTP headers an error response carries besides its body."""
    return {} if err.retry_after is None else {"Retry-After": str(err.retry_after)}


def openai_error_response(err: APIError) -> JSONResponse:
    return JSONResponse(err.openai_body(), status_code=err.status, headers=headers(err))


def ollama_error_response(err: APIError) -> JSONResponse:
    return JSONResponse(err.ollama_body(), status_code=err.status, headers=headers(err))
