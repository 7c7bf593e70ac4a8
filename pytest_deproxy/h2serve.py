"""Serving one HTTP/2 connection: every stream is a request, answered through the endpoint.

Rules kept here: a stream joins the record (a ``Handling`` with its ``stream_id`` and the
connection's id) when its header block arrives, exactly as an HTTP/1 request does when its
head arrives, and it is finished before a frame of its answer is written. The connection's
thread reads and dispatches frames. A stream whose request is whole is answered there when
its handler never waits (the endpoint says which, as on the HTTP/1 poll thread), and what a
batch of frames asks for leaves in one write; a handler that may wait runs on a thread of
the stream's own, so it holds up no other stream, as does the rest of an answer that the
peer's flow-control window does not take at once. A request that asks
``Expect: 100-continue`` of a handler that may refuse its body (one that takes a context)
has it run as the HEADERS arrive, on the stream's thread (``_AwaitedBody``); any other gets
its ``100`` then. Those threads are named, owned by the
connection and joined before it is let go; a stream answered whole is let go too (its
handling stays on the record). What the handler returned is turned into frames
here (HTTP/2 faults included); which handler answers is the endpoint's business.

A connection keeps what it makes once (:mod:`~pytest_deproxy.h2kept`): a header block's
request parts and raw head (found again by the identity of the fields the wire gives), and
the last answer made on the connection's thread for a request with no tracking id (the same
answer again, compared by value, in the same second, is recorded with
``Handling.finish_as`` and sent as the same fields tuple). The commonest stream under load,
a request whole in a header block kept, whose handler is the one known to give the canned
answer kept, is recorded done in one step (``Handling.answered``, as the HTTP/1 poll path
does) and answered with no stream kept for it: the record says what the longer way says.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from . import wire
from .accepted import Connection
from .awaiting import RequestAwaitingBody
from .errors import DeproxyError, NetworkError, ProtocolError
from .faults import Close, Fault, Hang, Reset, Send
from .h2frames import (
    NO_ERROR,
    DataIn,
    Ended,
    Event,
    GoneAway,
    HeadersIn,
    Violation,
    error_name,
    request_of,
    response_fields,
)
from .h2frames import Reset as StreamReset
from .h2kept import KeptAnswer, KeptHead, sent_and_fields
from .h2wire import H2Wire, StreamGone
from .handlers import H2Fault, Handler, HandlerContext
from .models import Headers, Request, Response
from .record import Handling

STREAM_JOIN_TIMEOUT = 2.0  # at the end of a connection, how long its stream threads may take
_HEADS_KEPT = 64  # header blocks kept per connection (see KeptHead)
_time = time.time


class StreamResponder(Protocol):
    """What serving a stream asks of the endpoint."""

    @property
    def name(self) -> str: ...

    def arrive_stream(
        self, connection: Connection, request: Request, raw_head: bytes, at: float, stream_id: int
    ) -> Handling: ...

    def arrive_answered(
        self,
        connection: Connection,
        request: Request,
        raw_head: bytes,
        at: float,
        made: KeptAnswer,
        stream_id: int,
    ) -> Handling:
        """Record a request with no tracking id answered as it arrived, with ``made``."""

    def canned_unclaimed(self) -> Response | None:
        """The canned answer of a request with no tracking id, when its handler is known to
        give one; ``None``: ask :meth:`answer_now`."""

    def answer_now(self, handling: Handling) -> tuple[Response | None, Handler]:
        """The handler for the request, and its answer when the handler never waits (the
        answer is then made already); ``None`` when it is to run on a thread of its own."""

    def awaits_body(self, handling: Handling) -> Handler | None:
        """For a request that asks ``Expect: 100-continue``: its handler when it may refuse
        the body (it runs as the HEADERS arrive); ``None``: ``100 Continue`` goes out now."""

    def run_stream_handler(
        self,
        connection: Connection,
        handling: Handling,
        handler: Handler,
        send_interim: Callable[[Response], None],
        client_gone: Callable[[], bool],
        awaited: tuple[Request, Callable[[HandlerContext], None]] | None = None,
    ) -> tuple[Response | Fault, HandlerContext]:
        """Run a handler that may wait; ``client_gone`` says whether the client has reset the
        stream or left the connection (``context.client_gone``); ``awaited``: the request to
        give it instead of the handling's, and what sees its context before it runs."""

    def settle(self, handling: Handling) -> None: ...

    def report(self, error: BaseException) -> None: ...

    def record_error(self, error: DeproxyError) -> None: ...


