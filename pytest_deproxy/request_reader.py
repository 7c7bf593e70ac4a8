"""Reading requests off a connection as an endpoint that records: head first, then body, with
the bytes exactly as they came.

Rules kept here: no socket of its own (it reads a :class:`~pytest_deproxy.wire.ByteStream`).
An ordinary head is read by :mod:`~pytest_deproxy.heads` (the fast path; on the poll thread
the commonest heads are only glanced at, their headers read when someone reads them: see
``models.Request.unread``); anything else by
:mod:`~pytest_deproxy.framing`, which takes whatever can be framed and refuses only what cannot.
The head is handed over before the body is read, so that the endpoint can put the request on
the record as it arrives. Every refusal, and every request cut short, comes with the bytes
that arrived and the request as far as it can be read, so that it can be recorded too.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from . import framing, heads
from .errors import ConnectionReset
from .models import Headers, Request
from .wire import MAX_HEADER_BYTES, ByteStream, MessageError, PeerClosed, parse_sent_request


class RequestRefused(MessageError):
    """A request the endpoint answers itself with ``status_hint`` (400, 413, 431, 501, 505),
    then closes. ``partial`` is the request as far as it could be read, ``raw`` its bytes."""

    def __init__(self, message: str, status: int, partial: Request, raw: bytes) -> None:
        super().__init__(message, status)
        self.partial, self.raw = partial, raw


class BodyTooLarge(RequestRefused):
    """A request body over the reader's ``max_body_size``: answered 413 unread."""

    def __init__(self, message: str, partial: Request, raw: bytes) -> None:
        super().__init__(message, 413, partial, raw)


class CutShort(PeerClosed):
    """The client closed (or reset) the connection in the middle of a request: ``partial``
    is the request as far as it came, ``raw`` its bytes, ``reset`` whether it was a RST."""

    partial: Request

    def __init__(self, message: str, partial: Request, raw: bytes, *, reset: bool) -> None:
        super().__init__(message)
        self.partial, self.raw, self.reset = partial, raw, reset


@dataclass(slots=True)
class Arrival:
    """A request head as it arrived: the request (its body not read yet), the head's bytes,
    and how the body is framed. ``must_close``: the framing was dubious (Content-Length
    beside chunked), so the connection closes after the answer."""

    request: Request
    raw_head: bytes
    content_length: int = 0
    chunked: bool = False
    must_close: bool = False
    at: float = 0.0

    @property
    def expects_continue(self) -> bool:
        """Whether the client waits for ``100 Continue`` before it sends the body."""
        expect = self.request.headers.get("Expect")
        has_body = self.chunked or self.content_length > 0
        return (
            has_body
            and self.request.http_version == "1.1"
            and expect is not None
            and expect.strip().lower() == "100-continue"
        )


@dataclass(slots=True)
class Body:
    """A request body as read: the payload (chunked framing removed), the bytes as framed on
    the wire when they differ (``None``: the same bytes), and the trailer fields that followed
    a chunked body, as received."""

    payload: bytes = b""
    framed: bytes | None = None
    trailers: list[tuple[str, str]] | None = None


_time = time.time
_glance = heads.glance_request_head
_unread = Request.unread  # (bound once, not at every request)


