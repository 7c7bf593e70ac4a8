"""HTTP/2 benchmarks (a script, not a test): ``python benchmarks/http2.py [--rounds N]``.

The two targets of issue 16, each a ratio taken within one round, over ``--rounds`` (>= 5)
rounds that alternate which side goes first; min/median/max are printed, and a target is
met when the median ratio reaches its goal. The same ratios per CPU second of this process
are printed too: on a machine busy with other work they vary less than the wall clock's.

a. The endpoint: our h2c endpoint answering 8 concurrent streams on one connection, against
   our HTTP/1.1 endpoint answering 8 connections; goal >= 0.5x. Both are driven by the
   same outside load generator, ``h2load`` (``-c 1 -m 8`` against ``--h1 -c 8 -m 1``,
   the same request), pinned with ``taskset`` to a core of its own when there are two, so
   that the endpoint is what is measured, not a Python client sharing its GIL. A bare
   server made of the ``h2`` library alone (one thread per connection, answering every stream
   with the fields our endpoint sends) is measured the same way, for scale: about what any
   endpoint built on ``h2`` can do here.
b. The client and the endpoint: ``make_request`` one after another over one h2c connection
   to our h2c endpoint, against a bare pair made of the ``h2`` library alone (a client and a
   server thread in this process, as ours are), doing the same exchange: the request fields
   ``make_request`` sends (a fresh ``deproxy-request-id`` each time) and the response fields
   our endpoint sends (``server``, ``date``, ``content-length``, the id echoed); goal >= 0.8x.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import h2.config
import h2.connection
import h2.events

from pytest_deproxy import Deproxy
from pytest_deproxy.crafting import new_request_id
from pytest_deproxy.responding import SERVER_NAME, http_date

STREAMS = 8
ENDPOINT_GOAL, CLIENT_GOAL = 0.5, 0.8


# -- a: the endpoint, under h2load ----------------------------------------------------------


def _pinning() -> list[str]:
    """``taskset`` to the last core for the load generator (this process keeps the others)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 or shutil.which("taskset") is None:
        return []
    os.sched_setaffinity(0, cores[:-1])
    return ["taskset", "-c", str(cores[-1])]


def _cpu() -> float:
    """CPU seconds this process (the endpoints, or a client and a server) has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def h2load(pin: list[str], url: str, requests: int, *, http1: bool) -> tuple[float, float]:
    """Requests per second ``h2load`` measured, and per CPU second of this process (the
    endpoint's, whatever else runs on the machine); every request must have succeeded."""
    shape = ["--h1", "-c", str(STREAMS), "-m", "1"] if http1 else ["-c", "1", "-m", str(STREAMS)]
    command = [*pin, "h2load", "-n", str(requests), *shape, url]
    began = _cpu()
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True).stdout
    cpu = _cpu() - began
    done = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded", out)
    rate = re.search(r"finished in [^,]+, ([\d.]+) req/s", out)
    if done is None or rate is None or done.group(1) != done.group(2):
        raise SystemExit(f"h2load did not succeed with every request:\n{out}")
    return float(rate.group(1)), requests / cpu


def endpoint_rates(rounds: int, requests: int) -> dict[str, list[tuple[float, float]]]:
    """(requests per second, per CPU second) of each round: the HTTP/1.1 endpoint ("h1"),
    the h2c endpoint ("h2") and the h2 library alone ("bare"), all at default settings."""
    cores = os.sched_getaffinity(0)
    pin = _pinning()
    h1_rates: list[tuple[float, float]] = []
    h2_rates: list[tuple[float, float]] = []
    bare_rates: list[tuple[float, float]] = []
    with Deproxy() as deproxy:
        h1 = deproxy.add_endpoint()
        h2c = deproxy.add_endpoint(http2="h2c")
        bare = BareH2Server()
        for url, http1 in ((h1.url, True), (h2c.url, False)):  # warm up
            h2load(pin, url + "/", 500, http1=http1)
        for n in range(rounds):
            runs: list[tuple[list[tuple[float, float]], str, bool]] = [
                (h1_rates, h1.url, True),
                (h2_rates, h2c.url, False),
                (bare_rates, bare.url, False),
            ]
            for rates, url, http1 in runs if n % 2 == 0 else runs[::-1]:
                rates.append(h2load(pin, url + "/", requests, http1=http1))
        bare.close()
    os.sched_setaffinity(0, cores)
    return {"h1": h1_rates, "h2": h2_rates, "bare": bare_rates}


