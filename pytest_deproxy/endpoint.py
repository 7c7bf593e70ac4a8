"""Endpoints: HTTP(S) servers that stand in for the servers behind a proxy.

Rules kept here: every request that reaches an endpoint is recorded, the ones it refuses and
the ones cut short included. A request joins the record when its head has arrived, before
its handler runs; its handling is finished (the response as sent, or what was done instead)
before a byte of the answer is written, so a client that has its answer finds the record
complete (the connection's record too: closed, when the endpoint closes after that answer).
How connections are accepted and served (threads, the poll thread, shutdown) is
:mod:`~pytest_deproxy.serving`'s; this module is the responder it serves them with.

A handler that returns a :class:`~pytest_deproxy.faults.Takeover` (a WebSocket, a tunnel)
is answered with its 101, recorded first as any answer, and the connection is then its own,
on the connection's thread, until it returns; the endpoint then closes it.
"""

from __future__ import annotations

import itertools
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple, Protocol

from . import net, responding, wire
from .connections import ConnectionRecord
from .errors import DeproxyError, DeproxyTimeout, HandlerError
from .faults import Fault, Hang, Pause, Reset, Send, Step, Takeover, Upgraded
from .h2frames import PREFACE
from .h2serve import H2Session
from .handlers import (
    Handler,
    HandlerContext,
    call_handler,
    canned_answer,
    is_stock,
    never_blocks,
)
from .models import Request, Response
from .record import DEFAULT_KEEP, Handling, check_keep
from .request_reader import Arrival, CutShort, RequestRefused, with_body
from .serving import Connection, Server
from .tls import CertificateAuthority

DEFAULT_REQUEST_TIMEOUT = 30.0  # per read, once a request has begun (slowloris)
# A request body is held in memory whole. 256 MiB is more than upload tests through a proxy
# send (proxies' own limits are far lower: nginx's client_max_body_size is 1 MiB), and a
# body that never ends then costs at most about twice that while it is read, not all the
# memory of a CI runner.
DEFAULT_MAX_BODY_SIZE = 256 * 1024 * 1024
LINGER_SECONDS = 5.0  # after a refusal, how long what the client still sends is read and dropped
CONTINUE = Response(100)
CLIENT_CERTS = (None, "optional", "required")
HTTP2 = (False, True, "h2c")

# What to do with a CONNECT: intercept it with TLS (the context to use), or answer it.
TunnelPolicy = Callable[[Request], "ssl.SSLContext | Response"]


class EndpointOwner(Protocol):
    """What an endpoint needs from its owner (a :class:`Deproxy`)."""

    @property
    def ca(self) -> CertificateAuthority: ...

    def handler_for(self, endpoint: Endpoint, request: Request) -> Handler: ...

    def record(self, handling: Handling) -> None: ...

    def settled(self, handling: Handling) -> None: ...

    def report_error(self, error: BaseException) -> None: ...

    def new_connection_id(self) -> str: ...


def _check_options(
    max_body_size: object, proxy_protocol: object, client_certs: object, tls: bool
) -> None:
    if max_body_size is not None and (
        not isinstance(max_body_size, int) or isinstance(max_body_size, bool)
    ):
        raise TypeError(
            f"max_body_size is a number of bytes (an int) or None for no limit, "
            f"not {type(max_body_size).__name__}"
        )
    if isinstance(max_body_size, int) and max_body_size < 0:
        raise ValueError(f"max_body_size is a number of bytes >= 0, got {max_body_size}")
    if proxy_protocol not in (False, True, "optional"):
        raise ValueError(f"proxy_protocol is True, 'optional' or False, not {proxy_protocol!r}")
    if client_certs not in CLIENT_CERTS:
        raise ValueError(f"client_certs is 'optional', 'required' or None, not {client_certs!r}")
    if client_certs is not None and not tls:
        raise ValueError("client_certs asks for TLS client certificates: add tls=True")


