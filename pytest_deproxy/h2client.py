"""The client side of HTTP/2: one connection, many streams, from as many threads.

Rules kept here: one thread at a time reads a connection's socket, and it hands every
stream's frames to that stream. On cleartext a request waiting for its answer reads for
itself (and for the others waiting), so that an answer reaches its thread with no hand-off
between threads; while no request has waited for ``IDLE_READ`` s (and always on TLS) the
connection's reader thread reads, so that what the peer sends unasked (GOAWAY, PING) is on
the record as it comes. That thread is named, owned by the connection and joined by
:meth:`H2ClientConnection.close`, which is idempotent. A request's stream is opened (its id
taken and its HEADERS sent) under one lock, so that ids rise in the order the peer sees
them. Each stream's answer is collected apart and handed to the thread that sent it.
Opening the socket (proxy, tunnel, TLS with ALPN) is :mod:`~pytest_deproxy.client`'s; this
module gets a connected stream.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

from . import net
from .connections import FrameEvent
from .errors import DeproxyTimeout, NetworkError, ProtocolError
from .h2wire import (
    CANCEL,
    DataIn,
    Ended,
    GoneAway,
    H2Wire,
    HeadersIn,
    Reset,
    StreamGone,
    Violation,
    WindowShut,
    error_name,
    request_fields,
)
from .models import Headers, Request, Response, reason_phrase
from .record import MessageChain

_numbers = itertools.count(1)
IDLE_READ = 0.02  # after this long with no request waiting, the reader thread reads


@dataclass(eq=False)
class _Answer:
    """What came back on one stream."""

    fields: list[tuple[str, str]] | None = None
    interim: list[Response] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    ended: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class H2ClientConnection:
    """An HTTP/2 connection to ``target``: pass it to ``make_request(connection=...)`` from
    several threads at once, each request on its own stream. ``events`` are the
    connection-level frames both ways; ``stream_ids`` the streams opened, in order."""

    http2 = True

    def __init__(self, target: object, stream: net.Stream, *, scheme: str, authority: str) -> None:
        self.target = target
        self.scheme, self.authority = scheme, authority
        self._stream = stream
        self._events: list[FrameEvent] = []
        self._wire = H2Wire(stream, client_side=True, on_event=self._events.append)
        self._answers: dict[int, _Answer] = {}
        self._open_lock = threading.Lock()
        self._answers_lock = threading.Lock()
        self._gone: str | None = None
        self.stream_ids: list[int] = []
        # Who reads: whoever holds _reading. _turn is notified when an answer ends, when the
        # reading is let go, and when requests start or stop waiting (_waiting, _last_wait).
        self._reading = threading.Lock()
        self._turn = threading.Condition()
        self._closing = threading.Event()  # the reader thread's sleep: ends at close()
        self._waiting = 0
        self._last_wait = time.monotonic()
        self._waiters_read = not self._wire.tls
        self._wire.initiate()
        self._reader = threading.Thread(
            target=self._read_loop, name=f"deproxy-h2client-{next(_numbers)}", daemon=True
        )
        self._reader.start()

    @property
    def events(self) -> list[FrameEvent]:
        return self._events[:]

    @property
    def closed(self) -> bool:
        return self._stream.closed or self._gone is not None

    # -- a request ---------------------------------------------------------------------------

    def send(
        self,
        request: Request,
        sending: object = None,
        *,
        timeout: float | None = None,
        chain: MessageChain | None = None,
        reset_after: float | None = None,
    ) -> Response:
        """Send ``request`` on a new stream and wait for its answer. ``reset_after``: reset
        the stream (RST_STREAM CANCEL) if no whole answer came within that many seconds."""
        if self._gone is not None:
            raise NetworkError(f"the HTTP/2 connection is closed: {self._gone}")
        answer = _Answer()
        body = request.raw_body
        authority = request.headers.get("Host") or self.authority
        fields = request_fields(
            request.method, self.scheme, authority, request.path, request.headers.items()
        )
        with self._open_lock:
            stream_id = self._wire.new_stream_id()
            with self._answers_lock:
                self._answers[stream_id] = answer
            self.stream_ids.append(stream_id)
            self._wire.send_headers(stream_id, fields, end_stream=not body and not request.trailers)
        wait = timeout if reset_after is None else reset_after
        deadline = None if wait is None else time.monotonic() + wait
        try:
            if body:
                try:
                    self._wire.send_data(
                        stream_id, body, end_stream=not request.trailers, deadline=deadline
                    )
                except WindowShut as shut:
                    if reset_after is None:
                        raise DeproxyTimeout(f"{shut} after {timeout} s") from shut
                    self._wire.reset(stream_id, CANCEL)
                    raise StreamGone(
                        f"stream {stream_id} reset (RST_STREAM CANCEL) after {reset_after} s, "
                        f"as h2_reset_after asked, while sending: {shut}"
                    ) from shut
            if request.trailers:
                self._wire.send_trailers(
                    stream_id, [(n.lower(), v) for n, v in request.trailers.items()]
                )
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            return self._await(stream_id, answer, left, reset_after, chain)
        finally:
            with self._answers_lock:
                self._answers.pop(stream_id, None)

    def _await(
        self,
        stream_id: int,
        answer: _Answer,
        timeout: float | None,
        reset_after: float | None,
        chain: MessageChain | None,
    ) -> Response:
        if not self._wait_for(answer, timeout):
            if reset_after is not None:
                self._wire.reset(stream_id, CANCEL)
                raise StreamGone(
                    f"stream {stream_id} reset (RST_STREAM CANCEL) after {reset_after} s, "
                    "as h2_reset_after asked"
                )
            raise DeproxyTimeout(f"no whole answer on HTTP/2 stream {stream_id} in {timeout} s")
        if chain is not None:
            chain.interim_responses.extend(answer.interim)
        if answer.error is not None and answer.fields is None:
            raise StreamGone(answer.error)
        if answer.fields is None:
            raise ProtocolError(f"HTTP/2 stream {stream_id} ended with no response head")
        headers = Headers.from_wire(answer.fields)
        status = headers.get(":status") or "0"
        code = int(status) if status.isdigit() else 0
        response = Response.received(code, reason_phrase(code), headers, b"".join(answer.body), "2")
        if answer.trailers:
            response.trailers = Headers.from_wire(answer.trailers)
        if answer.error is not None:  # a head, then a reset: what came is the answer, cut short
            raise StreamGone(f"{answer.error} after the response head {status}")
        return response

    # -- reading ---------------------------------------------------------------------------

    def _wait_for(self, answer: _Answer, timeout: float | None) -> bool:
        """Wait until ``answer`` ended, reading for every stream while no one else reads;
        whether it ended within ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._turn:
            self._waiting += 1
        try:
            while not answer.ended.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                if self._waiters_read and self._reading.acquire(blocking=False):
                    try:
                        if not answer.ended.is_set() and self._wire.wait_readable(left):
                            self._read_once()
                    finally:
                        self._let_go()
                    continue
                with self._turn:  # someone else reads: its reading ends, or it ends ours
                    if not answer.ended.is_set() and (
                        self._reading.locked() or not self._waiters_read
                    ):
                        self._turn.wait(left)
            return True
        finally:
            with self._turn:
                self._waiting -= 1
                self._last_wait = time.monotonic()
                self._turn.notify_all()

    def _read_once(self) -> bool:
        """Read what came and hand it to its streams; whether the connection is still open."""
        try:
            events = self._wire.receive()
            if events is None:
                self._end_all("the server closed the connection")
                return False
            for event in events:
                self._dispatch(event)
            return True
        except Exception as exc:  # the socket went away under us: every waiter learns why
            self._end_all(f"{type(exc).__name__}: {exc}")
            return False
        finally:
            with self._turn:
                self._turn.notify_all()

    def _let_go(self) -> None:
        self._reading.release()
        with self._turn:
            self._turn.notify_all()

    def _read_loop(self) -> None:
        """The reader thread: reads whenever no request has waited for ``IDLE_READ`` s."""
        while not self._stream.closed:
            if self._waiters_read:  # looked at every IDLE_READ s, not woken at each request
                idle = time.monotonic() - self._last_wait
                if self._waiting or idle < IDLE_READ:
                    self._closing.wait(IDLE_READ if self._waiting else IDLE_READ - idle)
                    continue
            if not self._reading.acquire(timeout=IDLE_READ):
                continue
            try:
                if self._waiters_read and (
                    self._waiting or not self._wire.wait_readable(IDLE_READ)
                ):
                    continue
                if not self._read_once():
                    return
            finally:
                self._let_go()

    def _dispatch(self, event: object) -> None:
        if isinstance(event, GoneAway):
            self._gone = f"GOAWAY {error_name(event.code)}, last_stream_id={event.last_stream_id}"
            last = event.last_stream_id or 0
            with self._answers_lock:
                late = [(sid, a) for sid, a in self._answers.items() if sid > last]
            for sid, answer in late:
                answer.error = f"stream {sid} not processed: {self._gone}"
                answer.ended.set()
            return
        if isinstance(event, Violation):
            self._end_all(f"the server broke HTTP/2: {event.message}")
            return
        stream_id = getattr(event, "stream_id", 0)
        with self._answers_lock:
            found = self._answers.get(stream_id)
        if found is None:
            return
        answer = found
        if isinstance(event, HeadersIn):
            if event.kind == "interim":
                headers = Headers.from_wire(event.fields)
                code = int(headers.get(":status") or 100)
                answer.interim.append(
                    Response.received(code, reason_phrase(code), headers, b"", "2")
                )
            elif event.kind == "trailers":
                answer.trailers.extend(event.fields)
            else:
                answer.fields = event.fields
        elif isinstance(event, DataIn):
            answer.body.append(event.data)
        elif isinstance(event, Ended):
            answer.ended.set()
        elif isinstance(event, Reset):
            answer.error = f"the server reset stream {stream_id} ({error_name(event.code)})"
            answer.ended.set()

    def _end_all(self, reason: str) -> None:
        if self._gone is None:
            self._gone = reason
        with self._answers_lock:
            answers = list(self._answers.values())
        for answer in answers:
            if not answer.ended.is_set():
                answer.error = answer.error or reason
                answer.ended.set()
        with self._turn:
            self._turn.notify_all()

    # -- the end -----------------------------------------------------------------------------

    def goaway(self, code: int = 0) -> None:
        self._wire.goaway(code)

    def write_raw(self, data: bytes) -> None:
        """Bytes as given on the connection (faults: frames made by hand)."""
        self._wire.write_raw(data)

    def close(self) -> None:
        if not self._stream.closed:
            try:
                self._wire.goaway(0)
            except NetworkError:
                pass
            self._stream.shutdown()
            self._stream.close()
        self._closing.set()  # the reader thread, waiting for its turn, sees the end
        with self._turn:
            self._turn.notify_all()
        if self._reader is not threading.current_thread():
            self._reader.join(5.0)

    def __enter__(self) -> H2ClientConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
