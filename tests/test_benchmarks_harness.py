"""The benchmark harness keeps working: ``--help``, a bad row name, and a quick run of one cheap
row that prints a verdict. No number is asserted: benchmarks/RESULTS.md holds those."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"

pytestmark = pytest.mark.timeout(120)


def run(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUN), *arguments], capture_output=True, text=True, timeout=100
    )


def test_help_lists_every_row_and_option() -> None:
    done = run("--help")
    assert done.returncode == 0, done.stderr
    for word in ("--rounds", "--quick", "--write", "--baseline-commit", "rows:"):
        assert word in done.stdout
    for row in ("defaults", "endpoint", "make-request", "connects", "fixtures", "tls", "mitm"):
        assert f"\n  {row} " in done.stdout


def test_an_unknown_row_is_refused_with_the_choices() -> None:
    done = run("--quick", "endpoit")
    assert done.returncode == 2
    assert "unknown row endpoit" in done.stderr
    assert "make-request" in done.stderr


def test_a_quick_row_prints_a_verdict_for_each_of_its_lines() -> None:
    done = run("--quick", "make-request")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| make-request |")]
    assert len(rows) == 2, done.stdout  # persistent and fresh connections
    for line in rows:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[-1] in ("met", "NOT MET"), line
        assert cells[-2] == ">= 1", line
    assert "server pinned" in done.stdout or "not pinned" in done.stdout
