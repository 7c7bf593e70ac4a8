"""A small reverse proxy, written for the examples: the system under test.

It forwards every request to one upstream server, adds ``X-Forwarded-For`` and ``Via``, drops
hop-by-hop headers, keeps a pool of persistent upstream connections, and can ask an auth
service first (``GET <auth_url>`` with the client's ``Authorization``; anything but 2xx is
answered 403 without forwarding). Only the standard library is used, so it is a fair
stand-in for "somebody else's proxy".

Run it on its own::

    python examples/example_proxy.py --port 8080 --upstream http://127.0.0.1:9000
"""

from __future__ import annotations

import argparse
import http.client
import queue
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}
VIA = "1.1 example-proxy"


class ConnectionPool:
    """Idle persistent connections to one server, reused across client requests."""

    def __init__(self, url: str, size: int = 8) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self._idle: queue.LifoQueue[http.client.HTTPConnection] = queue.LifoQueue(size)

    def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[http.client.HTTPResponse, bytes, http.client.HTTPConnection]:
        try:
            connection = self._idle.get_nowait()
        except queue.Empty:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            return self._exchange(connection, method, path, body, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # An idle connection the server had closed: retry once on a fresh one.
            connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
            return self._exchange(connection, method, path, body, headers)

    @staticmethod
    def _exchange(
        connection: http.client.HTTPConnection,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
    ) -> tuple[http.client.HTTPResponse, bytes, http.client.HTTPConnection]:
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response, response.read(), connection
        except BaseException:
            connection.close()  # a failed connection is never pooled again
            raise

    def release(self, connection: http.client.HTTPConnection, reusable: bool) -> None:
        if not reusable:
            connection.close()
            return
        try:
            self._idle.put_nowait(connection)
        except queue.Full:
            connection.close()

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().close()


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ExampleProxy

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def _forward(self) -> None:
        proxy = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if proxy.auth is not None and not self._authorized(proxy.auth):
            self._answer(403, [("Content-Type", "text/plain")], b"forbidden by the auth service\n")
            return
        headers = {
            name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP
        }
        headers["Host"] = f"{proxy.upstream.host}:{proxy.upstream.port}"
        forwarded_for = self.headers.get("X-Forwarded-For")
        client = self.client_address[0]
        headers["X-Forwarded-For"] = f"{forwarded_for}, {client}" if forwarded_for else client
        headers["Via"] = f"{self.headers['Via']}, {VIA}" if self.headers.get("Via") else VIA
        try:
            response, content, connection = proxy.upstream.request(
                self.command, self.path, body, headers
            )
        except (OSError, http.client.HTTPException) as error:  # unreachable, or a broken answer
            self._answer(
                502, [("Content-Type", "text/plain")], f"upstream failed: {error}\n".encode()
            )
            return
        proxy.upstream.release(connection, reusable=not response.will_close)
        answer = [(n, v) for n, v in response.getheaders() if n.lower() not in HOP_BY_HOP]
        answer = [(n, v) for n, v in answer if n.lower() != "content-length"]
        answer.append(("Via", VIA))
        self._answer(response.status, answer, content, reason=response.reason)

    def _authorized(self, auth: ConnectionPool) -> bool:
        # The auth call is the proxy's own business: it carries no tracking header.
        headers = {"Authorization": self.headers.get("Authorization", "")}
        try:
            response, _, connection = auth.request("GET", "/check", None, headers)
        except (OSError, http.client.HTTPException):
            return False
        auth.release(connection, reusable=not response.will_close)
        return 200 <= response.status < 300

    def _answer(
        self, status: int, headers: list[tuple[str, str]], body: bytes, reason: str | None = None
    ) -> None:
        self.send_response(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _forward


class ExampleProxy(ThreadingHTTPServer):
    """The proxy as an object: ``start()`` serves in a thread, ``shutdown()`` stops it."""

    daemon_threads = True

    def __init__(self, upstream: str, *, auth: str | None = None, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), ProxyHandler)
        self.upstream = ConnectionPool(upstream)
        self.auth = ConnectionPool(auth) if auth else None
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name="example-proxy", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client left before its answer was written: nobody to tell
        super().handle_error(request, client_address)

    def start(self) -> ExampleProxy:
        self._thread.start()
        return self

    def shutdown(self) -> None:
        super().shutdown()
        self.server_close()
        self._thread.join(5)
        self.upstream.close()
        if self.auth is not None:
            self.auth.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--upstream", required=True, help="http://host:port of the server")
    parser.add_argument("--auth", help="http://host:port of an auth service (optional)")
    options = parser.parse_args()
    proxy = ExampleProxy(options.upstream, auth=options.auth, port=options.port)
    print(f"example proxy on {proxy.url} -> {options.upstream}", flush=True)
    try:
        proxy.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.server_close()


if __name__ == "__main__":
    main()
