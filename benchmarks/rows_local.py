"""The rows measured in this process or in whole child processes: default settings against
capped records over 100,000 requests, make_request against the bare-h11 floor, the fixtures'
cost in a whole pytest run, WebSocket and HTTP/2 (from their own scripts), and replay with
many interactions.

Rule kept here: ``Deproxy()`` and ``add_endpoint()`` as a user gets them; only the capped side
of the defaults row caps anything.
"""

from __future__ import annotations

import functools
import gc
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import load
from floor import BareClient, BareServer
from harness import (
    SETTINGS,
    ClockAndCpu,
    Row,
    Spread,
    Target,
    alternate,
    rate_spread,
    ratios,
    scaled,
    timed_rates,
    unavailable,
)
from servers import MITM_HOST

from pytest_deproxy import Deproxy


def rate_unit() -> str:
    return " req/CPU-s" if SETTINGS.cpu else " req/s"


# -- defaults against capped records, 100,000 requests --------------------------------------

LONG_RUN = r"""
import sys, time
from pytest_deproxy import Deproxy
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
capped, count = sys.argv[1] == "capped", int(sys.argv[2])
deproxy = Deproxy(keep_chains=1000) if capped else Deproxy()
endpoint = deproxy.add_endpoint(keep_handlings=1000) if capped else deproxy.add_endpoint()
connection = deproxy.connect(endpoint.url)
for _ in range(100):
    deproxy.make_request(endpoint.url, connection=connection)
before = rss()
started, cpu = time.perf_counter(), time.process_time()
for number in range(count):
    deproxy.make_request(endpoint.url, connection=connection)
    if number == count // 2:
        half = rss()
took, cpu = time.perf_counter() - started, time.process_time() - cpu
print(count / took, count / cpu, rss() - before, rss() - half)
connection.close()
deproxy.shutdown()
"""


def bench_defaults() -> Iterator[Row]:
    count = scaled(100_000, 2_000)
    memory: dict[str, list[tuple[float, float]]] = {"defaults": [], "capped": []}
    figures = ClockAndCpu()

    def run(kind: str) -> float:
        done = subprocess.run(
            [*load.SERVER_PREFIX, sys.executable, "-c", LONG_RUN, kind, str(count)],
            capture_output=True,
            text=True,
            check=True,
            timeout=1800,
        )
        rate, cpu_rate, grown, second_half = (float(x) for x in done.stdout.split())
        memory[kind].append((grown, second_half))
        return figures.add(kind, rate, cpu_rate)

    alternate(
        {"defaults": lambda: run("defaults"), "capped": lambda: run("capped")}, SETTINGS.rounds
    )
    rates = figures.judged()
    yield Row(
        "defaults",
        f"make_request + endpoint, {count:,} requests on one connection, Deproxy() and add_endpoint()",
        rate_spread(rates["defaults"], rate_unit()),
        "capped (keep_chains=1000, keep_handlings=1000) "
        + rate_spread(rates["capped"], rate_unit()),
        ratios(rates["defaults"], rates["capped"]),
        Target(">=", 0.9),
        notes=[
            "client and endpoint in one process, on one core",
            figures.other_note("defaults", "capped"),
        ],
    )
    grown = Spread([r[0] for r in memory["defaults"]])
    second_half = Spread([r[1] for r in memory["defaults"]])
    capped = Spread([r[0] for r in memory["capped"]])
    yield Row(
        "defaults",
        f"RSS growth at defaults over {count:,} requests (bounded: second half grows <= 16 MiB)",
        f"+{grown.show(' MiB', 0)}, second half +{second_half.show(' MiB', 0)}",
        f"capped +{capped.show(' MiB', 0)}",
        None,
        Target("<=", 16),
        checked=second_half.median,
        notes=[f"{grown.median * 1024 * 1024 / count:,.0f} bytes per request at defaults"],
    )


# -- make_request against bare h11 ----------------------------------------------------------


