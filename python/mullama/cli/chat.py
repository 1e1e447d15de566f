"""Interactive chat: history across turns, /set, /clear, /bye; Ctrl+C stops the reply."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mullama import ConfigError, ContextLengthError, MullamaError, StreamTimeoutError
from mullama.cli.common import make_config
from mullama.cli.exit_codes import ExitCode, UsageError, describe
from mullama.cli.output import TextOut, stats_line, status
from mullama.cli.remote import generation_target, open_ledger_chat
from mullama.cli.repl import LineReader

HELP = """Commands:
  /set PARAM VALUE   change a setting: temperature, top_k, top_p, min_p, repeat_penalty,
                     seed, max_tokens, timeout (ms), stop (a stop text; 'none' clears),
                     system (the system prompt; the rest of the line)
  /set               show the settings
  /clear             forget the conversation
  /bye               leave (Ctrl+D too)
  \"\"\"                several lines: start and end a message with \"\"\"
Up and Down recall earlier lines (kept across sessions); Ctrl+C stops the current reply."""

SETTABLE = {
    "temperature": ("temperature", float),
    "top_k": ("top_k", int),
    "top_p": ("top_p", float),
    "min_p": ("min_p", float),
    "repeat_penalty": ("repeat_penalty", float),
    "seed": ("seed", int),
    "max_tokens": ("max_tokens", int),
    "timeout": ("timeout_ms", int),
}


class ChatSession:
    def __init__(
        self, context: Any, config: Any, system: str | None, out: TextOut, verbose: bool
    ) -> None:
        self.context = context
        self.config = config
        self.system = system
        self.out = out
        self.verbose = verbose
        self.history: list[dict[str, str]] = []

    def messages(self) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + self.history

    # -- commands -----------------------------------------------------------------------------
    def command(self, line: str) -> bool:
        """Runs a /command; returns False when the session should end."""
        name, _, rest = line[1:].strip().partition(" ")
        rest = rest.strip()
        if name in ("bye", "exit", "quit"):
            return False
        if name == "clear":
            self.history.clear()
            self.context.reset()
            status("conversation cleared")
        elif name == "set":
            self.set(rest)
        elif name in ("help", "?"):
            print(HELP, file=sys.stderr)
        else:
            status(f"unknown command /{name} (try /help)")
        return True

    def set(self, rest: str) -> None:
        param, _, value = rest.partition(" ")
        value = value.strip()
        if not param:
            settings = self.config.to_dict()
            settings["system"] = self.system
            for key, current in settings.items():
                print(f"  {key} = {current!r}", file=sys.stderr)
            return
        if param == "system":
            self.system = value or None
            status("system prompt set" if value else "system prompt cleared")
            return
        if param == "stop":
            stops = [] if value in ("", "none") else [*self.config.stop_sequences, value]
            self.config = self.config.replace(stop_sequences=stops)
            status(f"stop = {stops!r}")
            return
        if param not in SETTABLE:
            status(f"cannot set '{param}' (one of: {', '.join([*SETTABLE, 'stop', 'system'])})")
            return
        field, kind = SETTABLE[param]
        try:
            parsed = None if (param == "seed" and value == "none") else kind(value)
            self.config = self.config.replace(**{field: parsed})
        except (ValueError, ConfigError) as exc:
            status(f"invalid value for {param}: {value!r} ({exc})")
            return
        status(f"{param} = {parsed!r}")

    # -- one turn -------------------------------------------------------------------------------
    def reply(self, text: str) -> None:
        self.history.append({"role": "user", "content": text})
        parts: list[str] = []
        stream = None
        last = None
        try:
            stream = self.context.generate_stream(config=self.config, messages=self.messages())
            for event in stream:
                parts.append(event.text)
                self.out.write(event.text)
                last = event
        except KeyboardInterrupt:
            pass  # Ctrl+C ends this reply only; what was shown stays in the conversation
        except ContextLengthError as exc:
            self.history.pop()
            status(f"{describe(exc)} (use /clear to start over)")
            return
        except StreamTimeoutError as exc:
            status(describe(exc))
        finally:
            if stream is not None:
                stream.close()
        self.out.finish_line()
        self.history.append({"role": "assistant", "content": "".join(parts)})
        if self.verbose and last is not None:
            status(stats_line(last, stream.finish_reason if stream else None))


def chat(args: argparse.Namespace) -> int:
    config = make_config(args)
    name, target = generation_target(args)
    session: Any = ChatSession(target, config, args.system, TextOut(), args.verbose)
    if getattr(args, "ledger", None):
        session = open_ledger_chat(args, target, session)
    interactive = sys.stdin.isatty()
    reader = LineReader(interactive)
    if interactive:
        status(
            f'chatting with {name}; /help for commands, """ for several lines, /bye or Ctrl+D '
            "to leave"
        )
    while True:
        try:
            text = reader.read()
        except EOFError:
            if interactive:
                print(file=sys.stderr)
            return ExitCode.OK
        except KeyboardInterrupt:
            print("\n(use /bye or Ctrl+D to leave)", file=sys.stderr)
            continue
        except UsageError as exc:
            if not interactive:
                raise  # piped input that is not UTF-8: a one-line error and exit 2
            status(f"error: {describe(exc)}")
            continue
        if not text:
            continue
        if text.startswith("/"):
            if not session.command(text):
                return ExitCode.OK
            continue
        try:
            session.reply(text)
        except MullamaError as exc:
            status(f"error: {describe(exc)}")
