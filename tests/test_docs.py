"""Runs every ```python block of the user guides in docs/, each in a fresh interpreter.

A block preceded by the line `<!-- not-run: <reason> -->` is skipped (servers that run forever,
interactive sessions); every other block must run cleanly as written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = sorted((REPO / "docs").glob("*.md"))
FENCE = re.compile(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)\n```", re.S)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        text = "\n" + doc.read_text(encoding="utf-8")
        for n, match in enumerate(FENCE.finditer(text), start=1):
            if match.group("before").strip().startswith("<!-- not-run"):
                continue
            found.append((f"{doc.name}#{n}", match.group("code")))
    return found


BLOCKS = _blocks()


def test_docs_have_examples() -> None:
    assert BLOCKS, "docs/ has no runnable python examples"


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("where", "code"), BLOCKS, ids=[w for w, _ in BLOCKS])
def test_doc_example_runs(where: str, code: str) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert proc.returncode == 0, f"{where} failed:\n{proc.stdout}\n{proc.stderr}"
