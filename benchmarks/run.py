"""pytest-deproxy's benchmarks: every target of issue 18, each a ratio against a baseline
measured in the same run, at the settings a user gets without asking.

    python benchmarks/run.py                  # every row (about 15 minutes)
    python benchmarks/run.py endpoint tls     # only some rows (--list names them)
    python benchmarks/run.py --quick make-request   # a smoke run: 1 round, small counts
    python benchmarks/run.py --rounds 8 --write     # and regenerate benchmarks/RESULTS.md

How it keeps the numbers honest on a shared, noisy 2-core machine:

- Subject and baseline are measured in alternating rounds, shuffled each round; each round
  gives one ratio, and the table shows the median ratio with its min and max over
  ``--rounds`` (default 5). The verdict is the median's.
- ``wrk`` runs on a core of its own and the server on the other (``taskset``; see
  benchmarks/load.py), each server in a fresh process per round. Without taskset or a
  second core it says so above the table.
- Everything runs at default settings: ``Deproxy()``, ``add_endpoint()``; only the row that
  compares defaults with capped records caps anything.
- Rates from wrk are refused silently never: socket errors and non-2xx answers are noted.

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
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import connects  # noqa: E402
import load  # noqa: E402
from against_commit import DEFAULT_BASELINE, checkout  # noqa: E402
from floor import BareClient, BareServer  # noqa: E402
from servers import MITM_HOST, MITM_PATH  # noqa: E402

from pytest_deproxy import Deproxy, __version__  # noqa: E402


@dataclass
class Settings:
    rounds: int = 5
    quick: bool = False
    seconds: int = 3  # of wrk per measurement
    baseline_commit: str = DEFAULT_BASELINE


SETTINGS = Settings()


def scaled(full: int, quick: int) -> int:
    return quick if SETTINGS.quick else full


# -- rows, spreads and verdicts -------------------------------------------------------------


@dataclass
class Spread:
    """Values over rounds: shown as median [min-max]."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def show(self, unit: str = "", digits: int = 2, scale: float = 1.0) -> str:
        def number(value: float) -> str:
            return f"{value * scale:,.{digits}f}"

        low, high = min(self.values), max(self.values)
        spread = f" [{number(low)}-{number(high)}]" if len(self.values) > 1 else ""
        return f"{number(self.median)}{unit}{spread}"


def ratios(subject: list[float], baseline: list[float]) -> Spread:
    """One ratio per round: subject and baseline of the same round divided."""
    return Spread([s / b if b else float("inf") for s, b in zip(subject, baseline, strict=True)])


@dataclass
class Target:
    op: str  # ">=" or "<="
    value: float

    def met(self, measured: float) -> bool:
        return measured >= self.value if self.op == ">=" else measured <= self.value

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


@dataclass
class Row:
    name: str  # the row group, as selected on the command line
    what: str
    measured: str
    baseline: str
    ratio: Spread | None
    target: Target | None
    verdict: str = ""
    notes: list[str] = field(default_factory=list)
    checked: float | None = None  # what the target is held to, when not the median ratio

    def __post_init__(self) -> None:
        if self.verdict:
            return
        value = (
            self.checked
            if self.checked is not None
            else (self.ratio.median if self.ratio else None)
        )
        if self.target is None or value is None:
            self.verdict = "report"
        else:
            self.verdict = "met" if self.target.met(value) else "NOT MET"


def unavailable(name: str, what: str, why: str) -> Row:
    return Row(name, what, "-", "-", None, None, verdict=f"n/a: {why}")


