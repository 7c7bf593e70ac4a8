"""The server's own CPU per request on the poll fast path, against the bare selector floor.

    python benchmarks/endpoint_cost.py                  # 5 rounds, 10 connections
    python benchmarks/endpoint_cost.py --rounds 7 --connections 100 --requests 20000

Rule kept here: the server (an endpoint with ``handlers.simple`` at default settings, garbage
collector on, record caps at their defaults; or ``floor_selector.py``) runs in this process,
and a raw-socket client that pipelines ``--depth`` requests on each of ``--connections``
keep-alive connections runs in another process. Each round first sends ``--warmup``
requests (so the endpoint's record is at its cap, as in a long run), then measures the
process's CPU (``time.process_time``, user + system) over ``--requests`` requests: that is the server's,
since this process does nothing else meanwhile. Rounds alternate endpoint and floor; printed
are microseconds per request (min / median / max) and the floor's share of the endpoint's.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"


def client(port: int, connections: int, total: int, depth: int) -> None:
    """Send ``total`` requests over ``connections`` connections, ``depth`` in flight on each;
    return once every answer (bodiless: counted by their blank lines) has arrived."""
    selector = selectors.DefaultSelector()
    left = {}
    per = total // connections
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        left[sock] = [per, 0, b""]  # to send, in flight, partial tail
        selector.register(sock, selectors.EVENT_READ)
    for sock, state in left.items():
        batch = min(depth, state[0])
        sock.sendall(REQUEST * batch)
        state[0] -= batch
        state[1] += batch
    open_ = connections
    while open_:
        for key, _ in selector.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            state = left[sock]
            data = state[2] + sock.recv(262144)
            answered = data.count(b"\r\n\r\n")
            state[2] = data[data.rfind(b"\r\n\r\n") + 4 :] if answered else data
            state[1] -= answered
            if state[1] == 0:
                if state[0] == 0:
                    selector.unregister(sock)
                    sock.close()
                    open_ -= 1
                    continue
                batch = min(depth, state[0])
                sock.sendall(REQUEST * batch)
                state[0] -= batch
                state[1] += batch


def drive(port: int, connections: int, total: int, depth: int) -> None:
    subprocess.run(
        [sys.executable, __file__, "--client", str(port), str(connections), str(total), str(depth)],
        check=True,
    )


def cpu() -> float:
    return time.process_time()  # user + system of the whole process, finer than os.times


def measure(kind: str, options: argparse.Namespace) -> float:
    """Microseconds of this process's CPU per request, one round."""
    if kind == "floor":
        import floor_selector

        (_, port), stop = floor_selector.start_floor_selector()
    else:
        from pytest_deproxy import Deproxy, handlers

        deproxy = Deproxy()
        endpoint = deproxy.add_endpoint(default_handler=handlers.simple)
        port, stop = endpoint.port, deproxy.shutdown
    try:
        if options.warmup:
            drive(port, options.connections, options.warmup, options.depth)
        before = cpu()
        drive(port, options.connections, options.requests, options.depth)
        spent = cpu() - before
    finally:
        stop()
    return spent / options.requests * 1e6


def main() -> int:
    if sys.argv[1:2] == ["--client"]:
        port, connections, total, depth = map(int, sys.argv[2:6])
        client(port, connections, total, depth)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--requests", type=int, default=30000)
    parser.add_argument("--warmup", type=int, default=12000)
    parser.add_argument("--depth", type=int, default=8)
    options = parser.parse_args()
    results: dict[str, list[float]] = {"endpoint": [], "floor": []}
    for _ in range(options.rounds):
        for kind in results:
            results[kind].append(measure(kind, options))
    for kind, values in results.items():
        print(
            f"{kind:9} us/request  min {min(values):6.2f}  median {statistics.median(values):6.2f}"
            f"  max {max(values):6.2f}"
        )
    ratios = [f / e for f, e in zip(results["floor"], results["endpoint"], strict=True)]
    print(
        f"floor/endpoint (per CPU s, endpoint's share of the floor's rate)  min {min(ratios):.2f}"
        f"  median {statistics.median(ratios):.2f}  max {max(ratios):.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
