"""A server under wrk, this checkout against an earlier commit, side by side in one run.

    python benchmarks/against_commit.py --baseline a823dd7 --rounds 6 [--kind endpoint-tls]

Each round starts a server of ``--kind`` (benchmarks/servers.py; at default settings) from the
baseline's tree and one from this checkout, in shuffled order, and loads each with wrk for a
few seconds (benchmarks/load.py: pinned to cores of their own where possible). It prints each
round, the medians, and the ratio (this checkout / baseline) of requests per second and per
CPU second of the server. It needs ``wrk`` and git; the baseline's tree is unpacked from
``git archive`` into a temporary directory (``checkout``) and removed afterwards, and the
server imports it first, whatever is installed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from load import PINNING, measure  # noqa: E402

DEFAULT_BASELINE = "a823dd7"  # main before issue 18's work began


@contextmanager
def checkout(commit: str) -> Iterator[Path]:
    """The tree of ``commit`` (of this repository), unpacked into a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="deproxy-baseline-") as directory:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit, "pytest_deproxy"],
            capture_output=True,
        )
        if archive.returncode != 0:
            raise RuntimeError(
                f"cannot unpack commit {commit!r} of {ROOT}: {archive.stderr.decode().strip()}"
            )
        subprocess.run(["tar", "-x", "-C", directory], input=archive.stdout, check=True)
        yield Path(directory)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--baseline", default=DEFAULT_BASELINE, help="the commit to compare against"
    )
    parser.add_argument("--kind", default="endpoint", help="a server kind of servers.py")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=3, help="wrk's duration per round")
    parser.add_argument("--connections", type=int, default=10)
    options = parser.parse_args()
    scheme = "https" if options.kind == "endpoint-tls" else "http"
    print(PINNING)
    results: dict[str, list[tuple[float, float]]] = {"baseline": [], "this checkout": []}
    with checkout(options.baseline) as baseline:
        trees: dict[str, Path | None] = {"baseline": baseline, "this checkout": None}
        for number in range(options.rounds):
            for name in random.sample(list(trees), len(trees)):
                load = measure(
                    options.kind,
                    options.connections,
                    options.seconds,
                    tree=trees[name],
                    scheme=scheme,
                )
                results[name].append((load.rate, load.per_cpu_second))
            print(
                f"round {number + 1}: "
                + ", ".join(f"{k} {v[-1][0]:,.0f} req/s" for k, v in results.items())
            )
    for index, unit in ((0, "requests per second"), (1, "requests per CPU second")):
        medians = {
            name: statistics.median(v[index] for v in values) for name, values in results.items()
        }
        for name, median in medians.items():
            print(f"{name}: median {median:,.0f} {unit}")
        print(
            f"ratio (this checkout / {options.baseline}), {unit}: "
            f"{medians['this checkout'] / medians['baseline']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
