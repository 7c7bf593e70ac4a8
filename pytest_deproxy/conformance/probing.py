"""The client side of checks that need more than one answer per call: every byte until the
proxy closes, or an ambiguous request followed, on the same connection, by a sentinel.

Rules kept here: no verdict waits on a clock. A proxy handles the requests of one client
connection in order, so once the sentinel's own answer is back, anything the proxy made of
bytes left over after the first request (a hidden request forwarded as a pipelined one) has
already reached the backend, and its answer, if any, came to this client before the
sentinel's: that answer is the client-side proof. A proxy that closes after its answer (as it
must after a request framed by both Content-Length and chunked) is done with the connection
when it closes. The timeout only bounds a proxy that does neither (an ``error`` then, said).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from ..errors import DeproxyError, DeproxyTimeout
from ..models import TRACKING_HEADER, Response
from ..wire import MessageReader, parse_sent_request, response_keeps_alive


class _Socket:
    """A connected socket as :class:`MessageReader` reads it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def read(self, max_bytes: int = 65536) -> bytes:
        try:
            return self.sock.recv(max_bytes)
        except TimeoutError as exc:
            raise DeproxyTimeout("no answer in time") from exc
        except OSError as exc:
            raise DeproxyError(f"{type(exc).__name__}: {exc}") from exc

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)


class _Bytes:
    """Bytes already received, read as a stream."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, max_bytes: int = 65536) -> bytes:
        data, self._data = self._data, b""
        return data

    def write(self, data: bytes) -> None:
        raise DeproxyError("these bytes are read only")


def read_to_close(address: tuple[str, int], data: bytes, timeout: float) -> tuple[bytes, str]:
    """Send ``data`` and return every byte received until the peer closed, and what went
    wrong ("" when the peer closed)."""
    received = b""
    try:
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.sendall(data)
            while chunk := sock.recv(65536):
                received += chunk
    except OSError as exc:
        return received, f"{type(exc).__name__} after {len(received)} bytes: {exc}"
    return received, ""


def parse_response(received: bytes, method: str, interim: list[Response]) -> Response:
    """The first final response in ``received`` (raises ``DeproxyError`` when there is none)."""
    return MessageReader(_Bytes(received)).read_response(method, interim)


@dataclass
class Probe:
    """What the client got: the ``first`` answer (``None``: none, ``error`` says why), its
    ``interim`` 1xx, and ``extra``: answers that came after it and before the sentinel's."""

    first: Response | None = None
    interim: list[Response] = field(default_factory=list)
    extra: list[Response] = field(default_factory=list)
    error: DeproxyError | None = None


def sentinel(host: bytes, sentinel_id: str) -> bytes:
    """An ordinary request, its path and id its own (so no cache answers it for another)."""
    return b"".join((
        b"GET /conformance/sentinel/%s HTTP/1.1\r\n" % sentinel_id.encode(),
        b"Host: %s\r\n%s: %s\r\n" % (host, TRACKING_HEADER.encode(), sentinel_id.encode()),
        b"Connection: close\r\n\r\n",
    ))  # fmt: skip


def probe(
    address: tuple[str, int], data: bytes, host: bytes, sentinel_id: str, timeout: float
) -> Probe:
    """Send ``data``, read its answer, then (unless the proxy said it closes) a sentinel
    request, reading every answer until the sentinel's or the proxy's close."""
    found = Probe()
    method = parse_sent_request(data).method
    try:
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(data)
            reader = MessageReader(_Socket(sock))
            found.first = reader.read_response(method, found.interim)
            if not response_keeps_alive(found.first, parse_sent_request(data)):
                return found
            sock.sendall(sentinel(host, sentinel_id))
            while True:
                answer = reader.read_response("GET")
                if answer.headers.get(TRACKING_HEADER) == sentinel_id:
                    return found
                found.extra.append(answer)
    except DeproxyTimeout as exc:
        found.error = exc
    except DeproxyError as exc:
        if found.first is None:  # after the first answer, a close is the proxy's choice
            found.error = exc
    except OSError as exc:
        found.error = DeproxyError(f"{type(exc).__name__}: {exc}")
    return found