def endpoint_target(rounds: int, requests: int) -> bool:
    if shutil.which("h2load") is None:
        print("a. h2load is not installed (nghttp2-client): the endpoint target is not measured")
        return False
    measured = endpoint_rates(rounds, requests)
    h1_rates, h2_rates, bare_rates = measured["h1"], measured["h2"], measured["bare"]
    pinned = len(os.sched_getaffinity(0)) > 1 and shutil.which("taskset") is not None
    where = "h2load pinned to the last core" if pinned else "h2load, not pinned"
    print(f"a. the endpoint, {rounds} rounds of {requests} requests ({where}):")
    h1, h2, lib = ([r for r, _ in rates] for rates in (h1_rates, h2_rates, bare_rates))
    _rates(f"HTTP/1.1 endpoint, {STREAMS} connections", h1)
    _rates(f"h2c endpoint, {STREAMS} streams on one", h2)
    _rates("h2 library alone (for scale)", lib)
    _ratio("h2c endpoint / HTTP/1.1 endpoint", h2, h1, ENDPOINT_GOAL)
    _ratio("(h2 library alone / HTTP/1.1 endpoint)", lib, h1, None)
    _cpu_ratios(h2_rates, h1_rates, "h2c endpoint / HTTP/1.1 endpoint")
    return _median_ratio(h2, h1) >= ENDPOINT_GOAL


# -- b: the client and the endpoint, one request after another ------------------------------