@dataclass(eq=False, slots=True)
class _Stream:
    stream_id: int
    fields: list[tuple[str, str]]
    handling: Handling
    body: list[bytes] = field(default_factory=list)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    thread: threading.Thread | None = None
    reset_code: int | None = None
    plain: bool = False  # its request is HTTP/2's with no tracking id (an answer may be kept)
    # Set when no more of the request comes (ended, reset, connection gone), for a handler
    # that runs before it is whole (see _AwaitedBody).
    whole: threading.Event | None = None


class _AwaitedBody:
    """The body of a stream whose request asks ``Expect: 100-continue``, for a handler that
    runs as its HEADERS arrive and may refuse it (``context.send_continue = False``), as on
    HTTP/1.1 (:mod:`~pytest_deproxy.expecting`): read when the handler first asks for it, when
    it waits, or when it returns, after ``100 Continue`` unless it refused. A refused body is
    not on the record, and once the answer is sent the stream is reset with ``NO_ERROR``, so
    that the client stops sending it (RFC 9113 8.1); a body the client sent whole anyway is
    on the record as it came."""

    def __init__(self, session: H2Session, stream: _Stream) -> None:
        self._session, self._stream = session, stream
        self._context: HandlerContext | None = None
        self.read_whole: Request | None = None
        head = stream.handling.request
        self.given = (RequestAwaitingBody(head, self.read), self._prepare)

    def _prepare(self, context: HandlerContext) -> None:
        self._context = context
        context._before_wait = self.read

    def read(self) -> Request:
        """The request with its body, read (waited for) now if it was not yet."""
        if self.read_whole is None:
            stream = self._stream
            assert self._context is not None and stream.whole is not None
            if self._context.send_continue:
                try:
                    self._session._interim(stream, CONTINUE)
                except NetworkError:
                    pass  # reset or gone: what came is the request, as far as it came
            stream.whole.wait()
            self.read_whole = stream.handling.request = self._session._so_far(stream)
        return self.read_whole

    def settle(self) -> bool:
        """After the handler returned: read the body it did not refuse; whether it refused
        a body that is still to come."""
        assert self._context is not None and self._stream.whole is not None
        if self.read_whole is None and (self._context.send_continue or self._stream.whole.is_set()):
            self.read()
        return self.read_whole is None


