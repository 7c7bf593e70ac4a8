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

The client-side faults (a rapid-reset burst, a CONTINUATION flood, a shut window, a header
block as given) are sent here, through :mod:`~pytest_deproxy.h2wire`, and what the peer did
instead of answering comes back as an :class:`H2StreamError` or :class:`H2StreamTimeout`.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

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
    rapid_reset,
    request_fields,
    send_headers_continued,
)
from .models import TRACKING_HEADER, TRACKING_KEY, Headers, Request, Response, reason_phrase
from .record import MessageChain

_numbers = itertools.count(1)
INITIAL_WINDOW_SIZE = 0x4  # the SETTINGS code
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
    reset_code: int | None = None


class _Refusal(Exception):
    """What the peer answered a stream instead of a whole response: ``stream_id``,
    ``reset_code`` (its RST_STREAM's code, or ``None``; ``reset`` is the code's name),
    ``goaway`` (the connection's GOAWAY as ``(code name, last_stream_id)``, or ``None``) and
    ``response`` (the head, and the body so far, that came before; or ``None``)."""

    def __init__(
        self,
        message: str,
        *,
        stream_id: int,
        reset_code: int | None = None,
        goaway: tuple[str, int | None] | None = None,
        response: Response | None = None,
    ) -> None:
        super().__init__(message)
        self.stream_id = stream_id
        self.reset_code = reset_code
        self.goaway = goaway
        self.response = response

    @property
    def reset(self) -> str | None:
        return None if self.reset_code is None else error_name(self.reset_code)


class H2StreamError(_Refusal, StreamGone):
    """The peer reset the stream, sent GOAWAY, or closed the connection before a whole
    response came: ``stream_id``, ``reset`` (the RST_STREAM's code name, e.g.
    ``"PROTOCOL_ERROR"``; ``reset_code`` its number), ``goaway`` (``(code name,
    last_stream_id)``) and ``response`` (what came before, if anything); ``None`` for what
    did not happen."""


class H2StreamTimeout(_Refusal, DeproxyTimeout):
    """No whole response came in time; ``response`` holds what came (e.g. a head with no
    body when the client's window was shut), ``goaway`` any GOAWAY seen meanwhile."""


def _response(answer: _Answer, stream_id: int) -> Response | None:
    """The response a stream's answer holds so far, or ``None`` before its head."""
    if answer.fields is None:
        return None
    headers = Headers.from_wire(answer.fields)
    status = headers.get(":status") or "0"
    code = int(status) if status.isdigit() else 0
    response = Response.received(code, reason_phrase(code), headers, b"".join(answer.body), "2")
    if answer.trailers:
        response.trailers = Headers.from_wire(answer.trailers)
    return response


