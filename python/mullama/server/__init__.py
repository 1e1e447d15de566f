"""`mullama serve`: an OpenAI- and Ollama-compatible streaming server (Starlette on uvicorn).

from mullama.server import ServedModel, create_app, run_server
"""

from mullama.server.app import create_app
from mullama.server.engine import GenerationRequest, ServedModel
from mullama.server.runner import BackgroundServer, run_server

__all__ = ["BackgroundServer", "GenerationRequest", "ServedModel", "create_app", "run_server"]
