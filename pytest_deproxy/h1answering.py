"""How an endpoint answers HTTP/1: the responder :mod:`~pytest_deproxy.serving` serves its
connections with (arrival -> body -> handler -> finish -> write).

Rules kept here: a request joins the record when its head has arrived, before its handler
runs; its handling is finished (the response as sent, or what was done instead) before a
byte of the answer is written, so a client that has its answer finds the record complete
(the connection's record too: closed, when the endpoint closes after that answer).
``Http1Responder.answer_polled`` is the poll thread's fast path
(:mod:`~pytest_deproxy.h1polled`): it answers there only what can never wait, and leaves the
rest, a handler's fault or upgrade included, to the connection's own thread
(:meth:`Http1Responder.serve`).

A handler that returns a :class:`~pytest_deproxy.faults.Takeover` (a WebSocket, a tunnel)
is answered with its 101, recorded first as any answer, and the connection is then its own,
on the connection's thread, until it returns; the endpoint then closes it.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from . import net, responding, wire
from .accepted import Connection
from .answering import Answering, as_sent
from .errors import DeproxyError
from .expecting import CONTINUE, AwaitedBody
from .faults import Fault, Hang, Pause, Reset, Send, Step, Takeover, Upgraded
from .h1polled import Carried, PolledAnswers
from .h2answering import H2Answering, asks_h2c
from .handlers import (
    Handler,
    HandlerContext,
    takes_context,
)
from .models import Request, Response
from .record import Handling
from .refusals import cut_short, refuse
from .request_reader import Arrival, CutShort, RequestRefused, with_body

# What to do with a CONNECT: intercept it with TLS (the context to use), or answer it.
TunnelPolicy = Callable[[Request], "ssl.SSLContext | Response"]


class Http1Responder:
    """An endpoint's HTTP/1 answers (an ``accepted.Responder``). ``h2``: how it answers
    HTTP/2, when it does; ``tunnels``: what it does with a CONNECT, when it intercepts them
    (the MITM)."""

    def __init__(
        self,
        answering: Answering,
        *,
        h2: H2Answering | None,
        tunnels: TunnelPolicy | None,
        request_timeout: float | None,
    ) -> None:
        self._answering = answering
        self._h2 = h2
        self._h2c = h2 is not None and h2.h2c
        self._tunnels = tunnels
        # What the poll thread leaves to a thread before it looks for a handler (None: none).
        self._unusual: Callable[[Request], bool] | None = None
        if tunnels is not None or self._h2c:
            self._unusual = self._is_unusual
        self._request_timeout = request_timeout
        self._endpoint = answering.endpoint
        self._arrive = answering.arrive
        self._run_handler = answering.run_handler
        self._settled = answering.settled
        self._handler_for = answering.handler_for
        # The poll thread's answers (an attribute, not a method that calls them: it is
        # called on every request).
        polled = PolledAnswers(answering, self._unusual)
        self.answer_polled = polled.answer
        self.answer_alone = polled.answer_alone

    def _is_unusual(self, request: Request) -> bool:
        """Whether a request the poll thread read goes to a thread before its handler is
        chosen: a CONNECT to an endpoint that intercepts tunnels, or an upgrade to h2c."""
        if self._tunnels is not None and request.method == "CONNECT":
            return True
        return self._h2c and asks_h2c(request)

    def serve(self, connection: Connection, first: tuple[Arrival, bytes] | None) -> None:
        if self._h2 is not None and self._h2.serve_h2(connection, first):
            return
        if first is not None:
            polled, _ = first
            carried, connection.carried_over = connection.carried_over, None
            if isinstance(carried, Carried):  # its handler ran on the poll thread
                if not self._finish_carried(connection, carried, keep_open=not polled.must_close):
                    return
            else:
                handling = self._arrive(connection, polled.request, polled.raw_head, polled.at)
                if not self._handle(connection, handling, polled):
                    return
        while not connection.stopping.is_set():
            try:
                arrival = connection.reader.read_head()  # a new reader once it turned to TLS
            except RequestRefused as refused:
                refuse(self._answering, connection, refused)
                return
            except CutShort as cut:
                cut_short(self._answering, connection, cut, self._request_timeout)
                return
            if arrival is None:
                connection.record.closed("client")
                return
            if not self._exchange(connection, arrival):
                return

    def report(self, error: BaseException) -> None:
        self._answering.report_error(error)

    def _finish_carried(self, connection: Connection, carried: Carried, *, keep_open: bool) -> bool:
        """Carry out, on the connection's thread, the fault or upgrade a non-blocking handler
        returned on the poll thread; whether the connection goes on."""
        handling, context = carried.handling, carried.context
        for head in carried.interim_heads:
            connection.stream.write(head)
        context._on_poll_thread = False  # on a thread of its own, a fault may wait
        context._send_interim = self._answering.interim_sender(connection, handling)
        return self._answer(
            connection, handling, keep_open=keep_open, ran=(context, carried.result)
        )

    # -- one request -------------------------------------------------------------------------

    def _exchange(self, connection: Connection, arrival: Arrival) -> bool:
        """Read the body of the request whose head arrived, and answer; whether to go on."""
        reader = connection.reader
        handling = self._arrive(connection, arrival.request, arrival.raw_head, arrival.at)
        if arrival.expects_continue:
            refusal = reader.too_large(arrival)
            if refusal is not None:  # refused before the client sends what it announced
                return refuse(self._answering, connection, refusal, handling)
            handler = self._handler_for(arrival.request)
            if takes_context(handler) and arrival.request.method != "CONNECT":
                return self._answer_awaiting_body(connection, handling, arrival, handler)
            self._answering.send_interim(connection, handling, CONTINUE)
        try:
            body = reader.read_body(arrival)
        except RequestRefused as refused:
            return refuse(self._answering, connection, refused, handling)
        except CutShort as cut:
            return cut_short(self._answering, connection, cut, self._request_timeout, handling)
        handling.request, handling.framed_body = with_body(arrival, body), body.framed
        return self._handle(connection, handling, arrival)

    def _answer_awaiting_body(
        self, connection: Connection, handling: Handling, arrival: Arrival, handler: Handler
    ) -> bool:
        """Answer a request that awaits ``100 Continue`` through a handler that may refuse
        its body (see :mod:`~pytest_deproxy.expecting`); whether the connection goes on."""
        context = self._context(connection, handling)
        body = AwaitedBody(connection.reader, arrival, handling, context)
        result = body.settle(self._run_watched(connection, body.request, context, handler))
        if body.failure is not None:  # the body was too large or cut short: answered so
            if isinstance(body.failure, RequestRefused):
                return refuse(self._answering, connection, body.failure, handling)
            return cut_short(
                self._answering, connection, body.failure, self._request_timeout, handling
            )
        keep_open = not (arrival.must_close or body.refused)
        return self._answer(connection, handling, keep_open=keep_open, ran=(context, result))

    def _run_watched(
        self, connection: Connection, request: Request, context: HandlerContext, handler: Handler
    ) -> Response | Fault | Takeover:
        """Run a handler that may block, noting meanwhile whether the client leaves."""
        connection.watch_hangup()
        try:
            return self._run_handler(request, context, handler)
        finally:
            connection.unwatch_hangup()

    def _handle(self, connection: Connection, handling: Handling, arrival: Arrival) -> bool:
        """Answer a request that arrived whole; whether the connection goes on."""
        if arrival.request.method == "CONNECT" and self._tunnels is not None:
            return self._open_tunnel(connection, handling)
        return self._answer(connection, handling, keep_open=not arrival.must_close)

    def _answer(
        self,
        connection: Connection,
        handling: Handling,
        *,
        keep_open: bool,
        ran: tuple[HandlerContext, Response | Fault | Takeover] | None = None,
    ) -> bool:
        """Run the handler (unless it ``ran`` already, on the poll thread) and answer."""
        request = handling.request
        if ran is None:
            context = self._context(connection, handling)
            result = self._run_watched(connection, request, context, self._handler_for(request))
        else:
            context, result = ran
        if connection.hung_up == "reset":  # nobody left to answer: the record says so
            handling.finish(None, "the client reset the connection while the handler ran")
            self._settled(handling)
            return False
        if isinstance(result, Fault):
            return self._commit_fault(connection, handling, context, result) and keep_open
        if isinstance(result, Takeover):
            return self._take_over(connection, handling, context, result)
        data, keep_alive = self._answering.respond(handling, result, context)
        if not (keep_alive and keep_open):  # noted first, as the handling is: see the module
            connection.record.closed("endpoint")
        connection.stream.write(data)
        return keep_alive and keep_open

    def _commit_fault(
        self, connection: Connection, handling: Handling, context: HandlerContext, fault: Fault
    ) -> bool:
        """Record what the fault will do, then do it; return whether the connection stays open."""
        request = handling.request
        context.chunked = context.chunked or fault.chunked
        sent = None if fault.response is None else as_sent(fault.response, request, context)
        head, body = (b"", b"") if sent is None else responding.wire_parts(sent, request)
        handling.finish(sent, fault.description)
        self._settled(handling)
        keeps = _carry_out(connection, context, fault.plan(sent, head, body))
        keeps = keeps and fault.completes and sent is not None
        keeps = keeps and sent is not None and wire.response_keeps_alive(sent, request)
        if not keeps:
            connection.record.closed("endpoint")
        return keeps

    def _take_over(
        self,
        connection: Connection,
        handling: Handling,
        context: HandlerContext,
        takeover: Takeover,
    ) -> bool:
        """Answer with the takeover's response (a 101), recorded first like any answer, then
        let it own the connection until it returns; the connection ends with it."""
        request = handling.request
        sent = as_sent(takeover.response, request, context)
        handling.finish(sent, takeover.description)
        self._settled(handling)
        connection.stream.write(b"".join(responding.wire_parts(sent, request)))
        early, connection.reader.pending = connection.reader.pending, b""
        stream = net.SharedStream(connection.stream)
        record = connection.record
        handler_error = self._answering.handler_error
        upgraded = Upgraded(
            stream, early, handling, connection.stopping, handler_error, record.closed
        )
        try:
            takeover.run(upgraded)
        except DeproxyError:
            stream.close()
            raise  # the connection broke: serving records it
        except Exception as exc:  # the takeover's own code failed: the test must hear of it
            handler_error(exc)
        # On the record before the FIN: a client that sees the end finds it there.
        record.closed("shutdown" if connection.stopping.is_set() else "endpoint")
        stream.close()
        return False

    def _open_tunnel(self, connection: Connection, handling: Handling) -> bool:
        """A CONNECT to an endpoint that intercepts tunnels (the MITM): open it, recorded."""
        assert self._tunnels is not None
        request = handling.request
        decision = self._tunnels(request)
        if isinstance(decision, Response):  # refused: answered like any response
            context = self._context(connection, handling)
            data, keep_alive = self._answering.respond(handling, decision, context)
            connection.stream.write(data)
            return keep_alive
        established = Response(200, "Connection established")
        handling.finish(established, f"opened a tunnel to {request.path}, intercepted with TLS")
        self._settled(handling)
        connection.stream.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        connection.tunnel = request.path
        connection.start_tls(decision)
        return True

    # -- the contexts handlers run with ------------------------------------------------------

    def _context(self, connection: Connection, handling: Handling) -> HandlerContext:
        """The context of a handler on the connection's own thread: it may wait."""
        return HandlerContext(
            self._endpoint,
            connection.id,
            tunnel=connection.tunnel,
            _stopping=connection.stopping,
            _send_interim=self._answering.interim_sender(connection, handling),
            _client_gone=lambda: connection.hung_up is not None,
        )


def _carry_out(connection: Connection, context: HandlerContext, steps: list[Step]) -> bool:
    """Do a fault's steps; whether the connection is still usable after them."""
    for step in steps:
        if isinstance(step, Send):
            connection.stream.write(step.data)
        elif isinstance(step, Pause):
            if not context.sleep(step.seconds):
                return False
        elif isinstance(step, Hang):
            context.sleep(None)
            return False
        elif isinstance(step, Reset):
            # Noted first: the peer that meets the reset finds the record says so.
            connection.record.closed("endpoint")
            connection.stream.abort()
            return False
        else:
            return False
    return True
