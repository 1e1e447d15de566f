"""The documentation site: `mkdocs build --strict` succeeds (broken links, anchors, missing
snippets or nav entries fail it), the pages generated at build time list everything their
source has (checked against other listings of the same facts, so a generator that drops one
fails), and the quick start's shell commands run as written.

Without mkdocs installed this skips, except under CI=true, where the test extra brings it.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from needs import missing

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
CLI_SOURCES = sorted((REPO / "python" / "mullama" / "cli").glob("*.py"))
BASH_FENCE = re.compile(r"(?P<before>[^\n]*)\n```bash\n(?P<code>.*?)\n```", re.S)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for package in ("mkdocs", "material"):
        if importlib.util.find_spec(package) is None:
            missing(f"{package} is not installed (the test extra: pip install -e '.[test]')")
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        # The theme's banner about MkDocs 2 would bury the build's own warnings.
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def page_text(site: Path, name: str) -> str:
    """A built page's text without its markup."""
    page = site / name / "index.html"
    assert page.is_file(), f"{name} is not in the site"
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))


@pytest.mark.timeout(360)
def test_configuration_page_lists_every_field(site: Path) -> None:
    from mullama import StreamConfig

    text = page_text(site, "configuration")
    fields = StreamConfig.fields()
    assert len(fields) >= 11
    for name, annotation, default, doc in fields:
        for shown in (name, annotation, repr(default), doc):
            assert shown in text, (name, shown)
    assert "--max-tokens" in text and "--stop" in text  # the flag column


@pytest.mark.timeout(360)
def test_errors_page_lists_every_class_and_code(site: Path) -> None:
    import mullama.errors
    import mullama.remote.errors as remote_errors

    text = page_text(site, "errors")
    classes = [getattr(mullama.errors, name) for name in mullama.errors.__all__]
    classes += [
        value
        for value in vars(remote_errors).values()
        if isinstance(value, type) and issubclass(value, mullama.errors.MullamaError)
    ]
    for cls in classes:
        assert cls.__name__ in text, cls
        doc = " ".join((cls.__doc__ or "").replace("`", "").split())  # `x` renders as code
        assert doc in " ".join(text.split()), cls
    # The Node package's own list of the codes (its TypeScript type).
    node_types = (REPO / "bindings-node" / "index.d.ts").read_text(encoding="utf-8")
    union = re.search(r"export type ErrorCode =(.*?);", node_types, re.S)
    codes = re.findall(r"'([A-Z_]+)'", union[1])
    assert len(codes) >= 8
    for code in codes:
        assert code in text, code


@pytest.mark.timeout(360)
def test_cli_reference_has_every_command_and_flag(site: Path) -> None:
    text = page_text(site, "cli-reference")
    source = "\n".join(path.read_text(encoding="utf-8") for path in CLI_SOURCES)
    commands = re.findall(r'add_parser\(\s*"(\w+)"', source)
    assert {"run", "chat", "serve", "list", "show"} <= set(commands)
    for command in commands:
        assert f"mullama {command}" in text, command
    flags = set(re.findall(r'"(--[a-z][a-z0-9-]*)"', source))
    assert len(flags) > 20
    for flag in flags:
        assert flag in text, flag


@pytest.mark.timeout(360)
def test_pages_made_from_other_files(site: Path) -> None:
    # The quick start includes the Node guide's first example, run by the Node tests.
    assert "context.generateStream('Write a poem:', 12)" in page_text(site, "quickstart")
    # The benchmarks page includes benchmarks/README.md and shows the committed plots.
    benchmarks = page_text(site, "benchmarks")
    assert "bench_stream.py output" in benchmarks
    plots = re.findall(r"\(([\w/]+\.png)\)", (DOCS / "benchmarks.md").read_text("utf-8"))
    assert len(plots) >= 2
    for plot in plots:
        assert (site / plot).is_file(), plot


# Pages whose shell blocks this module runs as written, on the default model.
RUN_PAGES = ("quickstart", "cli")
# Shell blocks another test runs: the curl examples (test_server_docs.py).
RUN_ELSEWHERE = {"server": "curl ", "server-api": "curl "}


def _shell_blocks(page: str) -> list[tuple[str, bool]]:
    """(code, marked `<!-- not-run: why -->`) of each bash block of docs/PAGE.md."""
    text = "\n" + (DOCS / f"{page}.md").read_text(encoding="utf-8")
    return [
        (m["code"], m["before"].strip().startswith("<!-- not-run"))
        for m in BASH_FENCE.finditer(text)
    ]


def _commands_to_run() -> list[str]:
    return [code for page in RUN_PAGES for code, not_run in _shell_blocks(page) if not not_run]


def test_quickstart_has_shell_commands() -> None:
    assert [code for code, not_run in _shell_blocks("quickstart") if not not_run]


def test_every_shell_block_is_run_or_says_why_not() -> None:
    unrun = []
    for path in sorted(DOCS.glob("*.md")):
        for code, not_run in _shell_blocks(path.stem):
            run = path.stem in RUN_PAGES or RUN_ELSEWHERE.get(path.stem, "\0") in code
            if not run and not not_run:
                unrun.append(f"{path.name}: {code.splitlines()[0]}")
    assert not unrun, "shell blocks neither run by a test nor marked <!-- not-run: why -->"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("block", _commands_to_run())
def test_shell_commands_run(block: str, smollm2_path: Path) -> None:
    # `mullama` is the entry point installed next to this interpreter.
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "mullama").is_file():
        missing(f"the mullama command is not installed in {bin_dir}")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + block],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=540,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip(), done.stderr
