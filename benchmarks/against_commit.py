"""The endpoint under wrk, this checkout against an earlier commit, side by side in one run.

    python benchmarks/against_commit.py --baseline 9d2f295 --rounds 8

Each round starts an endpoint (``handlers.simple``, records capped as in long runs) from the
baseline's tree and one from this checkout, alternately, loads each with wrk for a few
seconds, and counts requests per CPU second of the endpoint's process: on a busy machine
that moves less than requests per second. It prints each round, the medians, and the ratio
(this checkout / baseline). It needs ``wrk`` and git; the baseline's tree is unpacked into a
temporary directory and removed afterwards.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from pytest_deproxy import Deproxy, handlers
deproxy = Deproxy(keep_chains=1000)
endpoint = deproxy.add_endpoint(default_handler=handlers.simple, keep_handlings=1000)
print(endpoint.port, flush=True)
sys.stdin.readline()
times = os.times()
print(times.user + times.system, flush=True)
deproxy.shutdown()
"""


def requests_per_cpu_second(tree: Path, seconds: int) -> float:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(tree)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None and server.stdout is not None
    port = int(server.stdout.readline())
    load = subprocess.run(
        ["wrk", "-t1", "-c16", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=True,
    )
    server.stdin.write("\n")
    server.stdin.flush()
    cpu = float(server.stdout.readline())
    server.stdin.close()
    server.wait()
    total = re.search(r"(\d+) requests in", load.stdout)
    if total is None:
        raise SystemExit(f"wrk printed no request count:\n{load.stdout}{load.stderr}")
    return int(total.group(1)) / cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="the commit to compare against")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=3, help="wrk's duration per round")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="deproxy-baseline-") as baseline:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", options.baseline],
            capture_output=True,
            check=True,
        )
        subprocess.run(["tar", "-x", "-C", baseline], input=archive.stdout, check=True)
        results: dict[str, list[float]] = {"baseline": [], "this checkout": []}
        for number in range(options.rounds):
            for name, tree in (("baseline", Path(baseline)), ("this checkout", ROOT)):
                results[name].append(requests_per_cpu_second(tree, options.seconds))
            print(
                f"round {number + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in results.items())
            )
    medians = {name: statistics.median(values) for name, values in results.items()}
    for name, median in medians.items():
        print(f"{name}: median {median:,.0f} requests per CPU second")
    print(
        f"ratio (this checkout / {options.baseline}): {medians['this checkout'] / medians['baseline']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