class RequestReader:
    """Reads successive requests from one connection, keeping bytes that arrive early
    (pipelined requests) for the next read. ``max_body_size`` (None: no limit) bounds a body."""

    def __init__(
        self,
        stream: ByteStream,
        *,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_body_size: int | None = None,
    ) -> None:
        self.stream = stream
        self.max_header_bytes = max_header_bytes
        self.max_body_size = max_body_size
        self._body_limit: float = math.inf if max_body_size is None else max_body_size
        self.pending = b""
        # ``pending`` and its head as take_alone found it (None: nothing found yet).
        self._glanced: tuple[bytes, heads.Glance | heads.Head | None] | None = None
        # When the request being read last made progress (None between requests): a watchdog
        # reads it to stop slowloris clients without a timeout syscall on every read.
        self.last_progress: float | None = None

    # -- the poll thread's path: a request already here, whole and ordinary -----------------

    def glance(self, data: bytes) -> heads.Glance | heads.Head | None:
        """What the head at the start of ``data`` is, as far as a glance tells: a
        :data:`heads.Glance` (a plain tuple, its last item the head's size) where its fields
        need no reading, else its :class:`heads.Head`, or ``None`` (not whole, or h11's to
        read)."""
        return _glance(data, self.max_header_bytes)

    def take_alone(
        self, data: bytes, head: heads.Glance | heads.Head | None
    ) -> tuple[Request, bytes, float] | None:
        """:meth:`read_buffered` of ``data`` read with nothing pending, if it is one whole,
        ordinary request and nothing more (the commonest read: a client that waits for each
        answer); else ``None``, with ``data`` pending (its head, as far as it was looked at,
        kept for :meth:`read_buffered`). ``head``: what :meth:`glance` saw of ``data``."""
        if head is not None and not isinstance(head, heads.Head):  # a Glance: see read_buffered
            method, target, version, size = head
            if size == len(data):
                return _unread(method, target, data, version), data, _time()
        self.pending, self._glanced = data, (data, head)
        if isinstance(head, heads.Head) and head.size + head.content_length == len(data):
            return self.read_buffered()
        return None

    def read_buffered(self) -> tuple[Request, bytes, float] | None:
        """The next request (its body in), its head's bytes and when it arrived (a plain
        tuple: :func:`handed_over` makes it an :class:`Arrival`), if they are already
        here, whole and ordinary; else ``None``, with nothing taken. Never reads the
        stream: this is the path every request of a load test takes."""
        pending = self.pending
        glanced, self._glanced = self._glanced, None
        if glanced is not None and glanced[0] is pending:  # take_alone looked at it already
            head = glanced[1]
        else:
            head = _glance(pending, self.max_header_bytes)
        if head is None:
            return None
        if not isinstance(head, heads.Head):  # a Glance: bodiless, its headers read when wanted
            method, target, version, size = head
            raw_head = pending[:size]
            self.pending = pending[size:]
            return _unread(method, target, raw_head, version), raw_head, _time()
        (method, target, version), items, keys, length, size = head
        end = size + length
        if length:
            if len(pending) < end or length > self._body_limit:
                return None
            body = pending[size:end]
        else:
            body = b""
        request = Request.from_head(method, target, items, keys, body, version)
        self.pending = pending[end:]
        return request, pending[:size], _time()

    # -- a connection's own thread: head, then body ----------------------------------------

    def read_head(self) -> Arrival | None:
        """The next request's head, or ``None`` when the client closed cleanly between
        requests. Raises :class:`RequestRefused` or :class:`CutShort`."""
        self.last_progress = time.monotonic()
        if not self.pending:
            self.pending = self._read_more()  # a reset here ends the connection between requests
            if not self.pending:
                self.last_progress = None
                return None
        while True:
            head = heads.read_request_head(self.pending, self.max_header_bytes)
            if head is not None:
                return self._fast_arrival(head)
            arrival = self._lenient_arrival()
            if arrival is not None:
                return arrival
            try:
                data = self._read_more()
            except ConnectionReset as reset:
                raise self._head_cut_short(reset=True) from reset
            if not data:
                raise self._head_cut_short(reset=False)
            self.pending += data

    def read_body(self, arrival: Arrival) -> Body:
        """The body ``arrival`` frames, read to its end; what follows stays pending.

        Raises :class:`BodyTooLarge` (before reading any of it when its length is declared),
        :class:`RequestRefused` (an invalid chunk) or :class:`CutShort`.
        """
        try:
            if arrival.chunked:
                return self._read_chunked(arrival)
            return Body(self._read_length(arrival))
        finally:
            self.last_progress = None

    def too_large(self, arrival: Arrival) -> BodyTooLarge | None:
        """The refusal for a declared length over the limit, to give before ``100 Continue``."""
        if arrival.content_length <= self._body_limit:
            return None
        return BodyTooLarge(
            self._over_limit(f"of {arrival.content_length} bytes (Content-Length)"),
            arrival.request,
            arrival.raw_head,
        )

    # -- the parts ---------------------------------------------------------------------------

    def _fast_arrival(self, head: heads.Head) -> Arrival:
        method, target, version = head.start
        request = Request.received(
            method, target, Headers.from_wire(head.items, head.keys), b"", version
        )
        raw_head, self.pending = self.pending[: head.size], self.pending[head.size :]
        return Arrival(request, raw_head, head.content_length, at=time.time())

    def _lenient_arrival(self) -> Arrival | None:
        data = self.pending
        try:
            head = framing.read_request_head(data, self.max_header_bytes)
        except framing.Unframeable as refused:
            partial = parse_sent_request(data)
            raise RequestRefused(str(refused), refused.status, partial, data) from None
        if head is None:
            return None
        request = Request.received(
            head.method, head.target, Headers.from_wire(head.fields), b"", head.version
        )
        raw_head = data[: head.size]
        try:
            framed = framing.request_framing(head)
        except framing.Unframeable as refused:
            raise RequestRefused(str(refused), refused.status, request, raw_head) from None
        self.pending = data[head.size :]
        return Arrival(
            request,
            raw_head,
            framed.content_length,
            framed.chunked,
            framed.must_close,
            at=time.time(),
        )

    def _read_length(self, arrival: Arrival) -> bytes:
        refusal = self.too_large(arrival)
        if refusal is not None:
            raise refusal
        length = arrival.content_length
        if len(self.pending) >= length:
            body, self.pending = self.pending[:length], self.pending[length:]
            return body
        buffer = bytearray(self.pending)
        while len(buffer) < length:
            try:
                data = self._read_more()
            except ConnectionReset as reset:
                raise self._cut_short(arrival, bytes(buffer), bytes(buffer), reset=True) from reset
            if not data:
                raise self._cut_short(arrival, bytes(buffer), bytes(buffer), reset=False)
            buffer += data
        # One copy of the body, not one of the whole buffer and another of its slice.
        with memoryview(buffer) as view:
            body, self.pending = bytes(view[:length]), bytes(view[length:])
        return body

    def _read_chunked(self, arrival: Arrival) -> Body:
        decoder = framing.ChunkedBody()
        fed = bytearray()
        data = self.pending
        while True:
            fed += data
            try:
                rest = decoder.feed(data)
            except framing.Unframeable as refused:
                raise RequestRefused(
                    f"{refused} in the chunked body",
                    refused.status,
                    self._with_body(arrival, bytes(decoder.data)),
                    arrival.raw_head + bytes(fed),
                ) from None
            if len(decoder.data) > self._body_limit:
                raise BodyTooLarge(
                    self._over_limit(f"read so far ({len(decoder.data)} bytes)"),
                    arrival.request,
                    arrival.raw_head,
                )
            if decoder.done:
                self.pending = rest
                framed = bytes(fed[: len(fed) - len(rest)])
                return Body(bytes(decoder.data), framed, decoder.trailers or None)
            try:
                data = self._read_more()
            except ConnectionReset as reset:
                raise self._cut_short(
                    arrival, bytes(decoder.data), bytes(fed), reset=True
                ) from reset
            if not data:
                raise self._cut_short(arrival, bytes(decoder.data), bytes(fed), reset=False)

    def _read_more(self) -> bytes:
        data = self.stream.read()
        if data:
            self.last_progress = time.monotonic()
        return data

    def _head_cut_short(self, *, reset: bool) -> CutShort:
        how = "reset" if reset else "closed"
        return CutShort(
            f"the client {how} the connection in the middle of a request head "
            f"({len(self.pending)} bytes)",
            parse_sent_request(self.pending),
            self.pending,
            reset=reset,
        )

    def _cut_short(
        self, arrival: Arrival, payload: bytes, framed: bytes, *, reset: bool
    ) -> CutShort:
        how = "reset" if reset else "closed"
        return CutShort(
            f"the client {how} the connection after {len(framed)} body bytes",
            self._with_body(arrival, payload),
            arrival.raw_head + framed,
            reset=reset,
        )

    @staticmethod
    def _with_body(arrival: Arrival, payload: bytes) -> Request:
        request = arrival.request
        return Request.received(
            request.method, request.path, request.headers, payload, request.http_version
        )

    def _over_limit(self, body: str) -> str:
        return (
            f"the request body {body} is over the endpoint's max_body_size of "
            f"{self.max_body_size} bytes; add_endpoint(max_body_size=...) sets the limit"
        )


def handed_over(request: Request, raw_head: bytes, at: float) -> tuple[Arrival, bytes]:
    """A request :meth:`RequestReader.read_buffered` read (whole, framed by a length or
    bodiless) as a connection's thread carries on with it: its :class:`Arrival` and its
    body's bytes."""
    return Arrival(request, raw_head, len(request.raw_body), at=at), request.raw_body


def with_body(arrival: Arrival, body: Body) -> Request:
    """The request of ``arrival`` with its body read (and its trailers, where some came:
    ``request.trailers``, where HTTP/2 trailers go too)."""
    request = RequestReader._with_body(arrival, body.payload)
    if body.trailers:
        request.trailers = Headers.from_wire(body.trailers)
    return request
