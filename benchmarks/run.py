"""pytest-deproxy's benchmarks: each one a ratio against a baseline measured in the same run.

    python benchmarks/run.py            # all of them, then writes benchmarks/RESULTS.md
    python benchmarks/run.py 1 4        # only some

The machine is shared and noisy, so absolute numbers drift; ratios measured side by side, in
alternating short rounds with the median taken, hold. Nothing here asserts inside the test
suite: the table says whether each target is met.

Needs the ``bench`` extra (pytest-httpserver), ``wrk`` (Debian) for 2, and mitmproxy for 3,
which is installed into its own virtual environment (benchmarks/.venv-mitmproxy) on first use.
"""

from __future__ import annotations

import datetime
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from floor import BareClient, BareServer  # noqa: E402

from pytest_deproxy import Deproxy, __version__  # noqa: E402
from pytest_deproxy.client import Target, open_connection  # noqa: E402
from pytest_deproxy.models import Request  # noqa: E402

ROUNDS = 7


@dataclass
class Row:
    benchmark: str
    measured: str
    baseline: str
    ratio: float | None
    target: str
    met: bool | None
    note: str = ""


def rate(action: Callable[[], object], count: int) -> tuple[float, float]:
    """(requests per wall-clock second, requests per CPU second of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        action()
    return count / (time.perf_counter() - wall), count / max(time.process_time() - cpu, 1e-9)


def side_by_side(
    subject: Callable[[], object], baseline: Callable[[], object], count: int
) -> tuple[float, float, float, float]:
    """Alternate short rounds of both; medians of (subject, baseline) wall and CPU rates."""
    rates: dict[str, list[tuple[float, float]]] = {"subject": [], "baseline": []}
    for round_number in range(ROUNDS):
        order = [("subject", subject), ("baseline", baseline)]
        for name, action in order if round_number % 2 else reversed(order):
            rates[name].append(rate(action, count))

    def median(name: str, index: int) -> float:
        return statistics.median(r[index] for r in rates[name])

    return median("subject", 0), median("baseline", 0), median("subject", 1), median("baseline", 1)


# -- 1. make_request against a bare h11 client and server ----------------------------------


def bench_round_trip() -> list[Row]:
    server = BareServer()
    client = BareClient(server.port)
    rows = []
    with Deproxy(keep_chains=1000) as deproxy:
        endpoint = deproxy.add_endpoint(keep_handlings=1000)
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
                1000,
            ),
            (
                "fresh connection per call",
                lambda: deproxy.make_request(endpoint.url),
                fresh_floor,
                400,
            ),
        ]
        for label, subject, baseline, count in cases:
            ours, floor, ours_cpu, floor_cpu = side_by_side(subject, baseline, count)
            rows.append(
                Row(
                    f"1. make_request round trip, {label}",
                    f"{ours:,.0f} req/s",
                    f"bare h11 client+server {floor:,.0f} req/s",
                    ours / floor,
                    ">= 0.7",
                    ours / floor >= 0.7,
                    f"per CPU second: {ours_cpu / floor_cpu:.2f}",
                )
            )
    client.close()
    server.close()
    return rows


# -- 2. an endpoint under an external load generator ---------------------------------------


def wrk(url: str, seconds: int = 4) -> float:
    result = subprocess.run(
        ["wrk", "-t", "2", "-c", "16", "-d", f"{seconds}s", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    )
    for line in result.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(f"wrk printed no rate:\n{result.stdout}{result.stderr}")


def bench_external_load() -> list[Row]:
    if shutil.which("wrk") is None:
        return [
            Row(
                "2. endpoint under wrk",
                "-",
                "-",
                None,
                "",
                None,
                "wrk is not installed (apt-get install wrk)",
            )
        ]
    from pytest_httpserver import HTTPServer

    httpserver = HTTPServer(host="127.0.0.1", port=0)
    httpserver.expect_request("/").respond_with_data("")
    httpserver.start()
    bare = BareServer()
    results: dict[str, list[float]] = {"ours": [], "httpserver": [], "bare": []}
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(keep_handlings=10_000)
        targets = {
            "ours": endpoint.url + "/",
            "httpserver": httpserver.url_for("/"),
            "bare": f"http://127.0.0.1:{bare.port}/",
        }
        for _ in range(3):
            for name, url in random.sample(list(targets.items()), 3):
                results[name].append(wrk(url))
    httpserver.stop()
    bare.close()
    ours, theirs, floor = (statistics.median(results[k]) for k in ("ours", "httpserver", "bare"))
    return [
        Row(
            "2. endpoint under wrk (16 keep-alive connections) vs pytest-httpserver",
            f"{ours:,.0f} req/s",
            f"pytest-httpserver {theirs:,.0f} req/s",
            ours / theirs,
            ">= 5",
            ours / theirs >= 5,
        ),
        Row(
            "2. endpoint under wrk vs a bare threaded h11 server",
            f"{ours:,.0f} req/s",
            f"bare h11 server {floor:,.0f} req/s",
            ours / floor,
            ">= 0.8",
            ours / floor >= 0.8,
        ),
    ]


# -- 3. the MITM replaying, against mitmdump --server-replay -------------------------------


def mitmdump_binary() -> Path | None:
    found = shutil.which("mitmdump")
    if found:
        return Path(found)
    venv = HERE / ".venv-mitmproxy"
    binary = venv / "bin" / "mitmdump"
    if not binary.exists():
        print("installing mitmproxy into benchmarks/.venv-mitmproxy ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        installed = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "mitmproxy"], check=False
        )
        if installed.returncode != 0:
            return None
    return binary


def bench_mitm_replay() -> list[Row]:
    binary = mitmdump_binary()
    if binary is None:
        return [
            Row(
                "3. MITM replay vs mitmdump",
                "-",
                "-",
                None,
                "",
                None,
                "mitmproxy could not be installed",
            )
        ]
    from pytest_deproxy.process import ServerProcess, free_port

    rows = []
    with tempfile.TemporaryDirectory() as work, Deproxy() as deproxy:
        work_path = Path(work)
        plain = deproxy.add_endpoint(
            default_handler=lambda r: __import__("pytest_deproxy").Response(200, body="replayed")
        )
        secure = deproxy.add_endpoint(tls=True, default_handler=plain.default_handler)
        urls = {"http": plain.url + "/item", "https": f"https://127.0.0.1:{secure.port}/item"}
        confdir = work_path / "mitmproxy"
        flows = work_path / "flows.mitm"
        record_port = free_port()
        recorder = ServerProcess(
            [
                str(binary),
                "-q",
                "--listen-host",
                "127.0.0.1",
                "-p",
                str(record_port),
                "-w",
                str(flows),
                "--set",
                f"confdir={confdir}",
                "--ssl-insecure",
            ],
            record_port,
            name="mitmdump",
        )
        with recorder:
            mitm_ca = confdir / "mitmproxy-ca-cert.pem"
            import ssl

            trust_mitmproxy = ssl.create_default_context(cafile=str(mitm_ca))
            for url in urls.values():
                recorded = deproxy.make_request(
                    url, proxy=f"http://127.0.0.1:{record_port}", verify=trust_mitmproxy
                )
                assert recorded.received_response is not None, recorded.error
        scenarios = work_path / "scenarios"
        services = [{"type": "BaseService", "name": "Api", "hosts_list": ["127.0.0.1"]}]
        recorder_mitm = deproxy.add_mitm_endpoint(
            scenarios_path=scenarios, services=services, record=True, name="recorder"
        )
        for url in urls.values():
            deproxy.make_request(url, proxy=recorder_mitm.url)
        plain.shutdown()
        secure.shutdown()
        ours = deproxy.add_mitm_endpoint(
            scenarios_path=scenarios, services=services, name="replayer"
        )
        ours.set_scenario("default")
        replay_port = free_port()
        replayer = ServerProcess(
            [
                str(binary),
                "-q",
                "--listen-host",
                "127.0.0.1",
                "-p",
                str(replay_port),
                "--set",
                f"confdir={confdir}",
                "--set",
                f"server_replay={flows}",
                "--set",
                "server_replay_reuse=true",
                "--set",
                "server_replay_extra=kill",
                "--set",
                "connection_strategy=lazy",
            ],
            replay_port,
            name="mitmdump",
        )
        with replayer:
            for scheme, url in urls.items():
                ours_client = proxied_client(url, ours.url, None, deproxy.ca)
                theirs_client = proxied_client(
                    url, f"http://127.0.0.1:{replay_port}", trust_mitmproxy, deproxy.ca
                )
                mine, theirs, _, _ = side_by_side(ours_client, theirs_client, 150)
                rows.append(
                    Row(
                        f"3. MITM replay through the proxy, {scheme}{' (CONNECT/TLS)' if scheme == 'https' else ''}",
                        f"{mine:,.0f} req/s",
                        f"mitmdump --server-replay {theirs:,.0f} req/s",
                        mine / theirs,
                        ">= 3",
                        mine / theirs >= 3,
                        "one keep-alive client connection",
                    )
                )
    return rows


def proxied_client(url: str, proxy: str, verify: object, ca: object) -> Callable[[], object]:
    """A keep-alive client through ``proxy`` (a CONNECT tunnel for https) that GETs ``url``."""
    target = Target.parse(url)
    connection = open_connection(target, timeout=30, proxy=proxy, verify=verify, ca=ca)  # type: ignore[arg-type]
    path = url if target.scheme == "http" else target.request_target
    request = Request("GET", path, {"Host": target.host_header})

    def send() -> object:
        response = connection.send(request)
        assert response.body == "replayed", response.body
        return response

    return send


# -- 4. replay cost with 10, 1,000 and 10,000 interactions ---------------------------------


def write_scenario(root: Path, count: int) -> None:
    directory = root / "default" / "Api"
    directory.mkdir(parents=True)
    for number in range(count):
        (directory / f"interaction_{number}.yaml").write_text(
            f"request: {{method: GET, url: 'http://api.example.org/item/{number}', headers: {{}}, body: null}}\n"
            f"response: {{status: {{code: 200, message: OK}}, headers: {{}}, body: 'item {number}'}}\n"
        )


def bench_replay_scaling() -> list[Row]:
    services = [{"type": "BaseService", "name": "Api", "hosts_list": ["api.example.org"]}]
    per_request: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as work, Deproxy(keep_chains=100) as deproxy:
        senders = {}
        for count in (10, 1_000, 10_000):
            root = Path(work) / str(count)
            write_scenario(root, count)
            mitm = deproxy.add_mitm_endpoint(
                scenarios_path=root, services=services, name=f"mitm-{count}"
            )
            connection = deproxy.connect(mitm.url)
            last = f"/item/{count - 1}"
            request = Request("GET", last, {"Host": "api.example.org"})
            connection.send(request)  # loads and indexes the scenario once
            senders[count] = lambda c=connection, r=request: c.send(r)
        rates: dict[int, list[float]] = {count: [] for count in senders}
        for _ in range(ROUNDS):
            for count, send in random.sample(list(senders.items()), len(senders)):
                rates[count].append(rate(send, 300)[0])
        for count, measured in rates.items():
            per_request[count] = 1e6 / statistics.median(measured)
    growth = per_request[10_000] / per_request[10]
    return [
        Row(
            f"4. replay cost per request, {count:,} interactions",
            f"{per_request[count]:,.0f} us",
            "10 interactions" if count != 10 else "-",
            per_request[count] / per_request[10] if count != 10 else None,
            "<= 1.5 at 10,000" if count == 10_000 else "",
            growth <= 1.5 if count == 10_000 else None,
            "request matches the last file",
        )
        for count in (10, 1_000, 10_000)
    ]


# -- 5. the cost of the fixtures -----------------------------------------------------------

DEPROXY_SUITE = """
def test_{n}(deproxy, endpoint):
    server = endpoint()
    assert deproxy.make_request(server.url).received_response.code == "200"
