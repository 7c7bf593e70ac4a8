"""pytest-deproxy's benchmarks: every target of issue 18, each a ratio against a baseline
measured in the same run, at the settings a user gets without asking.

    python benchmarks/run.py                  # every row (~20 minutes, half of it "defaults")
    python benchmarks/run.py endpoint tls     # only some rows (--list names them)
    python benchmarks/run.py --quick make-request   # a smoke run: 1 round, small counts
    python benchmarks/run.py --rounds 8 --write     # and regenerate benchmarks/RESULTS.md
    python benchmarks/run.py --cpu endpoint   # judged by CPU time: on a machine others load

How it keeps the numbers honest on a shared, noisy 2-core machine:

- Subject and baseline are measured in alternating rounds, shuffled each round; each round
  gives one ratio, and the table shows the median ratio with its min and max over
  ``--rounds`` (default 5). The verdict is the median's.
- ``wrk`` runs on a core of its own and the server on the other (``taskset``; see
  benchmarks/load.py), each server in a fresh process per round. Without taskset or a
  second core it says so above the table.
- Everything runs at default settings: ``Deproxy()``, ``add_endpoint()``; only the row that
  compares defaults with capped records caps anything.
- wrk's socket errors and non-2xx answers are noted on the row, never folded into a rate.
- Rows measure by the clock and by CPU time (the server's under wrk, this process's, a
  pytest run's) where they can; the verdict is the clock's, or CPU time's with ``--cpu``,
  and each row notes the other's ratio. When others load the machine, rates by the clock
  swing several-fold between rounds while CPU-time ratios hold within a few percent; on a
  quiet machine, with the server saturating its core, the two agree.
- Beside the median ratio, "best" divides the best round of each side: other work only ever
  slows a round down, so the best rounds are the least disturbed.

The rows live in rows_load.py (servers under wrk) and rows_local.py (in this process, or
whole child processes); harness.py holds rounds, spreads, targets and the table.

A row that cannot run here (no wrk, no git history for the pinned commit) says why and is
marked n/a rather than failing the rest. Needs the ``bench`` extra (pytest-httpserver), h2
and wsproto, and ``wrk`` (Debian package). The test suite runs ``--help`` and one ``--quick``
row (tests/test_benchmarks_harness.py), so the harness does not rot; the numbers are never
asserted anywhere.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import load  # noqa: E402
import rows_load  # noqa: E402
import rows_local  # noqa: E402
from against_commit import DEFAULT_BASELINE  # noqa: E402
from harness import SETTINGS, Row, ratio_text, table, unavailable  # noqa: E402

from pytest_deproxy import __version__  # noqa: E402

ROWS: dict[str, tuple[Callable[[], Iterator[Row]], str]] = {
    "defaults": (
        rows_local.bench_defaults,
        "defaults vs capped records over 100,000 requests: rate, RSS",
    ),
    "endpoint": (
        rows_load.bench_endpoint,
        "endpoint vs a bare selector loop, 10 and 100 connections, and requests saying keep-alive",
    ),
    "httpserver": (rows_load.bench_httpserver, "endpoint vs pytest-httpserver (>= 10x)"),
    "custom": (rows_load.bench_custom, "custom non-blocking handler vs the stock handler (>= 0.7)"),
    "tls": (rows_load.bench_tls, "TLS endpoint vs the pinned commit (>= 2x)"),
    "mitm": (rows_load.bench_mitm, "MITM replay under load vs the pinned commit (>= 2x)"),
    "make-request": (
        rows_local.bench_make_request,
        "make_request vs bare h11, persistent and fresh (>= 1)",
    ),
    "connects": (rows_load.bench_connects, "1,000 simultaneous connects, all answered (<= 0.25 s)"),
    "fixtures": (
        rows_local.bench_fixtures,
        "500-test suite with the fixtures vs bare (<= 1 ms/test)",
    ),
    "websocket": (rows_local.bench_websocket, "WebSocket echo vs bare wsproto (>= 0.8)"),
    "http2": (rows_local.bench_http2, "HTTP/2 figures of benchmarks/http2.py"),
    "transcript": (rows_load.bench_transcript, "raw transcript capture vs none (>= 0.9)"),
    "replay-scaling": (
        rows_local.bench_replay_scaling,
        "MITM replay with 10,000 interactions vs 10",
    ),
}


def tool_version(command: list[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    done = subprocess.run(command, capture_output=True, text=True)
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0].split(" [")[0].strip() if first else None


def versions() -> str:
    parts = [f"pytest-deproxy {__version__}", f"Python {platform.python_version()}"]
    for package in ("h11", "h2", "wsproto", "pytest", "pytest-httpserver"):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} (not installed)")
    wrk = tool_version(["wrk", "--version"])
    parts.append(wrk if wrk else "wrk (not installed)")
    return ", ".join(parts)


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip() + ", "
                break
    except OSError:
        pass
    return f"{model}{os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}"


def header(selected: list[str]) -> str:
    return "\n".join(
        [
            f"- Date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- Versions: {versions()}",
            f"- Machine: {machine()}; load average at the start {os.getloadavg()[0]:.2f}",
            f"- Load generator: {load.PINNING}",
            f"- Rounds: {SETTINGS.rounds}{' (quick)' if SETTINGS.quick else ''}, wrk "
            f"{SETTINGS.seconds} s per measurement; pinned commit for TLS/MITM: {SETTINGS.baseline_commit}",
            "- Judged by "
            + ("CPU time (--cpu) where a row measures it" if SETTINGS.cpu else "the clock")
            + "; each row notes the other",
            f"- Rows: {', '.join(selected)}",
        ]
    )


def write_results(text: str, head: str) -> None:
    (HERE / "RESULTS.md").write_text(
        "# Benchmark results\n\n"
        "Command: `python benchmarks/run.py --write` (see its docstring). Every ratio is subject\n"
        "over baseline measured side by side in one run, in shuffled alternating rounds: the\n"
        "median with [min-max] over the rounds. Absolute rates drift with the machine; ratios hold.\n\n"
        f"{head}\n\n{text}\n"
    )


def parse(argv: list[str]) -> argparse.Namespace:
    listing = "\n".join(f"  {name:15} {description}" for name, (_, description) in ROWS.items())
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description="Issue 18's benchmarks: each target a row, measured against its baseline in the same run.",
        epilog=f"rows:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("rows", nargs="*", metavar="ROW", help="rows to run (default: all)")
    parser.add_argument(
        "--rounds", type=int, default=None, help="alternating rounds (default 5; 1 with --quick)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: small counts, 1 s of wrk, 1 round"
    )
    parser.add_argument(
        "--seconds", type=int, default=None, help="wrk's duration per measurement (default 3)"
    )
    parser.add_argument(
        "--baseline-commit",
        default=DEFAULT_BASELINE,
        help=f"the commit TLS and MITM rates are compared with (default {DEFAULT_BASELINE})",
    )
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="judge rows by CPU time, not the clock, where they measure both (the server's "
        "under wrk, this process's, a pytest run's): steadier on a machine others load",
    )
    parser.add_argument("--write", action="store_true", help="regenerate benchmarks/RESULTS.md")
    parser.add_argument("--list", action="store_true", help="list the rows and exit")
    options = parser.parse_args(argv)
    unknown = [name for name in options.rows if name not in ROWS]
    if unknown:
        parser.error(f"unknown row {', '.join(unknown)}; choose from: {', '.join(ROWS)}")
    if options.rounds is not None and options.rounds < 1:
        parser.error("--rounds takes a number >= 1")
    return options


def main_for_module(module: str, argv: list[str]) -> int:
    """:func:`main` for one rows module run as a script: its own rows, unless rows are named."""
    if not any(argument in ROWS for argument in argv):
        argv = argv + [name for name, (bench, _) in ROWS.items() if bench.__module__ == module]
    return main(argv)


def main(argv: list[str]) -> int:
    options = parse(argv)
    if options.list:
        for name, (_, description) in ROWS.items():
            print(f"{name:15} {description}")
        return 0
    SETTINGS.quick = options.quick
    SETTINGS.rounds = options.rounds or (1 if options.quick else 5)
    SETTINGS.seconds = options.seconds or (1 if options.quick else 3)
    SETTINGS.baseline_commit = options.baseline_commit
    SETTINGS.cpu = options.cpu
    selected = options.rows or list(ROWS)
    head = header(selected)
    print(head, flush=True)
    rows: list[Row] = []
    for name in selected:
        started = time.perf_counter()
        print(f"running {name} ...", flush=True)
        try:
            for row in ROWS[name][0]():
                rows.append(row)
                print(
                    f"  {row.what}: {row.measured} | {row.baseline} | ratio "
                    f"{ratio_text(row)} | {row.verdict}",
                    flush=True,
                )
        except Exception as exc:  # one row failing must not lose the others' numbers
            rows.append(unavailable(name, ROWS[name][1], f"failed: {type(exc).__name__}: {exc}"))
            print(f"  failed: {exc!r}", flush=True)
        gc.collect()
        print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    text = table(rows)
    print()
    print(text)
    head += f"\n- Load average at the end: {os.getloadavg()[0]:.2f}"
    print(head.splitlines()[-1])
    missed = sum(row.verdict == "NOT MET" for row in rows)
    print(f"\n{len(rows)} rows: {sum(row.verdict == 'met' for row in rows)} met, {missed} not met")
    if options.write:
        write_results(text, head)
        print(f"wrote {HERE / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
