"""The server side's targets, side by side in one run, at default settings (issue 18).

    python benchmarks/server_core.py                       # all, this checkout
    python benchmarks/server_core.py --baseline a823dd7    # and the same from an earlier commit
    python benchmarks/server_core.py burst fixture --rounds 7

Measured (each as min / median / max over alternating rounds):

- ``burst``: 1,000 connects at once to an endpoint, each sending one request; the time until
  every one is answered (target: all within 0.25 s).
- ``fixture``: pytest runs 500 tests that each take ``deproxy`` and ``endpoint`` and make one
  request, and 500 bare tests; the difference per test (target: <= 1 ms).
- ``handlers``: under wrk, a plain function marked ``non_blocking`` against ``handlers.simple``
  (target: >= 0.7), and an unmarked (blocking) one for comparison.
- ``floor``: ``handlers.simple`` against the bare selector loop of ``floor_selector.py`` at 10
  and 100 connections (target: >= 0.7).
- ``tls``: a TLS endpoint, and the MITM replaying a recorded interaction (origin-form, a
  ``Host`` header), under wrk; against the baseline (target: >= 2x).

Servers run in their own process pinned to CPU 0 and wrk to CPU 1 (``taskset``); rates are
requests per second, or with ``--per cpu`` per CPU second of the server's process (once it
serves), which a shared machine moves less (the fixture cost is then the pytest process's CPU). Needs ``wrk``; ``--baseline`` needs git.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
TASKSET = shutil.which("taskset")
PER = "wall"  # or "cpu": see --per

SERVER = r"""
import os, sys, tempfile, pathlib
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[3])
kind = sys.argv[2]
from pytest_deproxy import Deproxy, Response, handlers
if kind == "floor":
    import floor_selector
    (_, port), stop = floor_selector.start_floor_selector()
    before = os.times()
    print(port, flush=True)
    sys.stdin.readline()
    times = os.times()
    print(times.user + times.system - before.user - before.system, flush=True)
    stop()
    raise SystemExit
deproxy = Deproxy()
mark = getattr(handlers, "non_blocking", lambda function: function)
def answer(request):
    return Response(200)
if kind == "stock":
    endpoint = deproxy.add_endpoint(default_handler=handlers.simple)
elif kind == "custom":
    endpoint = deproxy.add_endpoint(default_handler=mark(answer))
elif kind == "blocking":
    endpoint = deproxy.add_endpoint(default_handler=answer)
elif kind == "tls":
    endpoint = deproxy.add_endpoint(default_handler=handlers.simple, tls=True)
elif kind == "mitm":
    root = pathlib.Path(tempfile.mkdtemp(prefix="deproxy-bench-"))
    path = root / "default" / "Api" / "interaction_0.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(
        "request:\n  method: GET\n  url: http://api.example.org/items\n  headers: {}\n"
        "  body: null\nresponse:\n  status: {code: 200, message: OK}\n"
        "  headers:\n    Content-Type: [text/plain]\n  body: items\n"
    )
    services = [{"type": "BaseService", "name": "Api", "hosts_list": ["api.example.org"]}]
    endpoint = deproxy.add_mitm_endpoint(scenarios_path=root, services=services)
before = os.times()
print(endpoint.port, flush=True)
sys.stdin.readline()
times = os.times()
print(times.user + times.system - before.user - before.system, flush=True)
deproxy.shutdown()
"""

WRK_URLS = {
    "tls": "https://127.0.0.1:{port}/",
    "mitm": "http://127.0.0.1:{port}/items",
}


def pinned(core: int, command: list[str]) -> list[str]:
    return [TASKSET, "-c", str(core), *command] if TASKSET else command


class Server:
    """A server of one kind from one tree, in its own process on CPU 0."""

    def __init__(self, tree: Path, kind: str) -> None:
        self.process = subprocess.Popen(
            pinned(0, [sys.executable, "-c", SERVER, str(tree), kind, str(HERE)]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def stop(self) -> float:
        """Stop it; the CPU seconds it used."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        cpu = float(self.process.stdout.readline())
        self.process.stdin.close()
        self.process.wait(30)
        return cpu


