"""A server under ``wrk``: each on a core of its own where the machine allows it.

    python benchmarks/load.py endpoint --connections 10 --seconds 3

Rule kept here: a load measurement never shares a core between the load generator and the
server. With ``taskset`` and at least two cores, the server process (benchmarks/servers.py)
runs on core 0 and ``wrk`` (one thread) on core 1; otherwise both float and ``PINNING`` says
so, for the table to print. Each measurement starts a fresh server process, so an endpoint
that keeps its whole record (the default) starts every round with an empty one. The rate is
wrk's requests per second; the server's CPU seconds give requests per CPU second too, and
wrk's errors and non-2xx answers are counted, never folded into a rate silently.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVERS = HERE / "servers.py"


def _pinning() -> tuple[list[str], list[str], str]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if shutil.which("taskset") is None:
        return [], [], "not pinned: taskset is not installed (wrk and the server share cores)"
    if (cores or 1) < 2:
        return [], [], "not pinned: one core only (wrk and the server share it)"
    first, second = sorted(os.sched_getaffinity(0))[:2]
    return (
        ["taskset", "-c", str(first)],
        ["taskset", "-c", str(second)],
        f"server pinned to core {first}, wrk to core {second} (taskset)",
    )


SERVER_PREFIX, WRK_PREFIX, PINNING = _pinning()


@dataclass
class Load:
    """One wrk run against one server process."""

    rate: float  # requests per second, as wrk counts them
    requests: int
    server_cpu: float  # seconds of CPU the server used while loaded
    errors: int  # wrk's socket errors (connect, read, write, timeout)
    non_2xx: int
    note: str  # what the server is (servers.py says)
    module: str  # where its package was imported from

    @property
    def per_cpu_second(self) -> float:
        return self.requests / self.server_cpu if self.server_cpu > 0 else 0.0


def wrk(
    url: str,
    connections: int,
    seconds: float,
    script: str | None = None,
    headers: tuple[str, ...] = (),
) -> tuple[float, int, int, int, str]:
    """Run wrk; (requests/s, requests, socket errors, non-2xx, its output)."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    command = [
        *WRK_PREFIX,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
    ]
    for header in headers:
        command += ["-H", header]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        if script:
            lua.write(script)
            lua.flush()
            command += ["-s", lua.name]
        done = subprocess.run([*command, url], capture_output=True, text=True, timeout=seconds + 60)
    output = done.stdout + done.stderr
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    if done.returncode != 0 or rate is None or total is None:
        raise RuntimeError(f"wrk failed:\n{output}")
    kinds = {kind: int(n) for kind, n in re.findall(r"(connect|read|write|timeout) (\d+)", output)}
    requests = int(total.group(1))
    if any(header.lower().replace(" ", "") == "connection:close" for header in headers):
        # wrk counts the server's close after each answer as a read error: expected here.
        kinds["read"] = max(0, kinds.get("read", 0) - requests)
    errors = sum(kinds.values())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return float(rate.group(1)), requests, errors, int(non_2xx.group(1)) if non_2xx else 0, output


class Server:
    """A ``kind`` server of servers.py in a process of its own (from ``tree`` when given), on
    the server's core; ``port`` once entered, ``cpu_seconds`` once left."""

    def __init__(self, kind: str, tree: Path | None = None) -> None:
        self.kind = kind
        self.tree = tree
        self.port = 0
        self.note = ""
        self.module = ""
        self.cpu_seconds = 0.0

    def __enter__(self) -> Server:
        command = [*SERVER_PREFIX, sys.executable, str(SERVERS), self.kind]
        if self.tree is not None:
            command += ["--tree", str(self.tree)]
        self._errors = tempfile.TemporaryFile("w+")  # a file, never a pipe nobody reads
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errors, text=True
        )
        assert self._process.stdout is not None
        first = self._process.stdout.readline()
        if not first:
            self._stop()
            self._errors.seek(0)
            raise RuntimeError(f"server {self.kind} did not start:\n{self._errors.read()}")
        port, self.note = first.rstrip("\n").split("\t")
        self.port = int(port)
        self.module = self._process.stdout.readline().strip()
        return self

    def __exit__(self, *exc_info: object) -> None:
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write("\n")
            process.stdin.flush()
            self.cpu_seconds = float(process.stdout.readline())
        finally:
            self._stop()

    def _stop(self) -> None:
        process = self._process
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        self._errors.close()


def measure(
    kind: str,
    connections: int,
    seconds: float,
    *,
    tree: Path | None = None,
    scheme: str = "http",
    path: str = "/",
    script: str | None = None,
    headers: tuple[str, ...] = (),
) -> Load:
    """Start a ``kind`` server (from ``tree`` when given), load it, stop it."""
    with Server(kind, tree) as server:
        rate, requests, errors, non_2xx, _ = wrk(
            f"{scheme}://127.0.0.1:{server.port}{path}", connections, seconds, script, headers
        )
    return Load(rate, requests, server.cpu_seconds, errors, non_2xx, server.note, server.module)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--tls", action="store_true", help="https (for endpoint-tls)")
    options = parser.parse_args()
    load = measure(
        options.kind,
        options.connections,
        options.seconds,
        scheme="https" if options.tls else "http",
    )
    print(PINNING)
    print(
        f"{options.kind} ({load.note}): {load.rate:,.0f} req/s, {load.per_cpu_second:,.0f} per "
        f"server CPU second, {load.errors} socket errors, {load.non_2xx} non-2xx"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
