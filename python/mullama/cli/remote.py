"""What the remote and ledger flags do (cli/remote_options.py defines them): the model a
command generates with, and the chat's turns kept in a ledger."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from mullama.cli.exit_codes import UsageError, describe
from mullama.cli.output import stats_line, status
from mullama.cli.remote_options import API_KEY_ENV


def generation_target(args: argparse.Namespace) -> tuple[str, Any]:
    """(the name to show, what generates): a Context on the local model, or the remote."""
    url = getattr(args, "remote", None)
    if url is None:
        from mullama.cli.common import load_model
        from mullama.context import Context

        name, model = load_model(args)
        return name, Context(model)
    if not args.model:
        raise UsageError("--remote needs --model NAME: the model's name on that server")
    from mullama.remote import connect

    api_key = getattr(args, "remote_api_key", None) or os.environ.get(API_KEY_ENV) or None
    return f"{args.model} at {url}", connect(url, model=args.model, api_key=api_key)


class LedgerChatSession:
    """The chat's turns when a --ledger keeps them: the ledger holds the history (a reply cut
    by Ctrl+C is recorded as cancelled and not sent again), /clear forgets it there."""

    def __init__(self, session: Any, chat: Any) -> None:
        self.session = session
        self.chat = chat

    def command(self, line: str) -> bool:
        name, _, rest = line[1:].strip().partition(" ")
        if name == "clear":
            self.chat.clear()
            status("conversation cleared")
            return True
        if name == "set" and rest.strip().partition(" ")[0] == "system":
            value = rest.strip().partition(" ")[2].strip()
            self.chat.set_system(value or None)
            status("system prompt set" if value else "system prompt cleared")
            return True
        return bool(self.session.command(line))

    def reply(self, text: str) -> None:
        from mullama import ContextLengthError, StreamTimeoutError

        session = self.session
        stream = None
        last = None
        try:
            stream = self.chat.send(text, session.config)
            for event in stream:
                session.out.write(event.text)
                last = event
        except KeyboardInterrupt:
            pass  # recorded as cancelled when the stream closes below
        except (ContextLengthError, StreamTimeoutError) as exc:
            status(describe(exc))
        finally:
            if stream is not None:
                stream.close()
        session.out.finish_line()
        if session.verbose and last is not None:
            status(stats_line(last, stream.finish_reason if stream else None))


def open_ledger_chat(args: argparse.Namespace, target: Any, session: Any) -> LedgerChatSession:
    from mullama.conversation import Chat

    chat = Chat(target, ledger=args.ledger, conversation=args.conversation, system=args.system)
    turns = [m for m in chat.history() if m["role"] != "system"]
    if turns and sys.stdin.isatty():
        status(f"resuming '{args.conversation}' from {args.ledger} ({len(turns)} turns)")
    return LedgerChatSession(session, chat)
