"""`mullama serve`: load the model and serve it until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import ipaddress
import os

from mullama.cli.common import load_model
from mullama.cli.exit_codes import ExitCode, UsageError
from mullama.cli.output import status


def serve(args: argparse.Namespace) -> int:
    from mullama.server import ServedModel, create_app
    from mullama.server.runner import bind_socket, run_server

    for flag in ("parallel", "max_tokens", "max_body_bytes"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 1")
    if args.max_queue < 0:
        raise UsageError("--max-queue must be >= 0")
    if args.timeout < 0:
        raise UsageError("--timeout must be >= 0")
    if args.ctx_size is not None and args.ctx_size < 1:
        raise UsageError("--ctx-size must be at least 1")  # before the port is taken
    api_key = args.api_key or os.environ.get("MULLAMA_API_KEY") or None
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from exc

    name, model = load_model(args)
    served = ServedModel(
        model,
        name,
        n_ctx=args.ctx_size,
        max_concurrent=args.parallel,
        max_queue=args.max_queue,
        default_max_tokens=args.max_tokens,
        timeout_ms=args.timeout,
    )
    app = create_app(served, api_key=api_key, max_body_bytes=args.max_body_bytes)
    host, port = sock.getsockname()[:2]
    if not _is_loopback(args.host) and api_key is None:
        status(
            f"warning: listening on {args.host} without --api-key: anyone who can reach "
            "this machine can use the model"
        )
    status(
        f"serving {name} on http://{host}:{port} (chat page: /, OpenAI: /v1, Ollama: /api, "
        f"WebSocket: /v1/ws) with {model.engine.describe()}; Ctrl+C to stop"
    )
    run_server(app, sock=sock, log_level=args.log_level)
    status("stopped")
    return ExitCode.OK


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
