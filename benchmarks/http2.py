"""HTTP/2 benchmarks (a script, not a test): ``python benchmarks/http2.py [requests]``.

1. The h2c endpoint answering 8 concurrent streams on one connection, against the HTTP/1.1
   endpoint answering 8 connections (8 client threads each way); goal: >= 0.5x.
2. make_request over one h2c connection against the h2c endpoint, against a bare h2 client
   and server pair (the h2 library alone, no recording); goal: >= 0.8x.
"""

from __future__ import annotations

import socket
import sys
import threading
import time

import h2.config
import h2.connection
import h2.events

from pytest_deproxy import Deproxy

THREADS = 8


def _threads(count: int, work) -> float:
    start = time.perf_counter()
    threads = [threading.Thread(target=work, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def streams_vs_connections(total: int) -> tuple[float, float]:
    each = total // THREADS
    with Deproxy(keep_chains=100) as deproxy:
        h1 = deproxy.add_endpoint(keep_handlings=100)
        h2c = deproxy.add_endpoint(http2="h2c", keep_handlings=100)
        connections = [deproxy.connect(h1.url) for _ in range(THREADS)]

        def over_h1(n: int) -> None:
            for _ in range(each):
                deproxy.make_request(h1.url, connection=connections[n])

        h1_seconds = _threads(THREADS, over_h1)
        shared = deproxy.connect(h2c.url, http2="h2c")

        def over_h2(_: int) -> None:
            for _ in range(each):
                deproxy.make_request(h2c.url, connection=shared)

        h2_seconds = _threads(THREADS, over_h2)
        for connection in [*connections, shared]:
            connection.close()
    return each * THREADS / h1_seconds, each * THREADS / h2_seconds


class BareH2Server:
    """The h2 library alone: one thread per connection, an empty 200 for every stream."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            sock, _ = self._listener.accept()
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    @staticmethod
    def _serve(sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        while data := sock.recv(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.StreamEnded):
                    conn.send_headers(
                        event.stream_id, [(":status", "200"), ("content-length", "0")], True
                    )
            sock.sendall(conn.data_to_send())


def bare_client(port: int, count: int) -> float:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = h2.connection.H2Connection()
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    start = time.perf_counter()
    for _ in range(count):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(
            sid,
            [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/")],
            end_stream=True,
        )
        sock.sendall(conn.data_to_send())
        done = False
        while not done:
            for event in conn.receive_data(sock.recv(65536)):
                done = done or (isinstance(event, h2.events.StreamEnded) and event.stream_id == sid)
            if out := conn.data_to_send():
                sock.sendall(out)
    seconds = time.perf_counter() - start
    sock.close()
    return count / seconds


def client_vs_bare(count: int) -> tuple[float, float]:
    bare = bare_client(BareH2Server().port, count)
    with Deproxy(keep_chains=100) as deproxy:
        endpoint = deproxy.add_endpoint(http2="h2c", keep_handlings=100)
        with deproxy.connect(endpoint.url, http2="h2c") as connection:
            start = time.perf_counter()
            for _ in range(count):
                deproxy.make_request(endpoint.url, connection=connection)
            ours = count / (time.perf_counter() - start)
    return ours, bare


def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    h1, h2_streams = streams_vs_connections(total)
    print(f"HTTP/1.1 endpoint, {THREADS} connections: {h1:8.0f} req/s")
    print(
        f"h2c endpoint, {THREADS} streams on one:  {h2_streams:8.0f} req/s  ({h2_streams / h1:.2f}x, goal >= 0.5x)"
    )
    ours, bare = client_vs_bare(total)
    print(f"bare h2 client and server:         {bare:8.0f} req/s")
    print(
        f"deproxy h2 client and endpoint:    {ours:8.0f} req/s  ({ours / bare:.2f}x, goal >= 0.8x)"
    )


if __name__ == "__main__":
    main()