class BareH2Server:
    """The h2 library alone: a thread per connection, answering every stream at its end with
    the response fields our endpoint sends for an empty 200 (the request's id echoed)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    @staticmethod
    def _serve(sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        ids: dict[int, bytes] = {}
        with sock:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        fields = dict(event.headers)
                        ids[event.stream_id] = fields.get(b"deproxy-request-id", b"")
                    elif isinstance(event, h2.events.StreamEnded):
                        fields = [
                            (b":status", b"200"),
                            (b"server", SERVER_NAME.encode()),
                            (b"date", http_date().encode()),
                            (b"content-length", b"0"),
                            (b"deproxy-request-id", ids.pop(event.stream_id, b"")),
                        ]
                        conn.send_headers(event.stream_id, fields, end_stream=True)
                if out := conn.data_to_send():
                    sock.sendall(out)

    def close(self) -> None:
        self._listener.close()


class BareH2Client:
    """The h2 library alone: one connection, one request at a time, sending the fields
    ``make_request`` sends."""

    def __init__(self, url: str) -> None:
        self.authority = url.split("//", 1)[1]
        host, port = self.authority.rsplit(":", 1)
        self._sock = socket.create_connection((host, int(port)))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn = h2.connection.H2Connection()
        self._conn.initiate_connection()
        self._sock.sendall(self._conn.data_to_send())

    def get(self) -> None:
        conn, sock = self._conn, self._sock
        sid = conn.get_next_available_stream_id()
        fields = [
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", self.authority),
            (":path", "/"),
            ("accept", "*/*"),
            ("accept-encoding", "identity"),
            ("user-agent", SERVER_NAME),
            ("deproxy-request-id", new_request_id()),
        ]
        conn.send_headers(sid, fields, end_stream=True)
        sock.sendall(conn.data_to_send())
        while True:
            events = conn.receive_data(sock.recv(65536))
            if out := conn.data_to_send():
                sock.sendall(out)
            if any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for e in events):
                return

    def close(self) -> None:
        self._sock.close()


def _rate(count: int, one: Callable[[], object]) -> tuple[float, float]:
    """Requests per second, and per CPU second of this process (client and server)."""
    start, began = time.perf_counter(), _cpu()
    for _ in range(count):
        one()
    return count / (time.perf_counter() - start), count / (_cpu() - began)


def client_rates(rounds: int, requests: int) -> dict[str, list[tuple[float, float]]]:
    """(requests per second, per CPU second) of each round: make_request over h2c to our
    endpoint ("ours") and a bare h2 client and server pair ("bare"), at default settings."""
    ours_rates: list[tuple[float, float]] = []
    bare_rates: list[tuple[float, float]] = []
    bare_server = BareH2Server()
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(http2="h2c")
        with deproxy.connect(endpoint.url, http2="h2c") as connection:
            bare = BareH2Client(bare_server.url)

            def ours() -> None:
                chain = deproxy.make_request(endpoint.url, connection=connection)
                assert chain.received_response is not None, chain.error

            _rate(200, ours)  # warm up
            _rate(200, bare.get)
            for n in range(rounds):
                runs = [(ours_rates, ours), (bare_rates, bare.get)]
                for rates, one in runs if n % 2 == 0 else runs[::-1]:
                    rates.append(_rate(requests, one))
            bare.close()
    bare_server.close()
    return {"ours": ours_rates, "bare": bare_rates}


def client_target(rounds: int, requests: int) -> bool:
    measured = client_rates(rounds, requests)
    ours_rates, bare_rates = measured["ours"], measured["bare"]
    print(f"b. the client and the endpoint, {rounds} rounds of {requests} requests in turn:")
    ours, bare_ = [r for r, _ in ours_rates], [r for r, _ in bare_rates]
    _rates("h2 library alone, client and server", bare_)
    _rates("make_request over h2c to our endpoint", ours)
    _ratio("ours / h2 library alone", ours, bare_, CLIENT_GOAL)
    _cpu_ratios(ours_rates, bare_rates, "ours / h2 library alone")
    return _median_ratio(ours, bare_) >= CLIENT_GOAL


# -- printing -------------------------------------------------------------------------------


def _rates(label: str, rates: list[float]) -> None:
    low, mid, high = min(rates), statistics.median(rates), max(rates)
    print(f"   {label:<42} {low:8,.0f} / {mid:8,.0f} / {high:8,.0f} req/s (min/median/max)")


def _cpu_ratios(
    ours: list[tuple[float, float]], theirs: list[tuple[float, float]], label: str
) -> None:
    """The same ratio per CPU second: steadier than the wall clock on a busy machine."""
    _ratio(f"{label}, per CPU second", [c for _, c in ours], [c for _, c in theirs], None)


def _median_ratio(ours: list[float], theirs: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(ours, theirs, strict=True))


def _ratio(label: str, ours: list[float], theirs: list[float], goal: float | None) -> None:
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    low, mid, high = min(ratios), statistics.median(ratios), max(ratios)
    verdict = "" if goal is None else f"  goal >= {goal}x: {'MET' if mid >= goal else 'NOT MET'}"
    print(f"   {label:<42} {low:8.2f} / {mid:8.2f} / {high:8.2f} x{verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds per target (>= 5)")
    parser.add_argument("--endpoint-requests", type=int, default=20000)
    parser.add_argument("--client-requests", type=int, default=2000)
    args = parser.parse_args()
    if args.rounds < 5:
        parser.error("--rounds must be at least 5")
    met_a = endpoint_target(args.rounds, args.endpoint_requests)
    met_b = client_target(args.rounds, args.client_requests)
    sys.exit(0 if met_a and met_b else 1)


if __name__ == "__main__":
    main()