def timed_into(
    figures: ClockAndCpu, label: str, action: Callable[[], object], count: int
) -> Callable[[], float]:
    return lambda: figures.add(label, *timed_rates(action, count))


def bench_make_request() -> Iterator[Row]:
    server = BareServer()
    client = BareClient(server.port)

    def fresh_floor() -> None:
        one = BareClient(server.port)
        one.get()
        one.close()

    # Each case has a Deproxy of its own, as a test would, made after the last one's record
    # was collected: the fresh case's rounds must not walk the persistent case's 30,000 kept
    # handlings in every full collection (that put one fresh round at ~0.5 in every run).
    cases = [
        ("persistent connection", True, client.get, scaled(6000, 200)),
        ("a fresh connection per request", False, fresh_floor, scaled(1500, 50)),
    ]
    try:
        for label, persistent, baseline, count in cases:
            gc.collect()
            with Deproxy() as deproxy:
                url = deproxy.add_endpoint().url
                connection = deproxy.connect(url) if persistent else None
                figures = ClockAndCpu()
                alternate(
                    {
                        "ours": timed_into(
                            figures,
                            "ours",
                            functools.partial(deproxy.make_request, url, connection=connection),
                            count,
                        ),
                        "floor": timed_into(figures, "floor", baseline, count),
                    },
                    SETTINGS.rounds,
                )
                if connection is not None:
                    connection.close()
            rates = figures.judged()
            yield Row(
                "make-request",
                f"make_request round trip against the endpoint, {label}, {count:,} per round",
                rate_spread(rates["ours"], rate_unit()),
                "bare h11 client + h11 selector server (floor.py) "
                + rate_spread(rates["floor"], rate_unit()),
                ratios(rates["ours"], rates["floor"]),
                Target(">=", 1.0),
                notes=[
                    "client and server in this process, both sides; a Deproxy per case",
                    figures.other_note("ours", "floor"),
                ],
            )
    finally:
        client.close()
        server.close()


# -- the cost of the fixtures in a whole pytest run -----------------------------------------

# The bare suite runs the same statements on stand-ins, so that both modules are as long and
# their asserts as rich: pytest parses, rewrites and compiles a test module on every run
# (nothing is cached with PYTHONDONTWRITEBYTECODE, as on this machine and in many CI jobs),
# and a bare module of one-line asserts made the deproxy suite's longer module count as
# fixture cost (~0.7 ms/test of the 3.0 measured, and one more full GC of its AST).
DEPROXY_TEST = """
def test_{n}(deproxy, endpoint):
    server = endpoint()
    assert deproxy.make_request(server.url).received_response.code == "200"
"""
BARE_TEST = """
def test_{n}():
    server = endpoint()
    assert deproxy.make_request(server.url).received_response.code == "200"
"""
BARE_HEAD = """from types import SimpleNamespace

_CHAIN = SimpleNamespace(received_response=SimpleNamespace(code="200"))
_SERVER = SimpleNamespace(url="http://127.0.0.1:1")
deproxy = SimpleNamespace(make_request=lambda url: _CHAIN)


def endpoint():
    return _SERVER

"""

