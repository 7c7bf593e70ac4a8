"""HTTP/1.x framing over a :class:`~pytest_deproxy.net.Stream`, with no sockets of its own:
the serializers both sides use, and the client's reading of responses.

Rule kept here: this is the only module that imports h11. Responses are *parsed* by h11,
which is strict and well tested (a client should refuse a malformed answer); the ordinary
ones are read by :mod:`pytest_deproxy.heads` instead, in a quarter of the time and exactly as
h11 would read them. (Endpoints read requests leniently, without h11:
:mod:`pytest_deproxy.request_reader`.) A response h11 accepted keeps its header fields as
its head's bytes spelled them (:func:`pytest_deproxy.framing.head_fields`): h11 merges
duplicates and lower-cases some values, and the record must show what came. Messages are
*written* by the small serializers below, which send exactly what they are given, because a
proxy tester must be able to send what a strict library would refuse (no ``Host``, both
``Content-Length`` and chunked, odd targets). A ``101 Switching Protocols`` ends HTTP/1 on
its connection: what follows it is left in ``pending``.
Every h11 error leaves as a :class:`~pytest_deproxy.errors.ProtocolError`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Protocol

import h11

from . import framing, heads
from .errors import NetworkError, ProtocolError
from .models import Headers, Request, Response

CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"
MAX_HEADER_BYTES = 64 * 1024
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class ByteStream(Protocol):
    """What the framing layer needs of a connection (a ``net.Stream``, or bytes in a test)."""

    def read(self, max_bytes: int = ...) -> bytes: ...

    def write(self, data: bytes) -> None: ...


class MessageError(ProtocolError):
    """A peer's message could not be parsed; ``status_hint`` is the status to answer with."""

    def __init__(self, message: str, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint


class PeerClosed(NetworkError):
    """The peer closed the connection before a whole message arrived.

    ``partial`` is the request as far as it came (head and the body so far), when the head
    had arrived.
    """

    partial: Request | None = None


def _text(value: bytes | bytearray) -> str:
    return bytes(value).decode("iso-8859-1")


def _wire(value: str) -> bytes:
    try:
        return value.encode("iso-8859-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def _head(start_line: str, headers: Headers) -> bytes:
    lines = [start_line, *(f"{name}: {value}" for name, value in headers.items()), "", ""]
    try:
        return "\r\n".join(lines).encode("iso-8859-1")
    except UnicodeEncodeError:  # rare: text beyond Latin-1 goes out as UTF-8, piece by piece
        pieces = [_wire(start_line), b"\r\n"]
        for name, value in headers.items():
            pieces += (_wire(name), b": ", _wire(value), b"\r\n")
        return b"".join(pieces) + b"\r\n"


def chunk(data: bytes) -> bytes:
    """One chunk of chunked transfer-coding (empty data would end the body, so it gives b"")."""
    if not data:
        return b""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


def last_chunk(trailers: Headers | None = None) -> bytes:
    """The last chunk, with ``trailers`` as its trailer section (names and order as given)."""
    return _head("0", trailers) if trailers else LAST_CHUNK


def frame_body(body: bytes, *, chunked: bool, trailers: Headers | None = None) -> bytes:
    """``body`` as framed on the wire; ``trailers`` go out only with chunked framing (the
    only HTTP/1.1 framing that has a place for them)."""
    return chunk(body) + last_chunk(trailers) if chunked else body


def serialize_request(request: Request, *, chunked: bool = False) -> bytes:
    """The request exactly as given: start line, headers in order, body (chunked if asked,
    then its trailers)."""
    head = _head(f"{request.method} {request.path} HTTP/{request.http_version}", request.headers)
    return head + frame_body(
        request.raw_body,
        chunked=chunked,
        trailers=request.trailers if request.has_trailers else None,
    )


def parse_sent_request(data: bytes) -> Request:
    """What raw bytes a client sent look like as a Request, as far as they can be read.

    For the record only: nothing here refuses odd input; unreadable parts are kept as text.
    """
    head, _, body = data.partition(b"\r\n\r\n")
    lines = _text(head).split("\r\n")
    parts = lines[0].split(" ")
    method = parts[0] or "?"
    target = parts[1] if len(parts) > 1 and parts[1] else "?"
    version = parts[2].removeprefix("HTTP/") if len(parts) > 2 else "1.1"
    headers = Headers()
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.add(name.strip(), value.strip())
    return Request(method, target, headers, body, version)


def response_has_body(code: int, request_method: str) -> bool:
    """RFC 9110: no body for HEAD, 1xx, 204 and 304, nor for a 2xx answer to CONNECT."""
    if request_method == "HEAD" or code < 200 or code in (204, 304):
        return False
    return not (request_method == "CONNECT" and 200 <= code < 300)


def serialize_response_head(response: Response) -> bytes:
    line = f"HTTP/{response.http_version} {response.code} {response.message}".rstrip(" ")
    if not response.message:
        line += " "  # the reason phrase may be empty, but the space before it may not
    return _head(line, response.headers)


def serialize_response(response: Response, *, chunked: bool, send_body: bool) -> bytes:
    head = serialize_response_head(response)
    if not send_body:
        return head
    return head + frame_body(response.raw_body, chunked=chunked)


def request_keeps_alive(request: Request) -> bool:
    """Whether the client asked to keep the connection open after this exchange."""
    if request.headers.has_token("Connection", "close"):
        return False
    if request.http_version == "1.0":
        return request.headers.has_token("Connection", "keep-alive")
    return True


def response_keeps_alive(response: Response, request: Request) -> bool:
    """Whether the connection may carry another request after this response."""
    if not request_keeps_alive(request) or response.headers.has_token("Connection", "close"):
        return False
    if response.http_version == "1.0" and not response.headers.has_token(
        "Connection", "keep-alive"
    ):
        return False
    if not response_has_body(int(response.code), request.method):
        return True
    # A body that no length delimits ends only when the connection closes.
    return "Content-Length" in response.headers or response.headers.has_token(
        "Transfer-Encoding", "chunked"
    )


_END = h11.EndOfMessage()


@functools.lru_cache(maxsize=64)
def _primer(method: str) -> h11.Request:
    """The stand-in request that tells h11 how to frame a response (built once per method).

    It proposes an upgrade, so that h11 takes a ``101 Switching Protocols`` for what it is
    (whether the real request asked for one is for the test to judge, not the reader)."""
    method = method if _TOKEN.match(method) else "GET"
    return h11.Request(
        method=method, target="/", headers=[("Host", "deproxy"), ("Upgrade", "deproxy")]
    )


class MessageReader:
    """Reads successive messages from one connection, keeping bytes that arrive early
    (pipelined requests, the start of a tunnel) for the next read."""

    def __init__(self, stream: ByteStream, *, max_header_bytes: int = MAX_HEADER_BYTES) -> None:
        self.stream = stream
        self.max_header_bytes = max_header_bytes
        self.pending = b""
        self.received_any = False
        self._eof = False

    def _take_pending(self, conn: h11.Connection) -> None:
        # Never hand h11 an empty buffer: receive_data(b"") means end of file to it.
        self.received_any = bool(self.pending)
        if self.pending:
            conn.receive_data(self.pending)
            self.pending = b""

    def _events(self, conn: h11.Connection, what: str) -> Iterator[object]:
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if self._eof:
                    where = (
                        f"in the middle of the {what}" if self.received_any else "without answering"
                    )
                    raise PeerClosed(f"the peer closed the connection {where}") from exc
                raise MessageError(f"malformed {what}: {exc}", exc.error_status_hint) from exc
            if event is h11.NEED_DATA:
                data = self.stream.read()
                self.received_any = self.received_any or bool(data)
                self._eof = not data
                conn.receive_data(data)
                continue
            yield event

    def _read_body(
        self,
        conn: h11.Connection,
        events: Iterator[object],
        what: str,
        body: bytearray,
    ) -> tuple[bytes, Headers | None]:
        """The body, read to its end, and the trailer fields after it (names as spelled; None
        when none came)."""
        trailers = None
        for event in events:
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                fields = event.headers.raw_items()
                if fields:
                    trailers = Headers.from_wire([(_text(n), _text(v)) for n, v in fields])
                break
            elif event is h11.PAUSED:
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise PeerClosed(f"the peer closed the connection in the middle of the {what}")
        self.pending = bytes(conn.trailing_data[0])
        return bytes(body), trailers

    def read_response(
        self, request_method: str = "GET", interim: list[Response] | None = None
    ) -> Response:
        """The next final response; the 1xx informational responses before it are appended to
        ``interim`` (when given), in order. A ``101 Switching Protocols`` is final: the bytes
        after its head stay in ``pending`` for whoever takes the connection over."""
        while True:
            response = self.read_any_response(request_method)
            if not is_interim(response):
                return response
            if interim is not None:
                interim.append(response)

    def read_any_response(self, request_method: str = "GET") -> Response:
        """The next response, an interim (1xx) one or the final one.

        Its headers are the head's own fields as received (names as spelled, order and
        duplicates kept); h11 still judges that the message is well formed and framed.
        """
        self._read_whole_head()
        head = heads.read_response_head(self.pending, self.max_header_bytes, request_method)
        if head is None:
            return self._read_response_with_h11(request_method)
        version, status, reason = head.start
        headers = Headers.from_wire(head.items, head.keys)
        body = self._take_body(head, "response")
        return Response.received(int(status), reason, headers, body, version)

    def _read_more(self) -> bytes:
        return self.stream.read()

    def _take_body(self, head: heads.Head, what: str) -> bytes:
        """The body a simple head frames, read to its end; what follows stays pending."""
        end = head.size + head.content_length
        if len(self.pending) < end:
            buffer = bytearray(self.pending)
            while len(buffer) < end:
                data = self._read_more()
                if not data:
                    self.pending = bytes(buffer)
                    raise PeerClosed(f"the peer closed the connection in the middle of the {what}")
                buffer += data
            # One copy of the body, not one of the whole buffer and another of its slice.
            with memoryview(buffer) as view:
                body, self.pending = bytes(view[head.size : end]), bytes(view[end:])
            return body
        body, self.pending = self.pending[head.size : end], self.pending[end:]
        return body

    def _read_whole_head(self) -> None:
        """Read until ``pending`` holds a whole head, the peer closes, or the head outgrows
        the limit (h11 then says what is wrong): so the head's bytes are at hand."""
        if not self.pending:
            self.pending = self._read_more()
            if not self.pending:
                raise PeerClosed("the peer closed the connection without answering")
        while (
            b"\r\n\r\n" not in self.pending
            and framing.head_end(self.pending) is None
            and len(self.pending) <= self.max_header_bytes
        ):
            data = self._read_more()
            if not data:
                return
            self.pending += data

    def _read_response_with_h11(self, request_method: str) -> Response:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=self.max_header_bytes)
        # h11 frames a response by the request it answers; tell it the method, send nothing.
        conn.send(_primer(request_method))
        conn.send(_END)
        fed = self.pending
        self._take_pending(conn)
        events = self._events(conn, "response")
        event = next(events)
        if isinstance(event, h11.ConnectionClosed):
            raise PeerClosed("the peer closed the connection without answering")
        if not isinstance(event, (h11.InformationalResponse, h11.Response)):  # pragma: no cover
            raise MessageError(f"expected a response, got {event!r}")
        rest = bytes(conn.trailing_data[0])
        headers = _received_fields(fed[: len(fed) - len(rest)])
        status, version = event.status_code, _text(event.http_version)
        if isinstance(event, h11.InformationalResponse):  # no body; 101: another protocol next
            self.pending = rest
            return Response.received(status, _text(event.reason), headers, b"", version)
        body, trailers = self._read_body(conn, events, "response body", bytearray())
        response = Response.received(status, _text(event.reason), headers, body, version)
        if trailers is not None:
            response.trailers = trailers
        return response


def is_interim(response: Response) -> bool:
    """Whether ``response`` is an interim (1xx) one that a final response follows; ``101
    Switching Protocols`` is not: it is the last HTTP/1 message on its connection."""
    return response.code.startswith("1") and response.code != "101"


def _received_fields(head: bytes) -> Headers:
    """The fields of a head h11 accepted, exactly as they came."""
    _, fields = framing.head_fields(head)
    return Headers.from_wire(fields)
