"""WebSocket messages per second through an endpoint (``handlers.websocket()``, echoing),
as a ratio against a bare wsproto echo server measured in the same run. Target: >= 0.8.

    python benchmarks/websocket.py                 # prints the table and the ratio
    python benchmarks/websocket.py --connections 8 --messages 20000

The client runs in a process of its own (so that it takes no GIL from the server under test)
and costs little: raw sockets, one masked frame built once and sent in batches of ``--window``,
the echoes counted by their size. Both servers run one thread per connection and answer each
message with its own write. The machine is shared and noisy, so rounds alternate between the two
servers in shuffled order and the medians are compared (``compare`` returns each round's
rates, for benchmarks/run.py). The endpoint runs at default settings.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)

from pytest_deproxy import Deproxy, handlers
from pytest_deproxy.ws import build_frame

PAYLOAD = b"x" * 64  # a small message: the cost per message, not per byte, is measured


# -- the baseline: a bare wsproto echo server, a thread a connection ------------------------


class BareServer:
    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, name="bare-ws-accept")
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(sock,), name="bare-ws-conn")
            self.threads.append(thread)
            thread.start()

    @staticmethod
    def _serve(sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ws = WSConnection(ConnectionType.SERVER)
        with sock:
            while data := sock.recv(65536):
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, Request):
                        sock.sendall(ws.send(AcceptConnection()))
                    elif isinstance(event, (TextMessage, BytesMessage)):
                        sock.sendall(ws.send(event))
                    elif isinstance(event, Ping):
                        sock.sendall(ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        sock.sendall(ws.send(event.response()))
                        return

    def stop(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept(), which close() does not
        self.listener.close()
        self._accepting.join()
        for thread in self.threads:
            thread.join(5)


# -- the client, in its own process ------------------------------------------------------------


def client(port: int, connections: int, messages: int, window: int) -> float:
    """Open ``connections`` WebSockets, echo ``messages`` on each, ``window`` in flight;
    the messages per second over all of them."""
    frame = build_frame("binary", PAYLOAD)  # masked once: the client's cost stays small
    echo_size = len(build_frame("binary", PAYLOAD, masked=False))
    batch = frame * window
    ready = threading.Barrier(connections + 1)
    failures: list[BaseException] = []

    def talk() -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall(
                f"GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
            assert head.startswith(b"HTTP/1.1 101"), head[:80]
            extra = len(head) - head.index(b"\r\n\r\n") - 4
            ready.wait()
            for _ in range(messages // window):
                sock.sendall(batch)
                wanted = window * echo_size - extra
                while wanted > 0:
                    wanted -= len(sock.recv(65536))
                extra = -wanted
            sock.sendall(build_frame("close", b"\x03\xe8"))
            sock.close()
        except BaseException as exc:
            failures.append(exc)
            ready.abort()

    threads = [threading.Thread(target=talk) for _ in range(connections)]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise failures[0]
    return connections * (messages // window) * window / elapsed


def measure(port: int, connections: int, messages: int, window: int) -> float:
    argv = [sys.executable, __file__, "--client", str(port)]
    argv += ["--connections", str(connections), "--messages", str(messages)]
    argv += ["--window", str(window)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600)
    return float(done.stdout.strip())


def compare(
    connections: int = 4, messages: int = 10000, window: int = 32, rounds: int = 5
) -> dict[str, list[float]]:
    """Messages per second, per round, of ``"endpoint"`` (``handlers.websocket()`` on an
    endpoint at default settings) and ``"bare"`` (the wsproto echo server), in shuffled order
    each round."""
    bare = BareServer()
    deproxy = Deproxy()
    endpoint = deproxy.add_endpoint(default_handler=handlers.websocket())
    ports = {"endpoint": endpoint.port, "bare": bare.port}
    rates: dict[str, list[float]] = {"endpoint": [], "bare": []}
    try:
        for _ in range(rounds):
            for name in random.sample(list(ports), len(ports)):
                rates[name].append(measure(ports[name], connections, messages, window))
    finally:
        deproxy.shutdown()
        bare.stop()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--messages", type=int, default=10000, help="per connection")
    parser.add_argument("--window", type=int, default=32, help="messages in flight")
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    if arguments.client is not None:
        print(client(arguments.client, arguments.connections, arguments.messages, arguments.window))
        return
    rates = compare(arguments.connections, arguments.messages, arguments.window, arguments.rounds)
    ours, theirs = statistics.median(rates["endpoint"]), statistics.median(rates["bare"])
    print(
        f"{arguments.connections} connections x {arguments.messages} messages of "
        f"{len(PAYLOAD)} B, {arguments.window} in flight, {arguments.rounds} rounds (medians):"
    )
    print(f"  endpoint (handlers.websocket): {ours:,.0f} messages/s")
    print(f"  bare wsproto echo server:      {theirs:,.0f} messages/s")
    print(f"ratio {ours / theirs:.2f} (target >= 0.8)")


if __name__ == "__main__":
    main()