# The floor: the same suite as DEPROXY_TEST, its two fixtures overridden by a conftest with the
# least that the same design costs: a server with a poll thread of its own per endpoint
# (epoll, accept, answer at the end of a head, close at EOF), started per test and joined at
# its end, and a client that connects, sends, reads and closes. What the row shows over this
# is what pytest_deproxy adds to what any such design costs in a test.
FLOOR_CONFTEST = r"""import select, socket, threading
from types import SimpleNamespace
import pytest

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


class Floor:
    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.url = "http://127.0.0.1:%d" % self.listener.getsockname()[1]
        self.wake_r, self.wake_w = socket.socketpair()
        self.thread = threading.Thread(target=self.serve, daemon=True, name="floor-poll")
        self.thread.start()

    def serve(self):
        ep = select.epoll()
        ep.register(self.listener.fileno(), select.EPOLLIN)
        ep.register(self.wake_r.fileno(), select.EPOLLIN)
        conns = {}
        try:
            while True:
                for fd, _ in ep.poll():
                    if fd == self.wake_r.fileno():
                        return
                    if fd == self.listener.fileno():
                        c, _ = self.listener.accept()
                        conns[c.fileno()] = c
                        ep.register(c.fileno(), select.EPOLLIN)
                        continue
                    c = conns[fd]
                    data = c.recv(65536)
                    if not data:
                        ep.unregister(fd); c.close(); del conns[fd]
                    elif b"\r\n\r\n" in data:
                        c.sendall(ANSWER)
        finally:
            for c in conns.values():
                c.close()
            ep.close()

    def close(self):
        self.wake_w.send(b"x")
        self.thread.join()
        self.listener.close(); self.wake_r.close(); self.wake_w.close()


def make_request(url):
    port = int(url.rsplit(":", 1)[1])
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = s.recv(65536)
        while data and b"\r\n\r\n" not in data:
            data += s.recv(65536)
    finally:
        s.close()
    code = data.split(b" ", 2)[1].decode()
    return SimpleNamespace(received_response=SimpleNamespace(code=code))


@pytest.fixture
def deproxy():
    floors = []
    yield SimpleNamespace(make_request=make_request, floors=floors)
    for f in floors:
        f.close()


@pytest.fixture
def endpoint(deproxy):
    def make():
        f = Floor()
        deproxy.floors.append(f)
        return f
    return make
"""


def write_suite(directory: Path, template: str, count: int, head: str = "") -> Path:
    directory.mkdir()
    (directory / "pytest.ini").write_text("[pytest]\n")
    tests = "".join(template.format(n=n) for n in range(count))
    (directory / "test_suite.py").write_text(head + tests)
    return directory


def run_suite(directory: Path, count: int, *options: str) -> tuple[float, float, int]:
    """(seconds by the clock, CPU seconds, voluntary context switches) of the pytest process's
    whole run; ``options`` go on its command line."""
    started, children = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"),
            *options,
        ],
        cwd=directory,
        capture_output=True,
        text=True,
    )
    took, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or f"{count} passed" not in done.stdout:
        raise RuntimeError(f"the generated suite in {directory} failed:\n{done.stdout[-2000:]}")
    cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    return took, cpu, after.ru_nvcsw - children.ru_nvcsw


FIXTURE_ROUNDS = 15  # at least, for this row (see bench_fixtures)