class H2Session:
    """One HTTP/2 connection an endpoint accepted (TLS with ALPN ``h2``, prior knowledge, or
    ``Upgrade: h2c`` with ``upgraded`` the handling of the request that asked)."""

    def __init__(self, connection: Connection, responder: StreamResponder) -> None:
        self.connection = connection
        self.responder = responder
        self.wire = H2Wire(
            connection.stream, client_side=False, on_event=connection.record.add_event
        )
        self._streams: dict[int, _Stream] = {}
        self._threads: list[threading.Thread] = []
        self._going_away = False
        self._heads: dict[int, KeptHead] = {}  # by the id of the fields they hold
        self._answer: KeptAnswer | None = None  # the last answer made here (see KeptAnswer)

    def serve(self, upgraded: Handling | None = None) -> None:
        connection = self.connection
        if upgraded is not None:
            connection.stream.write(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
            )
            self.wire.initiate_upgrade(upgraded.request.headers.get("HTTP2-Settings"))
            upgraded.stream_id = 1
            stream = _Stream(1, [], upgraded)
            self._streams[1] = stream
            with self.wire.corked():
                self._begin(stream)
        else:
            self.wire.initiate()
        pending, connection.reader.pending = connection.reader.pending, b""
        try:
            if pending and not self._take(pending):
                return
            while not connection.stopping.is_set():
                if not self._take(self.wire.read()):
                    return
        finally:
            self._finish()

    def _take(self, data: bytes) -> bool:
        """Act on what was read (``b""``: the client closed); whether to go on reading. Each
        answer made on this thread leaves once it is whole, in one write with what the frames
        before it asked for (acks): the client goes on with it while the next is made (one
        write for a batch of 8 streams held h2load at 0.54 of HTTP/1.1's rate, one an answer
        at 0.6)."""
        try:
            with self.wire.corked():
                return self._dispatch(self.wire.receive(data))
        except NetworkError:
            if not self.connection.stopping.is_set():
                raise
            self.connection.record.closed("shutdown")  # it closed the socket as we wrote
            return False

    # -- frames in -------------------------------------------------------------------------

    def _dispatch(self, events: Sequence[Event] | None) -> bool:
        """Act on what arrived; whether to go on reading."""
        if events is None:  # the client closed, or shutdown closed the socket under us
            stopping = self.connection.stopping.is_set()
            self.connection.record.closed("shutdown" if stopping else "client")
            return False
        for event in events:
            if isinstance(event, HeadersIn):
                if not (event.end_stream and self._answered_again(event)):
                    self._headers(event)
            elif isinstance(event, DataIn):
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream.body.append(event.data)
            elif isinstance(event, Ended):
                self._ended(event.stream_id)
            elif isinstance(event, StreamReset):
                self._reset_by_client(event.stream_id, event.code)
            elif isinstance(event, GoneAway):
                self._going_away = True
                if not self._streams_running():
                    self.connection.record.closed("client")
                    return False
            elif isinstance(event, Violation):
                self.responder.record_error(
                    ProtocolError(
                        f"connection {self.connection.id}: the client broke HTTP/2 "
                        f"({event.message}); GOAWAY sent and the connection closed"
                    )
                )
                self.connection.record.closed("endpoint")
                return False
        return True

    def _answered_again(self, event: HeadersIn) -> bool:
        """A new stream's request, whole in its header block, with no tracking id, answered
        as the last such one was (the commonest stream under load): recorded done and sent
        in one step, with no stream kept; whether it was (else :meth:`_headers` takes it)."""
        head = self._heads.get(id(event.fields))  # (a block with a tracking id is not kept)
        answer = self._answer
        if (
            answer is None
            or head is None
            or head.fields is not event.fields
            or event.kind != "request"
            or event.stream_id in self._streams
        ):
            return False
        canned = self.responder.canned_unclaimed()
        at = _time()
        if canned is None or not answer.answers(canned, int(at)):
            return False
        stream_id = event.stream_id
        request = Request.from_head(head.method, head.path, head.items, head.keys, b"", "2")
        handling = self.responder.arrive_answered(
            self.connection, request, head.raw_head, at, answer, stream_id
        )
        try:
            if not answer.raw_body:  # the commonest: HEADERS alone, and no stream made for it
                self.wire.send_headers(stream_id, answer.fields, end_stream=True)
            else:  # (not kept: what the window holds back goes on from a thread of its own)
                self._send_again(_Stream(stream_id, event.fields, handling), answer, head.method)
        except StreamGone:
            pass  # the client reset the stream meanwhile: the record says what it sent
        except Exception as exc:  # a bug of ours: make it fail the test
            self.responder.report(exc)
        return True

    def _headers(self, event: HeadersIn) -> None:
        stream = self._streams.get(event.stream_id)
        if event.kind == "trailers" and stream is not None:
            stream.trailers.extend(event.fields)
            return
        if stream is None:
            stream = self._arrived(event)
        if event.end_stream and event.kind == "request":  # no Ended follows it (h2wire)
            self._ended(event.stream_id)

    def _arrived(self, event: HeadersIn) -> _Stream:
        """A new stream: its request joins the record."""
        fields = event.fields
        head = self._heads.get(id(fields))
        if head is None or head.fields is not fields:
            head = KeptHead(fields)
            if not head.tracked:
                if len(self._heads) >= _HEADS_KEPT:
                    self._heads.clear()
                self._heads[id(fields)] = head
        request = Request.from_head(head.method, head.path, head.items, head.keys, b"", "2")
        handling = self.responder.arrive_stream(
            self.connection, request, head.raw_head, _time(), event.stream_id
        )
        stream = self._streams[event.stream_id] = _Stream(event.stream_id, fields, handling)
        stream.plain = not head.tracked
        if not event.end_stream and _expects_continue(request):
            handler = self.responder.awaits_body(handling)
            if handler is None:
                self._interim(stream, CONTINUE)  # RFC 9110 10.1.1: the client waits for it
            else:
                stream.whole = threading.Event()
                self._start(stream, self._run, handler, _AwaitedBody(self, stream))
        return stream

    def _ended(self, stream_id: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if stream.whole is not None:  # its handler runs already, and waits for it
            stream.whole.set()
            return
        if stream.thread is not None or stream.handling.done:
            return
        if stream.body or stream.trailers:  # else the request made at arrival is the whole one
            stream.handling.request = self._so_far(stream)
        self._begin(stream)

    @staticmethod
    def _so_far(stream: _Stream) -> Request:
        """The stream's request as far as it came: its header block, body and trailers."""
        request = request_of(stream.fields, b"".join(stream.body))
        if stream.trailers:
            request.trailers = Headers.from_wire(stream.trailers)
        return request

    def _begin(self, stream: _Stream) -> None:
        """Answer a stream whose request is whole: here, on the connection's thread, when its
        handler never waits; else on a thread of its own, so that it holds up no other."""
        handling = stream.handling
        try:
            response, handler = self.responder.answer_now(handling)
            if response is None:
                self._start(stream, self._run, handler)
                return
            self._answer_here(stream, response)
        except StreamGone:
            pass  # the client reset the stream meanwhile: the record says what it sent
        except Exception as exc:  # a bug of ours: make it fail the test
            self.responder.report(exc)
        # Answered here, whole and sent (END_STREAM leaves at once): nothing more comes of
        # it, and the record keeps the handling.
        if stream.thread is None and handling.done:
            del self._streams[stream.stream_id]

    def _answer_here(self, stream: _Stream, response: Response) -> None:
        """Finish and send the answer a handler made on the connection's thread. The same
        answer again, to a request with no tracking id, is the one made before (``KeptAnswer``):
        no Response as sent nor fields are made for it, and its header block is encoded once
        per HPACK table state."""
        handling = stream.handling
        request = handling.request
        if stream.plain:  # (a tracking id is echoed: an answer of its own; the request that
            # asked for the h2c upgrade is HTTP/1.1's, answered on its own too)
            answer, second = self._answer, int(_time())
            if answer is None or not answer.answers(response, second):
                sent, fields = sent_and_fields(response, request, defaults=True)
                if sent.has_trailers:
                    answer = None
                else:
                    answer = self._answer = KeptAnswer(response, sent, fields, second)
            if answer is not None:
                handling.finish_as(answer)
                self.responder.settle(handling)
                self._send_again(stream, answer, request.method)
                return
        sent, fields = sent_and_fields(response, request, defaults=True)
        handling.finish(sent)
        self.responder.settle(handling)
        self._send(stream, sent, request, waiting=False, fields=fields)

    def _send_again(self, stream: _Stream, answer: KeptAnswer, method: str) -> None:
        """Send an answer kept (``KeptAnswer``) on ``stream``, from the connection's thread."""
        if not answer.raw_body:  # HEADERS alone, whatever the method
            self.wire.send_headers(stream.stream_id, answer.fields, end_stream=True)
            return
        self._send_parts(stream, answer.code, answer.raw_body, (), method, False, answer.fields)

    def _start(self, stream: _Stream, target: Callable[..., None], *args: object) -> None:
        stream.thread = threading.Thread(
            target=target,
            args=(stream, *args),
            name=f"deproxy-{self.responder.name}-{self.connection.id}-s{stream.stream_id}",
            daemon=True,
        )
        if len(self._threads) >= 64:  # the ones that ended need no join, nor their streams
            self._threads = [thread for thread in self._threads if thread.is_alive()]
            for ended in [s for s in self._streams.values() if s.thread and s.handling.done]:
                if not ended.thread.is_alive():  # type: ignore[union-attr]
                    del self._streams[ended.stream_id]
        self._threads.append(stream.thread)
        stream.thread.start()

    def _reset_by_client(self, stream_id: int, code: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        stream.reset_code = code
        if stream.whole is not None:  # no more comes: a handler waiting for it goes on
            stream.whole.set()
        handling = stream.handling
        if not handling.done and stream.thread is None:  # reset before the request ended
            handling.request = self._so_far(stream)
            handling.finish(
                None, f"the client reset stream {stream_id} ({error_name(code)}) mid-request"
            )
            self.responder.settle(handling)

    def _streams_running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    # -- a stream's answer -----------------------------------------------------------------

    def _run(self, stream: _Stream, handler: Handler, awaited: _AwaitedBody | None = None) -> None:
        """A stream's own thread: run a handler that may wait, and send what it returned;
        with ``awaited``, as the request's HEADERS arrived, before its body."""
        handling = stream.handling
        try:
            result, context = self.responder.run_stream_handler(
                self.connection,
                handling,
                handler,
                lambda interim: self._interim(stream, interim),
                lambda: self._client_gone(stream),
                None if awaited is None else awaited.given,
            )
            refused = awaited is not None and awaited.settle()
            if isinstance(result, Fault):
                self._fault(stream, result, context)
                return
            if self._client_gone(stream):  # reset or closed while the handler ran: nothing goes out
                gone = f"the connection was closed ({self.connection.record.closed_by})"
                if stream.reset_code is not None:
                    code = error_name(stream.reset_code)
                    gone = f"the client reset stream {stream.stream_id} ({code})"
                handling.finish(None, f"{gone} before the answer was sent")
                self.responder.settle(handling)
                return
            sent, fields = sent_and_fields(result, handling.request, context.send_default_headers)
            handling.finish(sent)
            self.responder.settle(handling)
            self._send(stream, sent, handling.request, fields=fields)
            if refused:  # the answer is whole: the client need not send the body it holds
                self.wire.reset(stream.stream_id, NO_ERROR)
        except StreamGone:
            pass  # the client reset the stream or went away: the record says what it sent
        except NetworkError:
            pass
        except Exception as exc:  # a bug of ours: make it fail the test
            self.responder.report(exc)

    def _client_gone(self, stream: _Stream) -> bool:
        """Whether the client reset ``stream`` or closed the connection."""
        return stream.reset_code is not None or self.connection.record.closed_at is not None

    def _interim(self, stream: _Stream, interim: Response) -> None:
        stream.handling.interim_responses.append(interim)
        self.wire.send_headers(
            stream.stream_id, response_fields(interim.code, interim.headers.items())
        )

    def _send(
        self,
        stream: _Stream,
        sent: Response,
        request: Request,
        waiting: bool = True,
        fields: list[tuple[str, str]] | None = None,
    ) -> None:
        """Send ``sent`` on ``stream`` (as ``fields``, when they are made already). Not
        ``waiting`` (on the connection's thread): what the peer's flow-control window does
        not take now goes on from a thread of the stream's own."""
        trailers = [(n.lower(), v) for n, v in sent.trailers.items()] if sent.has_trailers else []
        if fields is None:
            fields = response_fields(sent.code, sent.headers.items())
        self._send_parts(
            stream, sent.code, sent.raw_body, trailers, request.method, waiting, fields
        )

    def _send_parts(
        self,
        stream: _Stream,
        code: str,
        body: bytes,
        trailers: Sequence[tuple[str, str]],
        method: str,
        waiting: bool,
        fields: Sequence[tuple[str, str]],
    ) -> None:
        """:meth:`_send`, of a response's parts: its status, body, trailers and fields."""
        stream_id = stream.stream_id
        data = body if body and wire.response_has_body(int(code), method) else b""
        if (
            data
            and not waiting
            and not trailers
            and self.wire.send_answer_now(stream_id, fields, data)
        ):
            return
        self.wire.send_headers(stream_id, fields, end_stream=not data and not trailers)
        if data and not waiting:
            data = data[self.wire.send_data_now(stream_id, data, end_stream=not trailers) :]
            if data:
                self._start(stream, self._finish_sending, data, trailers)
                return
        self._send_rest(stream, data, trailers)

    def _send_rest(self, stream: _Stream, data: bytes, trailers: Sequence[tuple[str, str]]) -> None:
        if data:
            self.wire.send_data(
                stream.stream_id, data, end_stream=not trailers, stopping=self.connection.stopping
            )
        if trailers:
            self.wire.send_trailers(stream.stream_id, trailers)

    def _finish_sending(
        self, stream: _Stream, data: bytes, trailers: Sequence[tuple[str, str]]
    ) -> None:
        """A stream's own thread: the rest of an answer, as the window opens."""
        try:
            self._send_rest(stream, data, trailers)
        except NetworkError:  # StreamGone included: the client reset the stream or went away
            pass
        except Exception as exc:  # a bug of ours: make it fail the test
            self.responder.report(exc)

    def _fault(self, stream: _Stream, fault: Fault, context: HandlerContext) -> None:
        handling, sid = stream.handling, stream.stream_id
        sent = None
        if fault.response is not None:
            defaults = context.send_default_headers
            sent, _ = sent_and_fields(fault.response, handling.request, defaults)
        handling.finish(sent, fault.description)
        self.responder.settle(handling)
        if isinstance(fault, H2Fault):
            self._h2_fault(stream, fault, sent, context)
            return
        # An HTTP/1 fault on a stream: its steps, in HTTP/2's terms.
        steps = fault.plan(sent, b"", b"")
        if sent is not None:  # the response as far as the fault lets it go
            if any(isinstance(step, Hang) for step in steps):
                self.wire.send_headers(sid, response_fields(sent.code, sent.headers.items()))
            else:
                self._send(stream, sent, handling.request)
        for step in steps:
            if isinstance(step, Send) and step.data:
                self.wire.write_raw(step.data)
            elif isinstance(step, Hang):
                context.sleep(None)
            elif isinstance(step, Close):
                self.wire.goaway(NO_ERROR)
                self.connection.stream.shutdown()
            elif isinstance(step, Reset):
                self.connection.stream.abort()

    def _h2_fault(
        self, stream: _Stream, fault: H2Fault, sent: Response | None, context: HandlerContext
    ) -> None:
        sid = stream.stream_id
        if fault.kind == "headers_only" and sent is not None:
            self.wire.send_headers(sid, response_fields(sent.code, sent.headers.items()))
            context.sleep(None)
        elif fault.kind == "trailers_only" and sent is not None:
            fields = response_fields(sent.code, [*sent.headers.items(), *sent.trailers.items()])
            self.wire.send_headers(sid, fields, end_stream=True)
        elif fault.kind == "rst_stream":
            if sent is not None:
                self.wire.send_headers(sid, response_fields(sent.code, sent.headers.items()))
            self.wire.reset(sid, fault.code)
        elif fault.kind == "goaway":
            last = sid if fault.last_stream_id is None else fault.last_stream_id
            self.wire.goaway(fault.code, last)
            self.connection.stream.shutdown(writing_only=True)
        elif fault.kind == "stall_window" and sent is not None:
            self.wire.hold_window = True  # no more credit to the client, for any stream
            self._send(stream, sent, stream.handling.request)
        elif fault.kind == "settings":
            self.wire.update_settings(fault.settings)
            if sent is not None:
                self._send(stream, sent, stream.handling.request)
        elif fault.kind == "raw":
            self.wire.write_raw(fault.data)
        else:  # refuse_stream
            self.wire.reset(sid, fault.code)

    # -- the end ---------------------------------------------------------------------------

    def _finish(self) -> None:
        """Wake and join the stream threads; note who ended streams still open."""
        deadline = time.monotonic() + STREAM_JOIN_TIMEOUT
        if self.connection.stopping.is_set():
            self.connection.stream.shutdown()
        for stream in self._streams.values():
            if stream.whole is not None:  # no more of its request comes
                stream.whole.set()
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():  # a handler waiting on the peer: wake it by closing
                self.connection.stream.shutdown()
                thread.join(max(0.0, deadline - time.monotonic()) + 0.5)
        for stream in self._streams.values():
            handling = stream.handling
            if not handling.done:
                handling.request = self._so_far(stream)
                handling.finish(
                    None, f"the connection closed before stream {stream.stream_id} ended"
                )
                self.responder.settle(handling)


CONTINUE = Response(100)


def _expects_continue(request: Request) -> bool:
    """Whether the client waits for ``100 Continue`` before it sends the body it announced."""
    expect = request.headers.get("expect")
    return expect is not None and expect.strip().lower() == "100-continue"