class Endpoint:
    """An HTTP(S) server on a local port that answers through handlers and records what it saw.

    Made by :meth:`Deproxy.add_endpoint`. ``handlings`` is every :class:`Handling` in order
    of arrival, ``connections`` every :class:`ConnectionRecord` (the latest
    ``keep_handlings`` of each, 10,000 by default; None keeps all); ``errors`` the failures on
    its connections (malformed requests, failed TLS handshakes). A request body over
    ``max_body_size`` bytes (None: no limit) is answered 413 unread, and the connection
    closed; that handling is recorded with the head, an empty body and the 413.
    """

    def __init__(
        self,
        owner: EndpointOwner,
        *,
        name: str,
        hostname: str = "127.0.0.1",
        port: int = 0,
        default_handler: Handler | None = None,
        tls: bool = False,
        request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
        keep_handlings: int | None = DEFAULT_KEEP,
        max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
        proxy_protocol: bool | str = False,
        client_certs: str | None = None,
        handler_for: Callable[[Request], Handler] | None = None,
        tunnels: TunnelPolicy | None = None,
        http2: bool | str = False,
    ) -> None:
        _check_options(max_body_size, proxy_protocol, client_certs, tls)
        if http2 not in HTTP2:
            raise ValueError(
                f"http2 is True (ALPN h2, with tls=True), 'h2c' or False, not {http2!r}"
            )
        if http2 is True and not tls:
            raise ValueError("http2=True offers h2 over TLS ALPN: add tls=True, or use http2='h2c'")
        self.http2 = http2
        self.name = name
        self.hostname = hostname
        self.default_handler = default_handler
        self.tls = tls
        self._owner = owner
        self._fixed_handler_for = handler_for  # the MITM's: its dispatcher answers everything
        self._tunnels = tunnels
        # The last `keep_handlings` handlings are kept (None keeps every one), and as many
        # connection records, each with at most as many handlings.
        check_keep(keep_handlings, "keep_handlings")
        self._handlings: deque[Handling] = deque(maxlen=keep_handlings)
        self._arrival_numbers = itertools.count(1)
        context = None
        if tls:
            hosts = ("localhost", "127.0.0.1", hostname)
            alpn = ("h2", "http/1.1") if http2 else ()
            context = owner.ca.server_context(*hosts, client_certs=client_certs, alpn=alpn)
        self._server = Server(
            self,
            name=name,
            hostname=hostname,
            port=port,
            tls_context=context,
            request_timeout=request_timeout,
            max_body_size=max_body_size,
            new_connection_id=owner.new_connection_id,
            proxy_protocol=proxy_protocol,
            keep_connections=keep_handlings,
            connection_handlings=keep_handlings,
        )
        self.port = self._server.port

    def start(self) -> Endpoint:
        """Start serving (the port is already taken); returns the endpoint."""
        self._server.start()
        return self

    # -- public surface --------------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{net.format_address(self.hostname, self.port)}"

    @property
    def address(self) -> tuple[str, int]:
        """The address the endpoint's socket is bound to: ``(host, port)``."""
        return self._server.address

    @property
    def ca(self) -> CertificateAuthority:
        """The CA that signs this endpoint's certificate and that its ``route`` handlers trust."""
        return self._owner.ca

    @property
    def handlings(self) -> list[Handling]:
        """A snapshot of the handlings this endpoint made, in order of arrival (the latest
        ``keep_handlings``: 10,000 by default)."""
        return list(self._handlings.copy())  # copy() holds the deque still while it copies

    @property
    def connections(self) -> list[ConnectionRecord]:
        """A snapshot of the records of every connection this endpoint accepted, in order."""
        return self._server.connections

    @property
    def errors(self) -> list[DeproxyError]:
        """A snapshot of the failures seen on this endpoint's connections."""
        return self._server.errors

    @property
    def request_timeout(self) -> float | None:
        return self._server.request_timeout

    def begin_shutdown(self, deadline: float | None = None) -> None:
        """Stop accepting and wake every thread, without waiting (see :meth:`shutdown`)."""
        self._server.begin_shutdown(deadline)

    def shutdown(self) -> None:
        """Stop listening, close every connection and join every thread. Safe to call twice.

        A thread still running ``serving.JOIN_TIMEOUT`` s after shutdown began is left
        behind and reported to the owner, so the ``deproxy`` fixture fails the test.
        """
        self._server.shutdown()

    def __repr__(self) -> str:
        return f"<Endpoint {self.name} {self.url}>"

    # -- the responder: what serving asks ----------------------------------------------------

    def answer_polled(
        self, connection: Connection, arrival: Arrival, body: bytes
    ) -> tuple[bytes, bool] | None:
        request = arrival.request  # read whole: its body is in
        if request.method == "CONNECT" and self._tunnels is not None:
            return None
        if self.http2 == "h2c" and _asks_h2c(request):
            return None
        handler = self._handler_for(request)
        if not never_blocks(handler):
            return None
        handling = self._arrive(connection, request, arrival.raw_head, arrival.at)
        interim = b""
        canned = canned_answer(handler)
        if canned is not None and (again := responding.respond_again(canned, request)):
            made, data, keep_alive = again  # the last answer again: recorded as made
            handling.finish_as(made)
            self._owner.settled(handling)
            return data, keep_alive
        if canned is not None:  # respond() copies it: the canned Response is never changed
            sent, data, keep_alive = responding.respond(canned, request)
        elif is_stock(handler):  # these take no context: none is made for them
            sent, data, keep_alive = responding.respond(handler(request), request)  # type: ignore[operator]
        else:
            heads: list[bytes] = []
            context = self._polled_context(connection, handling, heads)
            result = self._run_handler(request, context, handler)
            if not isinstance(result, Response):  # a fault or an upgrade: a thread carries it out
                connection.carried_over = _Carried(handling, context, result, heads)
                return None
            sent, data, keep_alive = responding.respond(
                result, request, defaults=context.send_default_headers, chunked=context.chunked
            )
            interim = b"".join(heads)
        handling.finish(sent)
        self._owner.settled(handling)
        return (interim + data if interim else data), keep_alive

    def serve(self, connection: Connection, first: tuple[Arrival, bytes] | None) -> None:
        if self.http2 and self._serve_h2(connection, first):
            return
        if first is not None:
            polled, _ = first
            carried, connection.carried_over = connection.carried_over, None
            if isinstance(carried, _Carried):  # its handler ran on the poll thread
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
                self._refuse(connection, refused)
                return
            except CutShort as cut:
                self._cut_short(connection, cut)
                return
            if arrival is None:
                connection.record.closed("client")
                return
            if not self._exchange(connection, arrival):
                return

    def _finish_carried(
        self, connection: Connection, carried: _Carried, *, keep_open: bool
    ) -> bool:
        """Carry out, on the connection's thread, the fault or upgrade a non-blocking handler
        returned on the poll thread; whether the connection goes on."""
        handling, context = carried.handling, carried.context
        for head in carried.interim_heads:
            connection.stream.write(head)
        context._on_poll_thread = False  # on a thread of its own, a fault may wait
        context._send_interim = self._interim_sender(connection, handling)
        return self._answer(
            connection, handling, keep_open=keep_open, ran=(context, carried.result)
        )

    def report(self, error: BaseException) -> None:
        self._owner.report_error(error)

    # -- one request -------------------------------------------------------------------------

    def _exchange(self, connection: Connection, arrival: Arrival) -> bool:
        """Read the body of the request whose head arrived, and answer; whether to go on."""
        reader = connection.reader
        handling = self._arrive(connection, arrival.request, arrival.raw_head, arrival.at)
        if arrival.expects_continue:
            refusal = reader.too_large(arrival)
            if refusal is not None:  # refused before the client sends what it announced
                return self._refuse(connection, refusal, handling)
            self._send_interim(connection, handling, CONTINUE)
        try:
            body = reader.read_body(arrival)
        except RequestRefused as refused:
            return self._refuse(connection, refused, handling)
        except CutShort as cut:
            return self._cut_short(connection, cut, handling)
        handling.request, handling.framed_body = with_body(arrival, body), body.framed
        return self._handle(connection, handling, arrival)

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
            result = self._run_handler(request, context, self._handler_for(request))
        else:
            context, result = ran
        if isinstance(result, Fault):
            return self._commit_fault(connection, handling, context, result) and keep_open
        if isinstance(result, Takeover):
            return self._take_over(connection, handling, context, result)
        data, keep_alive = self._respond(handling, result, context)
        if not (keep_alive and keep_open):  # noted first, as the handling is: see the module
            connection.record.closed("endpoint")
        connection.stream.write(data)
        return keep_alive and keep_open

    def _respond(
        self, handling: Handling, response: Response, context: HandlerContext
    ) -> tuple[bytes, bool]:
        """Finish ``handling`` with ``response`` as it will be sent; its bytes, and whether
        the connection may carry another request."""
        sent, data, keep_alive = responding.respond(
            response,
            handling.request,
            defaults=context.send_default_headers,
            chunked=context.chunked,
        )
        handling.finish(sent)
        self._owner.settled(handling)
        return data, keep_alive

    def _commit_fault(
        self, connection: Connection, handling: Handling, context: HandlerContext, fault: Fault
    ) -> bool:
        """Record what the fault will do, then do it; return whether the connection stays open."""
        request = handling.request
        context.chunked = context.chunked or fault.chunked
        sent = None if fault.response is None else self._as_sent(fault.response, request, context)
        head, body = (b"", b"") if sent is None else responding.wire_parts(sent, request)
        handling.finish(sent, fault.description)
        self._owner.settled(handling)
        keeps = self._carry_out(connection, context, fault.plan(sent, head, body))
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
        sent = self._as_sent(takeover.response, request, context)
        handling.finish(sent, takeover.description)
        self._owner.settled(handling)
        connection.stream.write(b"".join(responding.wire_parts(sent, request)))
        early, connection.reader.pending = connection.reader.pending, b""
        stream = net.SharedStream(connection.stream)
        record = connection.record
        upgraded = Upgraded(
            stream, early, handling, connection.stopping, self._handler_error, record.closed
        )
        try:
            takeover.run(upgraded)
        except DeproxyError:
            stream.close()
            raise  # the connection broke: serving records it
        except Exception as exc:  # the takeover's own code failed: the test must hear of it
            self._handler_error(exc)
        # On the record before the FIN: a client that sees the end finds it there.
        record.closed("shutdown" if connection.stopping.is_set() else "endpoint")
        stream.close()
        return False

    def _handler_error(self, exc: BaseException) -> None:
        error = HandlerError(self.name, exc)
        error.__cause__ = exc
        self._owner.report_error(error)

    @staticmethod
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

    def _open_tunnel(self, connection: Connection, handling: Handling) -> bool:
        """A CONNECT to an endpoint that intercepts tunnels (the MITM): open it, recorded."""
        assert self._tunnels is not None
        request = handling.request
        decision = self._tunnels(request)
        if isinstance(decision, Response):  # refused: answered like any response
            context = self._context(connection, handling)
            data, keep_alive = self._respond(handling, decision, context)
            connection.stream.write(data)
            return keep_alive
        established = Response(200, "Connection established")
        handling.finish(established, f"opened a tunnel to {request.path}, intercepted with TLS")
        self._owner.settled(handling)
        connection.stream.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        connection.tunnel = request.path
        connection.start_tls(decision)
        return True

    # -- what cannot be answered ordinarily ------------------------------------------------

    def _refuse(
        self, connection: Connection, refused: RequestRefused, handling: Handling | None = None
    ) -> bool:
        """Answer a request the endpoint will not hand to a handler (400, 413, 431, 501,
        505), recorded with its reason, then close after draining what still comes."""
        handling = self._refreshed(connection, handling, refused.partial, refused.raw)
        self._server.record_error(refused)
        status = refused.status_hint
        sent = responding.refusal_response(status, str(refused), handling.request)
        handling.finish(sent, f"refused: {refused}; answered {status} and closed")
        self._owner.settled(handling)
        stream = connection.stream
        connection.record.closed("endpoint")
        stream.write(b"".join(responding.wire_parts(sent, handling.request)))
        self._linger(connection)
        return False

    def _cut_short(
        self, connection: Connection, cut: CutShort, handling: Handling | None = None
    ) -> bool:
        """Record a request the client cut short; answer 408 if the watchdog stopped it."""
        handling = self._refreshed(connection, handling, cut.partial, cut.raw)
        if not connection.timed_out:
            handling.finish(None, str(cut))
            self._owner.settled(handling)
            connection.record.closed("reset" if cut.reset else "client")
            return False
        size = len(handling.request.raw_body)
        stalled = DeproxyTimeout(
            f"a request made no progress for {self.request_timeout} s; answered 408 and closed"
        )
        self._server.record_error(stalled)
        sent = responding.refusal_response(408, str(stalled), handling.request)
        handling.finish(sent, f"the request stalled after {size} body bytes: 408 sent")
        self._owner.settled(handling)
        connection.record.closed("endpoint")
        connection.stream.write(b"".join(responding.wire_parts(sent, handling.request)))
        return False

    def _refreshed(
        self, connection: Connection, handling: Handling | None, request: Request, raw: bytes
    ) -> Handling:
        """The handling of a request as far as it came: the one that arrived, or a new one."""
        if handling is None:
            return self._arrive(connection, request, raw, time.time())
        handling.request = request
        handling.framed_body = raw[len(handling.raw_head) :]
        return handling

    def _linger(self, connection: Connection) -> None:
        """Read and drop what the client still sends for a while before closing, so that a
        client still sending gets to read the refusal rather than a reset."""
        stream = connection.stream
        stream.shutdown(writing_only=True)
        deadline = time.monotonic() + LINGER_SECONDS
        while (left := deadline - time.monotonic()) > 0 and not connection.stopping.is_set():
            stream.timeout = left
            try:
                if not stream.read():
                    break
            except DeproxyError:  # the client gave up first, or took too long: close anyway
                break

    # -- the parts -------------------------------------------------------------------------

    def _arrive(
        self,
        connection: Connection,
        request: Request,
        raw_head: bytes,
        at: float,
        stream_id: int | None = None,
    ) -> Handling:
        handling = Handling(
            self,
            request,
            connection.id,
            received_at=at,
            raw_head=raw_head,
            stream_id=stream_id,
            facts=connection.record.facts,  # not the record: it refers to its handlings
            arrival_number=next(self._arrival_numbers),
        )
        # No lock: deque appends are thread-safe, and a lock taken here on every request makes
        # the connection threads queue behind whichever one the GIL switched away from.
        kept = self._handlings
        kept.append(handling)
        connection.record.add_handling(handling, oldest_kept=kept[0] if kept else None)
        self._owner.record(handling)
        return handling

    def _send_interim(self, connection: Connection, handling: Handling, interim: Response) -> None:
        handling.interim_responses.append(interim)
        connection.stream.write(wire.serialize_response_head(interim))

    def _context(self, connection: Connection, handling: Handling) -> HandlerContext:
        return HandlerContext(
            self,
            connection.id,
            tunnel=connection.tunnel,
            _stopping=connection.stopping,
            _send_interim=self._interim_sender(connection, handling),
        )

    def _interim_sender(
        self, connection: Connection, handling: Handling
    ) -> Callable[[Response], None]:
        return lambda interim: self._send_interim(connection, handling, interim)

    def _polled_context(
        self, connection: Connection, handling: Handling, heads: list[bytes]
    ) -> HandlerContext:
        """The context of a non-blocking handler on the poll thread: it may not wait, and
        the interim responses it sends go out (in ``heads``) with its answer."""

        def send_interim(interim: Response) -> None:
            handling.interim_responses.append(interim)
            heads.append(wire.serialize_response_head(interim))

        return HandlerContext(
            self,
            connection.id,
            tunnel=connection.tunnel,
            _stopping=connection.stopping,
            _send_interim=send_interim,
            _on_poll_thread=True,
        )

    @staticmethod
    def _as_sent(response: Response, request: Request, context: HandlerContext) -> Response:
        return responding.as_sent(
            response, request, defaults=context.send_default_headers, chunked=context.chunked
        )

    def _handler_for(self, request: Request) -> Handler:
        if self._fixed_handler_for is not None:
            return self._fixed_handler_for(request)
        return self._owner.handler_for(self, request)

    def _run_handler(
        self, request: Request, context: HandlerContext, handler: Handler
    ) -> Response | Fault | Takeover:
        try:
            result = call_handler(handler, request, context)
            if not isinstance(result, (Response, Fault, Takeover)):
                raise TypeError(
                    f"handler {getattr(handler, '__name__', handler)!r} returned "
                    f"{type(result).__name__}; a handler must return a Response (or a fault)"
                )
            return result
        except Exception as exc:
            self._handler_error(exc)
            context.send_default_headers = True
            context.chunked = False
            return responding.error_response(
                500, f"the handler of endpoint {self.name!r} raised {type(exc).__name__}: {exc}"
            )

    # -- HTTP/2: what h2serve asks ---------------------------------------------------------

    def _serve_h2(self, connection: Connection, first: tuple[Arrival, bytes] | None) -> bool:
        """Serve the connection as HTTP/2 if it is one (ALPN h2, the prior-knowledge
        preface, or ``Upgrade: h2c`` on its first request); whether it was."""
        tls = connection.record.tls
        if (tls is not None and tls.alpn == "h2") or (
            self.http2 == "h2c" and first is None and _begins_h2(connection)
        ):
            H2Session(connection, self).serve()
            return True
        if self.http2 != "h2c" or first is None:
            return False  # a later request asking Upgrade: h2c is answered in HTTP/1.1
        arrival, _ = first
        request = arrival.request
        if not _asks_h2c(request):
            return False
        handling = self._arrive(connection, request, arrival.raw_head, arrival.at)
        H2Session(connection, self).serve(upgraded=handling)
        return True

    def arrive_stream(
        self, connection: Connection, request: Request, raw_head: bytes, at: float, stream_id: int
    ) -> Handling:
        return self._arrive(connection, request, raw_head, at, stream_id)

    def answer_now(self, handling: Handling) -> tuple[Response | None, Handler]:
        """A stream's handler, and its answer when the handler never waits (as for the poll
        fast path: a canned Response or a stock handler that only computes)."""
        request = handling.request
        handler = self._handler_for(request)
        if not never_blocks(handler):
            return None, handler
        try:  # The stock handlers that never block take no context: none is made for them.
            return (handler if isinstance(handler, Response) else handler(request)), handler  # type: ignore[operator]
        except Exception as exc:
            self._handler_error(exc)
            return responding.error_response(
                500, f"the handler of endpoint {self.name!r} raised {type(exc).__name__}: {exc}"
            ), handler

    def run_stream_handler(
        self,
        connection: Connection,
        handling: Handling,
        handler: Handler,
        send_interim: Callable[[Response], None],
    ) -> tuple[Response | Fault, HandlerContext]:
        context = HandlerContext(
            self,
            connection.id,
            tunnel=connection.tunnel,
            _stopping=connection.stopping,
            _send_interim=send_interim,
        )
        result = self._run_handler(handling.request, context, handler)
        if isinstance(result, Takeover):  # an upgrade takes a whole HTTP/1 connection over
            return responding.error_response(
                501, "a handler that takes the connection over cannot answer an HTTP/2 stream"
            ), context
        return result, context

    def settle(self, handling: Handling) -> None:
        self._owner.settled(handling)

    def record_error(self, error: DeproxyError) -> None:
        self._server.record_error(error)


class _Carried(NamedTuple):
    """A request whose non-blocking handler returned a fault or an upgrade on the poll thread."""

    handling: Handling
    context: HandlerContext
    result: Fault | Takeover
    interim_heads: list[bytes]


def _begins_h2(connection: Connection) -> bool:
    """Whether what the client sent so far is the HTTP/2 preface, or its start."""
    reader = connection.reader
    while len(reader.pending) < len(PREFACE) and PREFACE.startswith(reader.pending):
        data = connection.stream.read()
        if not data:
            break
        reader.pending += data
    return reader.pending.startswith(PREFACE)


def _asks_h2c(request: Request) -> bool:
    return request.headers.has_token("Upgrade", "h2c") and "HTTP2-Settings" in request.headers