def bench_fixtures() -> Iterator[Row]:
    count = scaled(500, 20)
    with tempfile.TemporaryDirectory(prefix="deproxy-suites-") as work:
        ours = write_suite(Path(work) / "deproxy", DEPROXY_TEST, count)
        bare = write_suite(Path(work) / "bare", BARE_TEST, count, BARE_HEAD)
        floor = write_suite(Path(work) / "floor", DEPROXY_TEST, count)
        (floor / "conftest.py").write_text(FLOOR_CONFTEST)
        figures = ClockAndCpu()
        switches: dict[str, list[float]] = {}

        def measure(label: str, suite: Path) -> float:
            took, cpu, voluntary = run_suite(suite, count)
            switches.setdefault(label, []).append(voluntary)
            return figures.add(label, took, cpu)

        rounds = SETTINGS.rounds if SETTINGS.quick else max(SETTINGS.rounds, FIXTURE_ROUNDS)
        # A whole run's time varies by ~10% from run to run (~0.6 ms a test of a ~1 ms
        # figure): with five rounds, repeated runs of this row disagreed by up to 50%; with
        # nine, by up to 18% (0.93 and 1.11 ms on the same code).
        alternate(
            {
                "deproxy": lambda: measure("deproxy", ours),
                "bare": lambda: measure("bare", bare),
                "floor": lambda: measure("floor", floor),
            },
            rounds,
        )
        # Both suites load the plugin, and with it all of pytest_deproxy: what that import
        # costs a run is in neither's difference, so it is measured apart, on a suite of one
        # bare test run with the plugin and without it (-p no:deproxy), in short runs whose
        # difference the noise of a whole 500-test run would hide.
        one = write_suite(Path(work) / "one", BARE_TEST, 1, BARE_HEAD)
        loads = ClockAndCpu()
        alternate(
            {
                "loaded": lambda: loads.add("loaded", *run_suite(one, 1)[:2]),
                "unloaded": lambda: loads.add(
                    "unloaded", *run_suite(one, 1, "-p", "no:deproxy")[:2]
                ),
            },
            SETTINGS.rounds * 3,
        )
    times = figures.judged()
    over = _per_test_over(times, count)
    loading = Spread(
        [a - b for a, b in zip(loads.cpu["loaded"], loads.cpu["unloaded"], strict=True)]
    )
    other, other_name = (figures.clock, "by the clock") if SETTINGS.cpu else (figures.cpu, "CPU")
    seconds = " CPU-s" if SETTINGS.cpu else " s"
    yield Row(
        "fixtures",
        f"{count} tests, each deproxy + endpoint() + one request, whole pytest runs",
        f"{Spread(times['deproxy']).show(seconds, 2)}; over bare: {over.show(' ms/test', 3, 1000)}",
        f"{count} tests of the same statements on stand-ins, no fixtures "
        f"{Spread(times['bare']).show(seconds, 2)}",
        ratios(times["deproxy"], times["bare"], times=True),
        Target("<=", 1.0),
        checked=over.median * 1000,
        notes=[
            f"target on the milliseconds per test over bare (ratio: whole runs; {rounds} rounds)",
            figures.other_note("deproxy", "bare", times=True),
            f"over bare {other_name}: {_per_test_over(other, count).show(' ms/test', 3, 1000)}",
            "a thread-per-endpoint floor (FLOOR_CONFTEST: the same two fixtures over a bare "
            f"epoll server and socket client) over bare: {_per_test_over(times, count, 'floor').show(' ms/test', 3, 1000)}, "
            f"CPU {_per_test_over(figures.cpu, count, 'floor').show(' ms/test', 3, 1000)}",
            "voluntary context switches of the run over bare: "
            f"{_per_test_over(switches, count).show(' a test', 1)} (the floor: "
            f"{_per_test_over(switches, count, 'floor').show(' a test', 1)})",
            "loading the plugin, in both suites and so not in the figure (a one-test run with "
            f"it and with -p no:deproxy): {loading.show(' CPU-s a run', 2)}",
        ],
    )


def _per_test_over(times: dict[str, list[float]], count: int, subject: str = "deproxy") -> Spread:
    pairs = zip(times[subject], times["bare"], strict=True)
    return Spread([(ours - bare) / count for ours, bare in pairs])


# -- WebSocket and HTTP/2, from their own scripts -------------------------------------------


def bench_websocket() -> Iterator[Row]:
    import websocket

    messages = scaled(10_000, 640)
    rates = websocket.compare(connections=4, messages=messages, window=32, rounds=SETTINGS.rounds)
    yield Row(
        "websocket",
        f"WebSocket echo, 4 connections x {messages:,} messages of 64 B (benchmarks/websocket.py)",
        rate_spread(rates["endpoint"], " msg/s"),
        "bare wsproto echo server " + rate_spread(rates["bare"], " msg/s"),
        ratios(rates["endpoint"], rates["bare"]),
        Target(">=", 0.8),
    )