def alternate(subjects: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each subject once per round, in a new shuffled order every round."""
    results: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(rounds):
        for name in random.sample(list(subjects), len(subjects)):
            results[name].append(subjects[name]())
    return results


def rate_spread(values: list[float], unit: str = " req/s") -> str:
    return Spread(values).show(unit, digits=0)


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
started = time.perf_counter()
for number in range(count):
    deproxy.make_request(endpoint.url, connection=connection)
    if number == count // 2:
        half = rss()
took = time.perf_counter() - started
print(count / took, rss() - before, rss() - half)
connection.close()
deproxy.shutdown()
"""


def bench_defaults() -> Iterator[Row]:
    count = scaled(100_000, 2_000)
    runs: dict[str, list[tuple[float, float, float]]] = {"defaults": [], "capped": []}

    def run(kind: str) -> float:
        done = subprocess.run(
            [*load.SERVER_PREFIX, sys.executable, "-c", LONG_RUN, kind, str(count)],
            capture_output=True,
            text=True,
            check=True,
            timeout=1200,
        )
        rate, grown, second_half = (float(x) for x in done.stdout.split())
        runs[kind].append((rate, grown, second_half))
        return rate

    rates = alternate(
        {"defaults": lambda: run("defaults"), "capped": lambda: run("capped")}, SETTINGS.rounds
    )
    yield Row(
        "defaults",
        f"make_request + endpoint, {count:,} requests on one connection, Deproxy() and add_endpoint()",
        rate_spread(rates["defaults"]),
        "capped (keep_chains=1000, keep_handlings=1000) " + rate_spread(rates["capped"]),
        ratios(rates["defaults"], rates["capped"]),
        Target(">=", 0.9),
        notes=["client and endpoint in one process, on one core"],
    )
    grown = Spread([r[1] for r in runs["defaults"]])
    second_half = Spread([r[2] for r in runs["defaults"]])
    capped = Spread([r[1] for r in runs["capped"]])
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


# -- the endpoint under wrk -----------------------------------------------------------------


def wrk_rates(
    kinds: dict[str, tuple[str, dict[str, object]]], connections: int, notes: list[str]
) -> dict[str, list[float]]:
    """Requests/s per round for each labelled (kind, measure() options); errors and non-2xx
    answers go into ``notes``."""
    troubles: dict[str, list[int]] = {label: [0, 0] for label in kinds}
    cpu: dict[str, list[float]] = {label: [] for label in kinds}

    def one(label: str) -> Callable[[], float]:
        kind, options = kinds[label]

        def measure() -> float:
            result = load.measure(kind, connections, SETTINGS.seconds, **options)  # type: ignore[arg-type]
            troubles[label][0] += result.errors
            troubles[label][1] += result.non_2xx
            cpu[label].append(result.per_cpu_second)
            return result.rate

        return measure

    results = alternate({label: one(label) for label in kinds}, SETTINGS.rounds)
    for label, (errors, non_2xx) in troubles.items():
        if errors or non_2xx:
            notes.append(f"{label}: {errors} socket errors, {non_2xx} non-2xx answers from wrk")
    labels = list(kinds)
    if len(labels) == 2:
        per_cpu = ratios(cpu[labels[0]], cpu[labels[1]])
        notes.append(f"per server CPU second: {per_cpu.show()}")
    return results


def need_wrk(name: str, what: str) -> Row | None:
    if shutil.which("wrk") is None:
        return unavailable(name, what, "wrk is not installed (apt-get install wrk)")
    return None


def bench_endpoint() -> Iterator[Row]:
    what = "endpoint, stock handler, under wrk"
    if (missing := need_wrk("endpoint", what)) is not None:
        yield missing
        return
    for connections in (10, 100):
        notes: list[str] = []
        rates = wrk_rates(
            {"endpoint": ("endpoint", {}), "floor": ("floor-selector", {})}, connections, notes
        )
        yield Row(
            "endpoint",
            f"{what}, {connections} keep-alive connections",
            rate_spread(rates["endpoint"]),
            "bare selector loop + heads reader " + rate_spread(rates["floor"]),
            ratios(rates["endpoint"], rates["floor"]),
            Target(">=", 0.7),
            notes=notes,
        )


def bench_httpserver() -> Iterator[Row]:
    what = "endpoint vs pytest-httpserver under wrk, 10 connections"
    if (missing := need_wrk("httpserver", what)) is not None:
        yield missing
        return
    try:
        version("pytest-httpserver")
    except PackageNotFoundError:
        yield unavailable(
            "httpserver", what, "pytest-httpserver is not installed (the bench extra)"
        )
        return
    notes = ["pytest-httpserver answers HTTP/1.0 and closes: wrk reconnects for each request"]
    rates = wrk_rates({"endpoint": ("endpoint", {}), "httpserver": ("httpserver", {})}, 10, notes)
    yield Row(
        "httpserver",
        what,
        rate_spread(rates["endpoint"]),
        "pytest-httpserver " + rate_spread(rates["httpserver"]),
        ratios(rates["endpoint"], rates["httpserver"]),
        Target(">=", 10),
        notes=notes,
    )


def bench_custom() -> Iterator[Row]:
    what = "custom handler (a plain function returning a Response) vs the stock handler"
    if (missing := need_wrk("custom", what)) is not None:
        yield missing
        return
    notes: list[str] = []
    rates = wrk_rates({"custom": ("custom", {}), "stock": ("endpoint", {})}, 10, notes)
    from servers import custom_handler

    notes.insert(0, custom_handler()[1])
    yield Row(
        "custom",
        f"{what}, wrk, 10 connections",
        rate_spread(rates["custom"]),
        "stock handler " + rate_spread(rates["stock"]),
        ratios(rates["custom"], rates["stock"]),
        Target(">=", 0.7),
        notes=notes,
    )


MITM_SCRIPT = f'wrk.path = "http://{MITM_HOST}{MITM_PATH}"\nwrk.headers["Host"] = "{MITM_HOST}"\n'


def against_baseline(name: str, cases: list[tuple[str, str, dict[str, object]]]) -> Iterator[Row]:
    """Each (what, kind, measure() options) from this checkout against the pinned commit."""
    commit = SETTINGS.baseline_commit
    if (missing := need_wrk(name, cases[0][0])) is not None:
        yield missing
        return
    try:
        with checkout(commit) as tree:
            for what, kind, options in cases:
                notes: list[str] = []
                rates = wrk_rates(
                    {"this checkout": (kind, options), commit: (kind, {**options, "tree": tree})},
                    10,
                    notes,
                )
                yield Row(
                    name,
                    what,
                    rate_spread(rates["this checkout"]),
                    f"commit {commit} " + rate_spread(rates[commit]),
                    ratios(rates["this checkout"], rates[commit]),
                    Target(">=", 2),
                    notes=notes,
                )
    except RuntimeError as exc:
        if "cannot unpack" not in str(exc):
            raise
        yield unavailable(name, cases[0][0], str(exc).splitlines()[0])


def bench_tls() -> Iterator[Row]:
    yield from against_baseline(
        "tls",
        [
            (
                "TLS endpoint under wrk, 10 keep-alive connections",
                "endpoint-tls",
                {"scheme": "https"},
            ),
            (
                "TLS endpoint under wrk, a new connection (handshake) per request",
                "endpoint-tls",
                {"scheme": "https", "headers": ("Connection: close",)},
            ),
        ],
    )


def bench_mitm() -> Iterator[Row]:
    yield from against_baseline(
        "mitm",
        [
            (
                "MITM replaying one recorded interaction under wrk (plain HTTP proxy requests)",
                "mitm",
                {"script": MITM_SCRIPT},
            )
        ],
    )


def bench_transcript() -> Iterator[Row]:
    what = "raw transcripts captured (as shipped) vs not captured (Transcript.add stubbed)"
    if (missing := need_wrk("transcript", what)) is not None:
        yield missing
        return
    notes = ["no setting turns capture off: the off side patches connections.Transcript.add"]
    rates = wrk_rates({"on": ("endpoint", {}), "off": ("no-transcript", {})}, 10, notes)
    yield Row(
        "transcript",
        f"{what}, wrk, 10 connections",
        rate_spread(rates["on"]),
        "not captured " + rate_spread(rates["off"]),
        ratios(rates["on"], rates["off"]),
        Target(">=", 0.9),
        notes=notes,
    )


# -- make_request against bare h11 ----------------------------------------------------------


def timed_rate(action: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        action()
    return count / (time.perf_counter() - started)


def bench_make_request() -> Iterator[Row]:
    server = BareServer()
    client = BareClient(server.port)
    try:
        with Deproxy() as deproxy:
            endpoint = deproxy.add_endpoint()
            connection = deproxy.connect(endpoint.url)

            def fresh_floor() -> None:
                one = BareClient(server.port)
                one.get()
                one.close()

            cases = [
                (
                    "persistent connection",
                    lambda: deproxy.make_request(endpoint.url, connection=connection),
                    client.get,
                    scaled(2000, 200),
                ),
                (
                    "a fresh connection per request",
                    lambda: deproxy.make_request(endpoint.url),
                    fresh_floor,
                    scaled(500, 50),
                ),
            ]
            for label, subject, baseline, count in cases:
                rates = alternate(
                    {
                        "ours": lambda s=subject, c=count: timed_rate(s, c),  # type: ignore[misc]
                        "floor": lambda b=baseline, c=count: timed_rate(b, c),  # type: ignore[misc]
                    },
                    SETTINGS.rounds,
                )
                yield Row(
                    "make-request",
                    f"make_request round trip against the endpoint, {label}, {count:,} per round",
                    rate_spread(rates["ours"]),
                    "bare h11 client + h11 selector server (floor.py) "
                    + rate_spread(rates["floor"]),
                    ratios(rates["ours"], rates["floor"]),
                    Target(">=", 1.0),
                    notes=["client and server in this process, both sides"],
                )
            connection.close()
    finally:
        client.close()
        server.close()


# -- bursts of connections ------------------------------------------------------------------


def bench_connects() -> Iterator[Row]:
    count = scaled(1000, 100)
    outcomes: dict[str, list[int]] = {"endpoint": [], "floor": []}

    def one(kind: str, label: str) -> Callable[[], float]:
        def measure() -> float:
            seconds, answered = connects.measure(kind, count)
            outcomes[label].append(answered)
            return seconds

        return measure

    times = alternate(
        {"endpoint": one("endpoint", "endpoint"), "floor": one("floor-selector", "floor")},
        SETTINGS.rounds,
    )
    all_answered = all(n == count for n in outcomes["endpoint"])
    seconds = Spread(times["endpoint"])
    row = Row(
        "connects",
        f"{count:,} simultaneous connects, each answered once (to the last answer)",
        f"{seconds.show(' s', 3)}, answered {min(outcomes['endpoint'])}-{max(outcomes['endpoint'])}/{count}",
        f"bare selector loop {Spread(times['floor']).show(' s', 3)}",
        ratios(times["endpoint"], times["floor"]),
        Target("<=", 0.25),
        checked=seconds.median,
        notes=["target on the endpoint's seconds (ratio: times the selector loop's)"],
    )
    if not all_answered:
        row.verdict = "NOT MET"
        row.notes.append("not every connection was answered in every round")
    yield row


# -- the cost of the fixtures in a whole pytest run -----------------------------------------

DEPROXY_TEST = """
def test_{n}(deproxy, endpoint):
    server = endpoint()
    assert deproxy.make_request(server.url).received_response.code == "200"
"""
BARE_TEST = """
def test_{n}():
    assert "200" == "200"
"""


def write_suite(directory: Path, template: str, count: int) -> Path:
    directory.mkdir()
    (directory / "pytest.ini").write_text("[pytest]\n")
    (directory / "test_suite.py").write_text("".join(template.format(n=n) for n in range(count)))
    return directory


def run_suite(directory: Path, count: int) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=directory,
        capture_output=True,
        text=True,
    )
    took = time.perf_counter() - started
    if done.returncode != 0 or f"{count} passed" not in done.stdout:
        raise RuntimeError(f"the generated suite in {directory} failed:\n{done.stdout[-2000:]}")
    return took


def bench_fixtures() -> Iterator[Row]:
    count = scaled(500, 20)
    with tempfile.TemporaryDirectory(prefix="deproxy-suites-") as work:
        ours = write_suite(Path(work) / "deproxy", DEPROXY_TEST, count)
        bare = write_suite(Path(work) / "bare", BARE_TEST, count)
        times = alternate(
            {"deproxy": lambda: run_suite(ours, count), "bare": lambda: run_suite(bare, count)},
            SETTINGS.rounds,
        )
    over = Spread([(d - b) / count for d, b in zip(times["deproxy"], times["bare"], strict=True)])
    yield Row(
        "fixtures",
        f"{count} tests, each deproxy + endpoint() + one request, whole pytest runs",
        f"{Spread(times['deproxy']).show(' s', 2)}; over bare: {over.show(' ms/test', 3, 1000)}",
        f"{count} bare tests {Spread(times['bare']).show(' s', 2)}",
        ratios(times["deproxy"], times["bare"]),
        Target("<=", 1.0),
        checked=over.median * 1000,
        notes=["target on the milliseconds per test over bare (ratio: whole runs)"],
    )


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
    import http2

    total = scaled(2000, 200)
    needed = ("streams_vs_connections", "client_vs_bare")
    if not all(hasattr(http2, name) for name in needed):
        yield unavailable("http2", "HTTP/2", f"benchmarks/http2.py has no {' / '.join(needed)}")
        return
    runs = [
        (http2.streams_vs_connections(total), http2.client_vs_bare(total))
        for _ in range(SETTINGS.rounds)
    ]
    h1 = [r[0][0] for r in runs]
    streams = [r[0][1] for r in runs]
    ours = [r[1][0] for r in runs]
    bare = [r[1][1] for r in runs]
    note = "benchmarks/http2.py's own settings and rounds (measured back to back, not shuffled)"
    yield Row(
        "http2",
        f"h2c endpoint, {http2.THREADS} streams on one connection (benchmarks/http2.py)",
        rate_spread(streams),
        f"HTTP/1.1 endpoint, {http2.THREADS} connections " + rate_spread(h1),
        ratios(streams, h1),
        Target(">=", 0.5),
        notes=[note],
    )
    yield Row(
        "http2",
        "make_request over one h2c connection (benchmarks/http2.py)",
        rate_spread(ours),
        "bare h2 client and server " + rate_spread(bare),
        ratios(ours, bare),
        Target(">=", 0.8),
        notes=[note],
    )


# -- replaying with many interactions (not an issue 18 target; kept from the first harness) -


def bench_replay_scaling() -> Iterator[Row]:
    from pytest_deproxy.models import Request

    services = [{"type": "BaseService", "name": "Api", "hosts_list": [MITM_HOST]}]
    sizes = (10, scaled(10_000, 1_000))
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
            senders[size] = lambda c=connection, r=request: timed_rate(  # type: ignore[misc]
                lambda: c.send(r), scaled(300, 30)
            )
        rates = alternate({str(size): senders[size] for size in sizes}, SETTINGS.rounds)
    small, large = (rates[str(size)] for size in sizes)
    yield Row(
        "replay-scaling",
        f"MITM replay, request matching the last of {sizes[1]:,} interactions",
        rate_spread(large),
        f"the last of {sizes[0]} " + rate_spread(small),
        ratios(large, small),
        Target(">=", 0.67),
        notes=["one keep-alive connection; a rate ratio (>= 0.67: at most 1.5x the cost)"],
    )


ROWS: dict[str, tuple[Callable[[], Iterator[Row]], str]] = {
    "defaults": (bench_defaults, "defaults vs capped records over 100,000 requests: rate, RSS"),
    "endpoint": (bench_endpoint, "endpoint vs a bare selector loop, 10 and 100 connections"),
    "httpserver": (bench_httpserver, "endpoint vs pytest-httpserver (>= 10x)"),
    "custom": (bench_custom, "custom non-blocking handler vs the stock handler (>= 0.7)"),
    "tls": (bench_tls, "TLS endpoint vs the pinned commit (>= 2x)"),
    "mitm": (bench_mitm, "MITM replay under load vs the pinned commit (>= 2x)"),
    "make-request": (bench_make_request, "make_request vs bare h11, persistent and fresh (>= 1)"),
    "connects": (bench_connects, "1,000 simultaneous connects, all answered (<= 0.25 s)"),
    "fixtures": (bench_fixtures, "500-test suite with the fixtures vs bare (<= 1 ms/test)"),
    "websocket": (bench_websocket, "WebSocket echo vs bare wsproto (>= 0.8)"),
    "http2": (bench_http2, "HTTP/2 figures of benchmarks/http2.py"),
    "transcript": (bench_transcript, "raw transcript capture vs none (>= 0.9)"),
    "replay-scaling": (bench_replay_scaling, "MITM replay with 10,000 interactions vs 10"),
}


# -- output -----------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    lines = [
        "| row | benchmark | measured, median [min-max] | baseline, same run | ratio, median [min-max] | target | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        what = row.what + (f" ({'; '.join(row.notes)})" if row.notes else "")
        ratio = row.ratio.show() if row.ratio is not None else "-"
        target = str(row.target) if row.target is not None else "-"
        lines.append(
            f"| {row.name} | {what} | {row.measured} | {row.baseline} | {ratio} | {target} | {row.verdict} |"
        )
    return "\n".join(lines)


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
    parser.add_argument("--write", action="store_true", help="regenerate benchmarks/RESULTS.md")
    parser.add_argument("--list", action="store_true", help="list the rows and exit")
    options = parser.parse_args(argv)
    unknown = [name for name in options.rows if name not in ROWS]
    if unknown:
        parser.error(f"unknown row {', '.join(unknown)}; choose from: {', '.join(ROWS)}")
    if options.rounds is not None and options.rounds < 1:
        parser.error("--rounds takes a number >= 1")
    return options


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
                    f"{row.ratio.show() if row.ratio else '-'} | {row.verdict}",
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
    missed = sum(row.verdict == "NOT MET" for row in rows)
    print(f"\n{len(rows)} rows: {sum(row.verdict == 'met' for row in rows)} met, {missed} not met")
    if options.write:
        write_results(text, head)
        print(f"wrote {HERE / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