"""
HTTPSERVER_SUITE = """
import urllib.request

def test_{n}(httpserver):
    httpserver.expect_request("/").respond_with_data("")
    assert urllib.request.urlopen(httpserver.url_for("/")).status == 200
"""


def run_suite(directory: Path, template: str, count: int) -> float:
    directory.mkdir()
    (directory / "pytest.ini").write_text("[pytest]\n")
    header = template.split("def test_")[0]
    body = "".join(template[len(header) :].format(n=n) for n in range(count))
    (directory / "test_suite.py").write_text(header + body)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=directory,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def bench_fixture_cost(count: int = 500) -> list[Row]:
    with tempfile.TemporaryDirectory() as work:
        ours = statistics.median(
            run_suite(Path(work) / f"d{n}", DEPROXY_SUITE, count) for n in range(3)
        )
        theirs = statistics.median(
            run_suite(Path(work) / f"h{n}", HTTPSERVER_SUITE, count) for n in range(3)
        )
    return [
        Row(
            f"5. a suite of {count} tests, each deproxy + endpoint + one request",
            f"{1000 * ours / count:.1f} ms/test",
            f"session-scoped pytest-httpserver {1000 * theirs / count:.1f} ms/test",
            ours / theirs,
            "report",
            None,
            "whole pytest run, collection included",
        )
    ]


# -- 6. memory after 100,000 requests ------------------------------------------------------

MEMORY_PROGRAM = """
import sys
from pytest_deproxy import Deproxy
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
keep = None if sys.argv[1] == "all" else int(sys.argv[1])
with Deproxy(keep_chains=keep) as deproxy:
    server = deproxy.add_endpoint(keep_handlings=keep)
    connection = deproxy.connect(server.url)
    deproxy.make_request(server.url, connection=connection)
    before = rss()
    for _ in range(int(sys.argv[2])):
        deproxy.make_request(server.url, connection=connection)
    print(before, rss())
