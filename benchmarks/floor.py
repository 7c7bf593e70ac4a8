"""The floor make_request is measured against: a bare h11 server and a bare h11 client, doing
the same small exchange with nothing else (no recording, no routing, no defaults).

Rule kept here: each side does only what h11 needs. The server answers every request with an
empty 200 from one selector thread, the way the endpoint serves ordinary connections (a
thread per connection would charge the floor a thread start on every fresh connection, which
the endpoint does not pay: the first harness's fresh-connection ratio of ~3 came from that).
"""

from __future__ import annotations

import selectors
import socket
import threading

import h11

RESPONSE = h11.Response(status_code=200, headers=[("Content-Length", "0")])


class BareServer:
    """An h11 server on one selector thread, answering every request with an empty 200."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="bare-h11", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ, None)
        while not self._stopping.is_set():
            for key, _ in selector.select(0.1):
                if key.data is None:
                    while True:
                        try:
                            sock, _ = self._listener.accept()
                        except BlockingIOError:
                            break
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        selector.register(sock, selectors.EVENT_READ, h11.Connection(h11.SERVER))
                    continue
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if not self._answer(sock, key.data):
                    selector.unregister(sock)
                    sock.close()
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        selector.close()

    @staticmethod
    def _answer(sock: socket.socket, conn: h11.Connection) -> bool:
        """Read what arrived and answer what is complete; False once the connection is done."""
        try:
            data = sock.recv(65536)
        except OSError:  # wrk resets its connections when it stops
            return False
        conn.receive_data(data)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                return bool(data)
            if isinstance(event, h11.EndOfMessage):
                sock.sendall(conn.send(RESPONSE) + conn.send(h11.EndOfMessage()))
                if conn.our_state is h11.MUST_CLOSE:
                    return False
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return False

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._listener.close()


class BareClient:
    """One keep-alive h11 client connection."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn = h11.Connection(h11.CLIENT)
        self._host = f"127.0.0.1:{port}"

    def get(self) -> int:
        conn = self._conn
        request = h11.Request(method="GET", target="/", headers=[("Host", self._host)])
        self._sock.sendall(conn.send(request) + conn.send(h11.EndOfMessage()))
        status = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(self._sock.recv(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.EndOfMessage):
                conn.start_next_cycle()
                return status

    def close(self) -> None:
        self._sock.close()


def main() -> int:
    """Stand-alone: the floor's round trips per second, persistent and fresh."""
    import time

    server = BareServer()
    client = BareClient(server.port)
    started = time.perf_counter()
    for _ in range(5000):
        client.get()
    persistent = 5000 / (time.perf_counter() - started)
    client.close()
    started = time.perf_counter()
    for _ in range(1000):
        one = BareClient(server.port)
        one.get()
        one.close()
    fresh = 1000 / (time.perf_counter() - started)
    server.close()
    print(f"bare h11 floor: {persistent:,.0f} req/s persistent, {fresh:,.0f} req/s fresh")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
