"""The developer tooling issue 8 added: tests that fail under CI when what they need is missing,
and the Makefile's help listing the shortcuts."""

from __future__ import annotations

import shutil
import subprocess

import pytest

import needs
from needs import REPO_ROOT


@pytest.mark.parametrize("ci", ["true", "True"])
def test_missing_shared_vectors_fail_under_ci_with_the_path(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(needs, "SHARED_TESTDATA", REPO_ROOT / "target" / "no-such-shared")
    with pytest.raises(pytest.fail.Exception, match="no-such-shared.*under CI=true"):
        needs.shared_testdata("vectors.json")


@pytest.mark.parametrize("ci", [None, "false", ""])
def test_missing_shared_vectors_skip_outside_ci(monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(needs, "SHARED_TESTDATA", REPO_ROOT / "target" / "no-such-shared")
    with pytest.raises(pytest.skip.Exception, match="no-such-shared"):
        needs.shared_testdata("vectors.json")


def test_make_help_lists_every_shortcut():
    make = shutil.which("make")
    if make is None:
        needs.missing("make is not installed")
    done = subprocess.run(
        [make, "-s", "help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    listed = {line.split()[1] for line in done.stdout.splitlines() if line.strip()}
    assert {"help", "setup", "dev", "test", "test-fast", "lint", "fmt", "bench"} <= listed
    # test-fast skips the bootstrap and the slow tests; the full test is the README's script.
    dry = subprocess.run(
        [make, "-n", "test-fast"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
    )
    assert dry.returncode == 0, dry.stderr
    assert "bootstrap" not in dry.stdout and '-m "not slow"' in dry.stdout