class H2ClientConnection:
    """An HTTP/2 connection to ``target``: pass it to ``make_request(connection=...)`` from
    several threads at once, each request on its own stream. ``events`` are the
    connection-level frames both ways; ``stream_ids`` the streams opened, in order."""

    http2: Literal[True] = True  # (a ClientConnection's is False: callers tell them apart by it)

    def __init__(self, target: object, stream: net.Stream, *, scheme: str, authority: str) -> None:
        self.target = target
        self.scheme, self.authority = scheme, authority
        # The reader waits for frames as long as the connection lives (a read timeout would
        # pass for the peer closing it); each request keeps its own deadline in send().
        stream.timeout = None
        self._stream = stream
        self._events: list[FrameEvent] = []
        self._wire = H2Wire(stream, client_side=True, on_event=self._events.append)
        self._answers: dict[int, _Answer] = {}
        self._open_lock = threading.Lock()
        self._answers_lock = threading.Lock()
        self._gone: str | None = None
        self.goaway_received: tuple[str, int | None] | None = None
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
        the stream (RST_STREAM CANCEL) if no whole answer came within that many seconds.

        ``sending`` (a :class:`~pytest_deproxy.crafting.Sending`) may ask for the client-side
        faults: ``h2_rapid_reset``, ``h2_continuation_flood``, ``h2_zero_window``,
        ``h2_fields``. When no whole response comes, the error is an :class:`H2StreamError`
        or :class:`H2StreamTimeout` saying what the peer answered instead. ``chain``, when
        given, gets this call's ``connection_events``: the frames on its streams and the
        connection's own frames since the chain started."""
        since = chain.started if chain is not None else time.time()
        opened: list[int] = []
        try:
            return self._send(request, sending, timeout, chain, reset_after, opened)
        finally:
            if chain is not None:
                chain.connection_events = tuple(self.events_of(opened, since))

    def events_of(self, stream_ids: list[int], since: float) -> list[FrameEvent]:
        """The frames on ``stream_ids``, and the connection's own frames from ``since`` on."""
        wanted = set(stream_ids)
        return [
            event
            for event in self._events[:]
            if event.stream_id in wanted or (event.stream_id == 0 and event.at >= since)
        ]

    def _send(
        self,
        request: Request,
        sending: object,
        timeout: float | None,
        chain: MessageChain | None,
        reset_after: float | None,
        opened: list[int],
    ) -> Response:
        if self._gone is not None:
            raise self._failure(f"the HTTP/2 connection is closed: {self._gone}", 0)
        answer = _Answer()
        body = request.raw_body
        fields = self._fields(request, sending, chain)
        burst = getattr(sending, "h2_rapid_reset", 0)
        flood = getattr(sending, "h2_continuation_flood", 0)
        if getattr(sending, "h2_zero_window", False):
            self._wire.hold_window = True  # no WINDOW_UPDATE from now on, for any stream
            self._wire.update_settings({INITIAL_WINDOW_SIZE: 0})
        end_stream = not body and not request.has_trailers
        with self._open_lock:
            try:
                if burst:
                    resets = rapid_reset(self._wire, fields, burst)
                    opened += resets
                    self.stream_ids += resets
                stream_id = self._wire.new_stream_id()
                with self._answers_lock:
                    self._answers[stream_id] = answer
                opened.append(stream_id)
                self.stream_ids.append(stream_id)
                if flood:
                    send_headers_continued(
                        self._wire, stream_id, fields, flood, end_stream=end_stream
                    )
                else:
                    self._wire.send_headers(stream_id, fields, end_stream=end_stream)
            except NetworkError as exc:
                gone = self._gone or str(exc)
                raise self._failure(f"the request could not be sent: {gone}", 0) from exc
        wait = timeout if reset_after is None else reset_after
        deadline = None if wait is None else time.monotonic() + wait
        try:
            if body:
                try:
                    self._wire.send_data(
                        stream_id, body, end_stream=not request.has_trailers, deadline=deadline
                    )
                except WindowShut as shut:
                    if reset_after is None:
                        raise DeproxyTimeout(f"{shut} after {timeout} s") from shut
                    self._wire.reset(stream_id, CANCEL)
                    raise StreamGone(
                        f"stream {stream_id} reset (RST_STREAM CANCEL) after {reset_after} s, "
                        f"as h2_reset_after asked, while sending: {shut}"
                    ) from shut
                except StreamGone as gone:
                    if answer.ended.is_set():  # the peer refused the stream: say how, below
                        return self._await(stream_id, answer, 0, None, chain)
                    raise self._failure(str(gone), stream_id, answer) from gone
            if request.has_trailers:
                self._wire.send_trailers(
                    stream_id, [(n.lower(), v) for n, v in request.trailers.items()]
                )
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            return self._await(stream_id, answer, left, reset_after, chain)
        finally:
            with self._answers_lock:
                self._answers.pop(stream_id, None)

    def _fields(
        self, request: Request, sending: object, chain: MessageChain | None
    ) -> list[tuple[str, str]]:
        """The header block: built from ``request``, or ``h2_fields`` exactly as given (the
        tracking header added at the end when absent, and ``chain.sent_request`` made to
        say what was sent)."""
        given = getattr(sending, "h2_fields", None)
        if given is None:
            authority = request.headers.get("Host") or self.authority
            return request_fields(
                request.method, self.scheme, authority, request.path, request.headers.items()
            )
        fields = list(given)
        if not any(name.lower() == TRACKING_KEY for name, _ in fields):
            fields.append((TRACKING_KEY, request.headers[TRACKING_HEADER]))
        if chain is not None:
            headers = Headers.from_wire(fields)
            method = headers.get(":method") or "(no :method)"
            path = headers.get(":path") or "(no :path)"
            chain.sent_request = Request.received(method, path, headers, request.raw_body, "2")
        return fields

    def _failure(
        self, message: str, stream_id: int, answer: _Answer | None = None
    ) -> H2StreamError:
        return H2StreamError(
            message,
            stream_id=stream_id,
            reset_code=None if answer is None else answer.reset_code,
            goaway=self.goaway_received,
            response=None if answer is None else _response(answer, stream_id),
        )

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
            partial = _response(answer, stream_id)
            came = (
                ""
                if partial is None
                else f": the head ({partial.code}) came, then {len(partial.raw_body)} B of body"
            )
            waited = round(timeout or 0, 2)
            raise H2StreamTimeout(
                f"no whole answer on HTTP/2 stream {stream_id} in {waited:g} s{came}",
                stream_id=stream_id,
                goaway=self.goaway_received,
                response=partial,
            )
        if chain is not None:
            chain.interim_responses.extend(answer.interim)
        response = _response(answer, stream_id)
        if answer.error is not None and response is None:
            raise self._failure(answer.error, stream_id, answer)
        if response is None:
            raise ProtocolError(f"HTTP/2 stream {stream_id} ended with no response head")
        if answer.error is not None:  # a head, then a reset: what came is the answer, cut short
            raise self._failure(
                f"{answer.error} after the response head {response.code}", stream_id, answer
            )
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
            self.goaway_received = (error_name(event.code), event.last_stream_id)
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
            answer.reset_code = event.code
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