"""


def bench_memory(requests: int = 100_000) -> list[Row]:
    results = {}
    for keep in ("all", "1000"):
        output = subprocess.run(
            [sys.executable, "-c", MEMORY_PROGRAM, keep, str(requests)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        results[keep] = (int(output[0]), int(output[1]))
    grown = {keep: (after - before) / 1024 for keep, (before, after) in results.items()}
    return [
        Row(
            f"6. resident memory growth over {requests:,} requests, record kept",
            f"+{grown['all']:.0f} MiB (RSS {results['all'][1] / 1024:.0f} MiB)",
            "-",
            None,
            "report",
            None,
            f"{grown['all'] * 1024 * 1024 / requests:,.0f} bytes per request",
        ),
        Row(
            "6. same, capped: Deproxy(keep_chains=1000), add_endpoint(keep_handlings=1000)",
            f"+{grown['1000']:.0f} MiB (RSS {results['1000'][1] / 1024:.0f} MiB)",
            "record kept",
            grown["1000"] / grown["all"] if grown["all"] else None,
            "flat",
            grown["1000"] < 0.1 * grown["all"],
        ),
    ]


BENCHMARKS = {
    "1": bench_round_trip,
    "2": bench_external_load,
    "3": bench_mitm_replay,
    "4": bench_replay_scaling,
    "5": bench_fixture_cost,
    "6": bench_memory,
}


def versions() -> str:
    import h11
    import pytest

    parts = [
        f"pytest-deproxy {__version__}",
        f"Python {platform.python_version()}",
        f"h11 {h11.__version__}",
        f"pytest {pytest.__version__}",
    ]
    try:
        from importlib.metadata import version

        parts.append(f"pytest-httpserver {version('pytest-httpserver')}")
    except Exception:
        pass
    binary = shutil.which("mitmdump") or str(HERE / ".venv-mitmproxy" / "bin" / "mitmdump")
    if os.path.exists(binary):
        first = subprocess.run(
            [binary, "--version"], capture_output=True, text=True
        ).stdout.splitlines()
        parts.append(first[0].replace("Mitmproxy:", "mitmproxy").strip() if first else "mitmproxy")
    if shutil.which("wrk"):
        parts.append(
            subprocess.run(["wrk", "--version"], capture_output=True, text=True)
            .stdout.split(" [")[0]
            .strip()
        )
    return ", ".join(parts)


def table(rows: list[Row]) -> str:
    lines = [
        "| benchmark | measured | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[row.met]
        note = f" ({row.note})" if row.note else ""
        lines.append(
            f"| {row.benchmark}{note} | {row.measured} | {row.baseline} | {ratio} | {row.target} | {met} |"
        )
    return "\n".join(lines)


def main(selected: list[str]) -> int:
    rows: list[Row] = []
    for key in selected or list(BENCHMARKS):
        print(f"benchmark {key} ...", flush=True)
        rows.extend(BENCHMARKS[key]())
    text = table(rows)
    print(text)
    if not selected:
        machine = f"{os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}"
        (HERE / "RESULTS.md").write_text(
            textwrap.dedent(f"""\
            # Benchmark results

            Command: `python benchmarks/run.py` (see its docstring). Ratios are measured side by side in
            one run, alternating short rounds and taking medians; absolute numbers drift with the machine.

            - Date: {datetime.date.today().isoformat()}
            - Versions: {versions()}
            - Machine: {machine}

            """)
            + text
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
