"""The floor the benchmarks measure against: a bare h11 server thread and a bare h11 client,
doing the same small exchange with nothing else (no recording, no routing, no defaults)."""

from __future__ import annotations

import socket
import threading

import h11

RESPONSE = h11.Response(status_code=200, headers=[("Content-Length", "0")])


class BareServer:
    """A thread-per-connection h11 server answering every request with an empty 200."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

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
        conn = h11.Connection(h11.SERVER)
        with sock:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    try:
                        data = sock.recv(65536)
                    except ConnectionResetError:  # wrk resets its connections when it stops
                        return
                    conn.receive_data(data)
                    if not data and conn.their_state is h11.IDLE:
                        return
                    continue
                if isinstance(event, h11.EndOfMessage):
                    sock.sendall(conn.send(RESPONSE) + conn.send(h11.EndOfMessage()))
                    if conn.our_state is h11.MUST_CLOSE:
                        return
                    conn.start_next_cycle()
                elif isinstance(event, (h11.ConnectionClosed,)) or event is h11.PAUSED:
                    return

    def close(self) -> None:
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