def bench_http2() -> Iterator[Row]:
    import shutil

    import http2

    rounds = SETTINGS.rounds
    note = "benchmarks/http2.py's measurements, alternating rounds, default settings"
    if shutil.which("h2load") is None:
        yield unavailable("http2", "HTTP/2 endpoint", "h2load is not installed (nghttp2-client)")
    else:
        endpoint = http2.endpoint_rates(rounds, scaled(20000, 2000))
        h1 = [rate for rate, _ in endpoint["h1"]]
        streams = [rate for rate, _ in endpoint["h2"]]
        yield Row(
            "http2",
            f"h2c endpoint, {http2.STREAMS} streams on one connection, under h2load",
            rate_spread(streams),
            f"HTTP/1.1 endpoint, {http2.STREAMS} connections " + rate_spread(h1),
            ratios(streams, h1),
            Target(">=", 0.5),
            notes=[note, "h2 library alone: " + rate_spread([r for r, _ in endpoint["bare"]])],
        )
    client = http2.client_rates(rounds, scaled(2000, 200))
    ours = [rate for rate, _ in client["ours"]]
    bare = [rate for rate, _ in client["bare"]]
    yield Row(
        "http2",
        "make_request over one h2c connection, one request after another",
        rate_spread(ours),
        "bare h2 client and server " + rate_spread(bare),
        ratios(ours, bare),
        Target(">=", 0.8),
        notes=[note],
    )


# -- replaying with many interactions ------------------------------------------------------


def bench_replay_scaling() -> Iterator[Row]:
    from pytest_deproxy.models import Request

    services = [{"type": "BaseService", "name": "Api", "hosts_list": [MITM_HOST]}]
    sizes = (10, scaled(10_000, 1_000))
    # Enough requests a round (~0.3 s) that whatever the MITM does once in a while (its check
    # for files edited in place) is in every round in its share, not in some rounds whole.
    count = scaled(3000, 300)
    figures = ClockAndCpu()
    with tempfile.TemporaryDirectory() as work, Deproxy() as deproxy:
        senders: dict[int, Callable[[], float]] = {}
        for size in sizes:
            root = Path(work) / str(size)
            directory = root / "default" / "Api"
            directory.mkdir(parents=True)
            for number in range(size):
                (directory / f"interaction_{number}.yaml").write_text(
                    f"request: {{method: GET, url: 'http://{MITM_HOST}/item/{number}', headers: {{}}, body: null}}\n"
                    f"response: {{status: {{code: 200, message: OK}}, headers: {{}}, body: 'item {number}'}}\n"
                )
            mitm = deproxy.add_mitm_endpoint(
                scenarios_path=root, services=services, name=f"m{size}"
            )
            connection = deproxy.connect(mitm.url)
            request = Request("GET", f"/item/{size - 1}", {"Host": MITM_HOST})
            connection.send(request)  # loads and indexes the scenario once
            senders[size] = lambda c=connection, r=request, label=str(size): figures.add(  # type: ignore[misc]
                label, *timed_rates(lambda: c.send(r), count)
            )
        # Both scenarios are in this one heap: a full collection of the garbage collector,
        # walking their 100,000-odd objects, lands in whichever round runs then (0.1-0.3 s,
        # the whole of a round). Frozen, the heap made so far is not walked, and what the
        # rounds leave (their records) is collected in every round alike.
        gc.collect()
        gc.freeze()
        try:
            alternate({str(size): senders[size] for size in sizes}, SETTINGS.rounds)
        finally:
            gc.unfreeze()
    rates = figures.judged()
    small, large = (rates[str(size)] for size in sizes)
    yield Row(
        "replay-scaling",
        f"MITM replay, request matching the last of {sizes[1]:,} interactions",
        rate_spread(large),
        f"the last of {sizes[0]} " + rate_spread(small),
        ratios(large, small),
        Target(">=", 0.67),
        notes=[
            f"one keep-alive connection, {count:,} requests a round, the heap made before the "
            "rounds frozen (gc.freeze); a rate ratio (>= 0.67: at most 1.5x the cost)",
            figures.other_note(str(sizes[1]), str(sizes[0])),
        ],
    )


# This module's rows alone: python benchmarks/rows_local.py [--quick] [ROW ...]
if __name__ == "__main__":
    import sys

    import run

    sys.exit(run.main_for_module("rows_local", sys.argv[1:]))