def wrk_rate(tree: Path, kind: str, connections: int, seconds: float) -> float:
    """Requests per second under wrk, or with ``--per cpu`` per CPU second of the server's
    process (a shared machine moves that less, but it leaves out the time threads spend
    waiting for the GIL, which costs a thread-per-connection server its rate)."""
    server = Server(tree, kind)
    try:
        url = WRK_URLS.get(kind, "http://127.0.0.1:{port}/").format(port=server.port)
        extra = ["-H", "Host: api.example.org"] if kind == "mitm" else []
        load = subprocess.run(
            pinned(1, ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", *extra, url]),
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        cpu = server.stop()
    found = re.search(r"(\d+) requests in", load.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", load.stdout)
    if found is None or errors is not None:
        raise SystemExit(f"wrk against {kind} failed:\n{load.stdout}{load.stderr}")
    if PER == "cpu":
        return int(found.group(1)) / cpu
    wall = re.search(r"Requests/sec:\s+([\d.]+)", load.stdout)
    assert wall is not None
    return float(wall.group(1))


def burst_seconds(tree: Path, count: int = 1000) -> float:
    """Connect ``count`` sockets at once, each sending a request; seconds until all answered."""
    server = Server(tree, "stock")
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    selector = selectors.DefaultSelector()
    socks = []
    try:
        start = time.perf_counter()
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", server.port))
            selector.register(sock, selectors.EVENT_WRITE)
            socks.append(sock)
        answered = 0
        deadline = start + 30
        while answered < count and time.perf_counter() < deadline:
            for key, events in selector.select(1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if events & selectors.EVENT_WRITE:
                    sock.send(request)
                    selector.modify(sock, selectors.EVENT_READ)
                elif sock.recv(65536):
                    answered += 1
                    selector.unregister(sock)
        elapsed = time.perf_counter() - start
        if answered < count:
            raise SystemExit(f"only {answered} of {count} connections were answered in 30 s")
        return elapsed
    finally:
        for sock in socks:
            sock.close()
        selector.close()
        server.stop()


FIXTURE_TESTS = """
def test_{n}(deproxy, endpoint):
    deproxy.make_request(endpoint().url)
"""
BARE_TESTS = """
def test_{n}():
    pass
"""


def fixture_cost(tree: Path, workdir: Path, count: int = 500) -> float:
    """Seconds per test that deproxy + endpoint + one request add to a bare test."""
    files = {"bare": BARE_TESTS, "fixture": FIXTURE_TESTS}
    seconds = {}
    for name, template in files.items():
        path = workdir / f"test_{name}.py"
        if not path.exists():
            path.write_text("".join(template.format(n=n) for n in range(count)))
        environment = dict(os.environ, PYTHONPATH=str(tree))
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)]
        start = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            pinned(0, command), cwd=workdir, env=environment, check=True, capture_output=True
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        seconds[name] = cpu if PER == "cpu" else time.perf_counter() - start
    return (seconds["fixture"] - seconds["bare"]) / count


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    low, middle, high = min(values), statistics.median(values), max(values)
    return " / ".join(f"{value * scale:,.{digits}f}" for value in (low, middle, high))


def run_rounds(rounds: int, measure: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Each measurement once a round, in alternating order; the values by name."""
    results: dict[str, list[float]] = {name: [] for name in measure}
    names = list(measure)
    for number in range(rounds):
        order = names if number % 2 == 0 else names[::-1]
        for name in order:
            results[name].append(measure[name]())
    return results


def ratios(top: list[float], bottom: list[float]) -> list[float]:
    return [a / b for a, b in zip(top, bottom, strict=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "targets", nargs="*", default=["burst", "fixture", "handlers", "floor", "tls"]
    )
    parser.add_argument("--baseline", help="an earlier commit to measure side by side")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2, help="wrk's duration per round")
    parser.add_argument(
        "--per",
        choices=["wall", "cpu"],
        default="wall",
        help="rates per second (default), or per CPU second of the server (and the fixture "
        "cost in CPU time of the pytest process): steadier on a busy machine",
    )
    options = parser.parse_args()
    seconds = options.seconds
    global PER
    PER = options.per
    with tempfile.TemporaryDirectory(prefix="deproxy-server-core-") as scratch:
        trees = {"this": ROOT}
        if options.baseline:
            baseline = Path(scratch) / "baseline"
            baseline.mkdir()
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", options.baseline],
                capture_output=True,
                check=True,
            )
            subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive.stdout, check=True)
            trees["baseline"] = baseline
        for target in options.targets:
            print(f"== {target} (min / median / max over {options.rounds} rounds)", flush=True)
            if target == "burst":
                found = run_rounds(
                    options.rounds,
                    {name: lambda t=tree: burst_seconds(t) for name, tree in trees.items()},
                )
                for name, values in found.items():
                    met = max(values) <= 0.25
                    print(
                        f"  {name}: 1,000 connects answered in {spread(values, 1000, 0)} ms"
                        f"  (target <= 250 ms: {'met' if met else 'NOT met'})"
                    )
            elif target == "fixture":
                work = {}
                for name in trees:
                    work[name] = Path(scratch) / f"fixture-{name}"
                    work[name].mkdir()
                found = run_rounds(
                    options.rounds,
                    {
                        name: lambda t=tree, w=work[name]: fixture_cost(t, w)
                        for name, tree in trees.items()
                    },
                )
                for name, values in found.items():
                    met = statistics.median(values) <= 0.001
                    print(
                        f"  {name}: deproxy + endpoint + one request over a bare test: "
                        f"{spread(values, 1000)} ms  (target <= 1 ms: {'met' if met else 'NOT met'})"
                    )
            elif target in ("handlers", "floor", "tls"):
                kinds = {
                    "handlers": [("stock", 10), ("custom", 10), ("blocking", 10)],
                    "floor": [("floor", 10), ("stock", 10), ("floor", 100), ("stock", 100)],
                    "tls": [("tls", 10), ("mitm", 10)],
                }[target]
                measure = {}
                for name, tree in trees.items():
                    for kind, connections in kinds:
                        if kind == "floor" and name != "this":
                            continue
                        measure[f"{name} {kind} c{connections}"] = (
                            lambda t=tree, k=kind, c=connections: wrk_rate(t, k, c, seconds)
                        )
                found = run_rounds(options.rounds, measure)
                for label, values in found.items():
                    unit = "requests per CPU second" if PER == "cpu" else "requests per second"
                    print(f"  {label}: {spread(values, 1, 0)} {unit}")
                for name in trees:
                    if target == "handlers":
                        pairs = [
                            ("custom c10", "stock c10", 0.7),
                            ("blocking c10", "stock c10", None),
                        ]
                    elif target == "floor":  # the floor is this checkout's, for either tree
                        pairs = [("stock c10", "floor c10", 0.7), ("stock c100", "floor c100", 0.7)]
                    else:
                        pairs = []
                    for top, bottom, goal in pairs:
                        under = f"{'this' if bottom.startswith('floor') else name} {bottom}"
                        values = ratios(found[f"{name} {top}"], found[under])
                        verdict = (
                            ""
                            if goal is None
                            else (
                                f"  (target >= {goal}: {'met' if statistics.median(values) >= goal else 'NOT met'})"
                            )
                        )
                        print(f"  {name}: {top} / {bottom}: {spread(values)}{verdict}")
                if target == "tls" and "baseline" in trees:
                    for kind in ("tls c10", "mitm c10"):
                        values = ratios(found[f"this {kind}"], found[f"baseline {kind}"])
                        verdict = "met" if statistics.median(values) >= 2 else "NOT met"
                        print(
                            f"  {kind}: this / baseline: {spread(values)}  (target >= 2: {verdict})"
                        )
            else:
                raise SystemExit(
                    f"no target {target!r}: choose from burst fixture handlers floor tls"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
