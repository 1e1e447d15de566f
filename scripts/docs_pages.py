"""MkDocs hook (mkdocs.yml `hooks:`) that writes the three reference pages at build time, each
from the one place its facts live, so none can go stale:

- configuration.md: `StreamConfig.fields()`, the core's field table (crates/mullama-core
  config.rs), plus the CLI flag of each field (mullama.cli.parser.SAMPLING_FLAGS);
- errors.md: the exception classes under `MullamaError`, each classified by the functions that
  really map them (the worker's code, the CLI's exit code, the server's HTTP status), and the
  core's error codes with their docs (crates/mullama-core/src/error.rs);
- cli-reference.md: `mullama COMMAND --help` of every command of the argparse parser.

The pages exist only in the build (mkdocs' generated files); `render_pages()` returns them for
anyone else who wants the text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CORE_ERRORS = REPO / "crates" / "mullama-core" / "src" / "error.rs"
# argparse wraps help to the terminal's width; the page's code blocks use this one.
HELP_COLUMNS = "100"


def configuration_page() -> str:
    from mullama import StreamConfig
    from mullama.cli.parser import SAMPLING_FLAGS

    flag_of = {field: "--" + flag.replace("_", "-") for flag, field in SAMPLING_FLAGS.items()}
    lines = [
        "# Configuration reference",
        "",
        "`StreamConfig` holds every sampling and streaming parameter of a generation. Its fields",
        "are declared once, in the Rust core's field table (`crates/mullama-core/src/config.rs`);",
        "this page, the Python keywords and defaults, and the Node binding's camelCase options all",
        "come from that table, and the core checks every value (a bad one raises `ConfigError`",
        "naming the field and the value). See [Streaming](streaming.md#streamconfig) for how the",
        "fields behave and [Errors](errors.md) for `ConfigError`.",
        "",
        "| field | type | default | meaning | `mullama` flag |",
        "|-------|------|---------|---------|----------------|",
    ]
    for name, annotation, default, doc in StreamConfig.fields():
        flag = f"`{flag_of[name]}`" if name in flag_of else ""
        lines.append(f"| `{name}` | `{annotation}` | `{default!r}` | {_cell(doc)} | {flag} |")
    lines += [
        "",
        "The `mullama` flags in the last column are those of `run`, `chat` and `serve`",
        "([CLI reference](cli-reference.md)); the server's request parameters map to the same",
        "fields ([Server API](server-api.md)).",
        "",
    ]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def core_error_codes() -> list[tuple[str, str]]:
    """(code, doc) of every core error kind, read from error.rs: the enum's variants in
    declaration order, which is the order of `CoreError::CODES` (a Rust test holds them equal)."""
    source = CORE_ERRORS.read_text(encoding="utf-8")
    enum = re.search(r"pub enum CoreError \{(.*?)\n\}", source, re.S)
    codes = re.search(r"pub const CODES: \[&'static str; \d+\] = \[(.*?)\];", source, re.S)
    if enum is None or codes is None:
        raise RuntimeError(f"{CORE_ERRORS}: CoreError or CoreError::CODES not found")
    docs = []
    for block in re.finditer(r"((?:\s*///[^\n]*\n)+)(?:\s*#\[[^\]]*\]\s*)*\s*([A-Z]\w*)", enum[1]):
        text = " ".join(line.strip()[3:].strip() for line in block[1].strip().splitlines())
        docs.append(text)
    names = re.findall(r'"([A-Z_]+)"', codes[1])
    if len(names) != len(docs) or not names:
        raise RuntimeError(f"{CORE_ERRORS}: {len(names)} codes but {len(docs)} documented variants")
    return list(zip(names, docs, strict=True))


def error_classes() -> list[type[BaseException]]:
    """Every exception class derived from MullamaError in mullama, parents before children."""
    import mullama
    import mullama.errors
    import mullama.remote.errors  # noqa: F401  (defines the remote subclasses)

    found: list[type[BaseException]] = []

    def walk(cls: type[BaseException]) -> None:
        found.append(cls)
        for sub in sorted(cls.__subclasses__(), key=lambda c: c.__name__):
            if sub.__module__.split(".")[0] == "mullama" and sub not in found:
                walk(sub)

    walk(mullama.MullamaError)
    return found


def _import_path(cls: type) -> str:
    import importlib

    for module in ("mullama", "mullama.remote", "mullama.errors", cls.__module__):
        if getattr(importlib.import_module(module), cls.__name__, None) is cls:
            return f"from {module} import {cls.__name__}"
    raise RuntimeError(f"{cls.__name__} cannot be imported from mullama")


def errors_page() -> str:
    from mullama.cli.exit_codes import ExitCode, exit_code_for
    from mullama.server.errors import from_mullama_error
    from mullama.worker import error_code

    lines = [
        "# Errors reference",
        "",
        "Every error mullama raises derives from `MullamaError`. The table says, for each class,",
        "how the other front ends report it: the `code` a Node error carries (the engine worker's",
        "mapping), the exit status of the `mullama` command, and the HTTP status and error code of",
        "`mullama serve` when a generation raises it. Each column is computed by the function that",
        "does the mapping, so the table is what the code does.",
        "",
        "| class | parent | Node `code` | exit status | HTTP (OpenAI `code`) |",
        "|-------|--------|-------------|-------------|----------------------|",
    ]
    classes = error_classes()
    for cls in classes:
        # A bare instance: the mappings look at the class only (isinstance, the MRO).
        exc = cls.__new__(cls)
        parent = cls.__mro__[1].__name__
        status = from_mullama_error(exc)
        exit_code = exit_code_for(exc)
        lines.append(
            f"| [`{cls.__name__}`](#{cls.__name__.lower()}) | `{parent}` | `{error_code(exc)}` "
            f"| {int(exit_code)} ({exit_code.name}) | {status.status} (`{status.code}`) |"
        )
    lines += [
        "",
        "The server's own deadline (`--timeout`) never reaches a client as a `StreamTimeoutError`:",
        "it ends the reply, with the finish reason the [server guide](server.md) gives. Errors",
        "after a stream started arrive as its last event rather than as an HTTP status.",
        "",
    ]
    for cls in classes:
        doc = " ".join((cls.__doc__ or "").split())
        lines += [f"## {cls.__name__}", "", f"`{_import_path(cls)}`", "", doc, ""]
    lines += [
        "## Error codes",
        "",
        "The Rust core's error kinds have stable, language-neutral codes: the `code` of every",
        "Node error ([Node: errors and their codes](node.md#errors-and-their-codes)) and the codes",
        "the engine worker sends. From `crates/mullama-core/src/error.rs`:",
        "",
        "| code | meaning |",
        "|------|---------|",
    ]
    lines += [f"| `{code}` | {_cell(doc)} |" for code, doc in core_error_codes()]
    lines += [
        "",
        "## Exit statuses of `mullama`",
        "",
        "| status | name |",
        "|--------|------|",
    ]
    lines += [f"| {int(code)} | `{code.name}` |" for code in ExitCode]
    lines += [
        "",
        "The one-line message on stderr and `--debug` (tracebacks) are described in the",
        "[CLI guide](cli.md#exit-codes); the server's JSON error bodies in the",
        "[server guide](server.md#errors).",
        "",
    ]
    return "\n".join(lines)


@contextmanager
def _help_width() -> Iterator[None]:
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    try:
        yield
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before


def cli_reference_page() -> str:
    from mullama.cli.parser import build_parsers

    with _help_width():
        parser, commands = build_parsers()
        lines = [
            "# CLI reference",
            "",
            "What `mullama --help` and `mullama COMMAND --help` print, generated from the",
            "command's argument parser (`python/mullama/cli/parser.py`). The [CLI guide](cli.md)",
            "explains the commands with examples.",
            "",
            "## mullama",
            "",
            "```text",
            parser.format_help().rstrip(),
            "```",
            "",
        ]
        seen: set[int] = set()
        for name, command in commands.items():
            if id(command) in seen:  # an alias (`ls`) shares its command's parser
                continue
            seen.add(id(command))
            aliases = [a for a, p in commands.items() if p is command and a != name]
            lines += [f"## mullama {name}", ""]
            if aliases:
                lines += ["Also: " + ", ".join(f"`mullama {a}`" for a in aliases) + ".", ""]
            lines += ["```text", command.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


def render_pages() -> dict[str, str]:
    """Each generated page's path under docs/ and its Markdown."""
    return {
        "configuration.md": configuration_page(),
        "errors.md": errors_page(),
        "cli-reference.md": cli_reference_page(),
    }


def on_files(files: Any, config: Any) -> Any:
    """MkDocs event: adds the generated pages to the site's files."""
    from mkdocs.structure.files import File

    for path, text in render_pages().items():
        files.append(File.generated(config, path, content=text))
    return files
