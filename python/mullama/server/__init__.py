"""`mullama serve`: an OpenAI- and Ollama-compatible streaming server (Starlette on uvicorn).

from mullama.server import ServedModel, create_app, run_server

The names load on first use, so `mullama.server.defaults` can be read (by the CLI's parser)
without importing Starlette and uvicorn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mullama.server.app import create_app
    from mullama.server.engine import ServedModel
    from mullama.server.runner import BackgroundServer, run_server

_HOMES = {
    "BackgroundServer": "mullama.server.runner",
    "ServedModel": "mullama.server.engine",
    "create_app": "mullama.server.app",
    "run_server": "mullama.server.runner",
}

__all__ = ["BackgroundServer", "ServedModel", "create_app", "run_server"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mullama.server' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
