"""Endpoints: threaded HTTP(S) servers that stand in for the servers behind a proxy.

Rules kept here: every thread is named, owned by its endpoint and joined by ``shutdown()``.
A handling is recorded *before* its response is written, so a client that has its answer
can rely on the record being complete. A failure on one connection is recorded on
``endpoint.errors`` and never stops the endpoint.
"""

from __future__ import annotations

import email.utils
import itertools
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from . import __version__, net, wire
from .errors import DeproxyError, DeproxyTimeout, HandlerError, NetworkError
from .faults import Fault, Hang, Pause, Reset, Send
from .handlers import Handler, HandlerContext, call_handler
from .models import TRACKING_HEADER, Handling, Request, Response
from .tls import CertificateAuthority

SERVER_NAME = f"pytest-deproxy/{__version__}"
_connection_ids = itertools.count(1)
JOIN_TIMEOUT = 5.0
TLS_HANDSHAKE_TIMEOUT = 10.0
DEFAULT_REQUEST_TIMEOUT = 30.0  # per read, once a request has begun (slowloris)


class HandlingRegistry(Protocol):
    """What an endpoint needs from its owner (a :class:`Deproxy`)."""

    @property
    def ca(self) -> CertificateAuthority: ...

    def handler_for(self, endpoint: Endpoint, request: Request) -> Handler: ...

    def record(self, handling: Handling) -> None: ...

    def report_error(self, error: BaseException) -> None: ...


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """The ``Date`` header value, formatted once a second rather than once a response."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


def add_default_headers(response: Response, request: Request, context: HandlerContext) -> Response:
    """A copy of ``response`` as it goes on the wire: defaults added where absent and allowed."""
    sent = response.copy()  # a canned Response is never changed by being sent
    headers = sent.headers
    if context.send_default_headers:
        if "Server" not in headers:
            headers._append("Server", SERVER_NAME)
        if "Date" not in headers:
            headers._append("Date", http_date())
        status = int(sent.code)
        framed = "Content-Length" in headers or "Transfer-Encoding" in headers
        if not framed and status >= 200 and status not in (204, 304):
            if context.chunked:
                headers._append("Transfer-Encoding", "chunked")
            else:
                headers._append("Content-Length", str(len(sent.raw_body)))
        # An HTTP/1.0 client assumes the server closes unless told otherwise.
        http10_keep_alive = request.http_version == "1.0" and wire.request_keeps_alive(request)
        if http10_keep_alive and "Connection" not in headers:
            headers._append("Connection", "keep-alive")
    tracking_id = request.headers.get(TRACKING_HEADER)
    if tracking_id is not None and TRACKING_HEADER not in headers:
        headers._append(TRACKING_HEADER, tracking_id)
    return sent


def error_response(status: int, reason: str) -> Response:
    return Response(
        status,
        headers={"Content-Type": "text/plain; charset=utf-8", "Connection": "close"},
        body=reason + "\n",
    )


class Session:
    """One accepted connection: its stream and reader, replaced when a tunnel turns to TLS."""

    def __init__(self, stream: net.Stream, connection_id: str) -> None:
        self.connection_id = connection_id
        self.tunnel: str | None = None
        self.timed_out = False  # set by the watchdog when a request stalled
        self.use(stream)

    def use(self, stream: net.Stream) -> None:
        self.stream = stream
        self.reader = wire.MessageReader(stream)


class Endpoint:
    """An HTTP(S) server on a local port that answers through handlers and records what it saw.

    Made by :meth:`Deproxy.add_endpoint`. ``handlings`` is every :class:`Handling` in order;
    ``errors`` lists failures on its connections (malformed requests, failed TLS handshakes).
    """

    def __init__(
        self,
        registry: HandlingRegistry,
        *,
        name: str,
        hostname: str = "127.0.0.1",
        port: int = 0,
        default_handler: Handler | None = None,
        tls: bool = False,
        request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
        keep_handlings: int | None = None,
    ) -> None:
        self.name = name
        self.request_timeout = request_timeout
        self.hostname = hostname
        self.default_handler = default_handler
        self.tls = tls
        self._registry = registry
        self._tls_context: ssl.SSLContext | None = (
            registry.ca.server_context("localhost", "127.0.0.1", hostname) if tls else None
        )
        self._lock = threading.Lock()
        # Long runs cap what is kept: the last `keep_handlings` (None keeps every one).
        self._handlings: deque[Handling] = deque(maxlen=keep_handlings)
        self._errors: list[DeproxyError] = []
        self._connections: dict[str, tuple[threading.Thread, Session | None]] = {}
        self._stopping = threading.Event()
        self._listener = net.listen(hostname, port)
        self.port: int = self._listener.getsockname()[1]
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"deproxy-{name}-accept", daemon=True
        )
        self._accept_thread.start()
        self._watchdog: threading.Thread | None = None
        if request_timeout is not None:
            self._watchdog = threading.Thread(
                target=self._watch_requests, name=f"deproxy-{name}-watchdog", daemon=True
            )
            self._watchdog.start()

    # -- public surface --------------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{net.format_address(self.hostname, self.port)}"

    @property
    def ca(self) -> CertificateAuthority:
        """The CA that signs this endpoint's certificate and that its ``route`` handlers trust."""
        return self._registry.ca

    @property
    def handlings(self) -> list[Handling]:
        """A snapshot of every handling this endpoint made, in order."""
        return list(self._handlings.copy())  # copy() holds the deque still while it copies

    @property
    def errors(self) -> list[DeproxyError]:
        """A snapshot of the failures seen on this endpoint's connections."""
        with self._lock:
            return list(self._errors)

    def shutdown(self) -> None:
        """Stop listening, close every connection and join every thread. Safe to call twice."""
        already_stopping = self._stopping.is_set()
        self._stopping.set()
        if not already_stopping:
            net.wake_listener(self._listener)  # a blocked accept() returns and sees _stopping
        for owned in (self._accept_thread, self._watchdog):
            if owned is not None and owned is not threading.current_thread():
                owned.join(JOIN_TIMEOUT)
        with self._lock:
            connections = list(self._connections.values())
        for _, session in connections:
            if session is not None:
                session.stream.shutdown()
        for thread, _ in connections:
            if thread is not threading.current_thread():
                thread.join(JOIN_TIMEOUT)
        self._listener.close()

    def __repr__(self) -> str:
        return f"<Endpoint {self.name} {self.url}>"

    # -- threads ---------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, peer = net.accept(self._listener)
            except OSError:
                continue  # the client gave up before we accepted
            if self._stopping.is_set():
                sock.close()  # the wake-up connection from shutdown()
                return
            connection_id = f"conn-{next(_connection_ids)}"
            thread = threading.Thread(
                target=self._serve_connection,
                args=(sock, peer, connection_id),
                name=f"deproxy-{self.name}-{connection_id}",
                daemon=True,
            )
            with self._lock:
                self._connections[connection_id] = (thread, None)
            thread.start()

    def _track_session(self, session: Session) -> None:
        with self._lock:
            thread, _ = self._connections[session.connection_id]
            self._connections[session.connection_id] = (thread, session)
        if self._stopping.is_set():  # shutdown() may have missed this connection
            session.stream.shutdown()

    def _watch_requests(self) -> None:
        """Stop requests that made no progress for ``request_timeout`` s (slowloris).

        The connection threads never set socket timeouts for this: a timeout costs a syscall
        on every read, and the GIL with it, where this costs one check every half second.
        """
        assert self.request_timeout is not None
        interval = min(0.5, self.request_timeout / 4)
        while not self._stopping.wait(interval):
            deadline = time.monotonic() - self.request_timeout
            with self._lock:
                sessions = [s for _, s in self._connections.values() if s is not None]
            for session in sessions:
                last = session.reader.last_progress
                if last is not None and last < deadline and not session.timed_out:
                    session.timed_out = True
                    session.stream.shutdown(reading_only=True)

    def _record_error(self, error: DeproxyError) -> None:
        with self._lock:
            self._errors.append(error)

    def _start_tls(self, session: Session, context: ssl.SSLContext) -> None:
        stream = session.stream
        stream.timeout = TLS_HANDSHAKE_TIMEOUT  # a stalled handshake must not hold a thread
        stream = stream.start_tls(context, server_side=True)
        stream.timeout = None
        session.use(stream)
        if self._stopping.is_set():
            stream.shutdown()

    def _serve_connection(self, sock: socket.socket, peer: str, connection_id: str) -> None:
        session = Session(net.Stream(sock, peer), connection_id)
        self._track_session(session)
        try:
            if self._tls_context is not None:
                self._start_tls(session, self._tls_context)
            while not self._stopping.is_set():
                try:
                    request = session.reader.read_request()
                except wire.MessageError as exc:
                    self._record_error(exc)
                    self._answer_malformed(session.stream, exc)
                    break
                except wire.PeerClosed as exc:
                    if exc.partial is not None:  # the chain shows how far the request came
                        size = len(exc.partial.raw_body)
                        action = f"the client closed the connection after {size} body bytes"
                        if session.timed_out:
                            action = f"the request stalled after {size} body bytes: 408 sent"
                        self._record(Handling(self, exc.partial, None, connection_id, action))
                    if not session.timed_out:
                        raise
                    self._answer_stalled(session)
                    break
                if request is None or not self._exchange(session, request):
                    break
        except NetworkError as exc:
            if not self._stopping.is_set():
                self._record_error(exc)
        except Exception as exc:  # a bug of ours: make it fail the test, not vanish in a thread
            self._registry.report_error(exc)
        finally:
            session.stream.close()
            with self._lock:
                self._connections.pop(connection_id, None)

    def _answer_stalled(self, session: Session) -> None:
        stalled = DeproxyTimeout(
            f"a request made no progress for {self.request_timeout} s; answered 408 and closed"
        )
        self._record_error(stalled)
        late = wire.MessageError(str(stalled), 408)
        self._answer_malformed(session.stream, late)

    def _answer_malformed(self, stream: net.Stream, error: wire.MessageError) -> None:
        response = error_response(error.status_hint, str(error))
        context = HandlerContext(self, "", _stopping=self._stopping)
        request = Request("GET", "/")
        sent = add_default_headers(response, request, context)
        stream.write(wire.serialize_response(sent, chunked=False, send_body=True))

    def _exchange(self, session: Session, request: Request) -> bool:
        """Answer one request; return whether the connection stays open."""
        context = HandlerContext(
            self, session.connection_id, tunnel=session.tunnel, _stopping=self._stopping
        )
        result = self._run_handler(request, context)
        if isinstance(result, Fault):
            return self._commit_fault(session, request, context, result)
        response = add_default_headers(result, request, context)
        self._record(Handling(self, request, response, session.connection_id))
        chunked = response.headers.has_token("Transfer-Encoding", "chunked")
        send_body = wire.response_has_body(int(response.code), request.method)
        session.stream.write(
            wire.serialize_response(response, chunked=chunked, send_body=send_body)
        )
        return wire.response_keeps_alive(response, request)

    def _commit_fault(
        self, session: Session, request: Request, context: HandlerContext, fault: Fault
    ) -> bool:
        """Record what the fault will do, then do it; return whether the connection stays open."""
        context.chunked = context.chunked or fault.chunked
        sent = add_default_headers(fault.response, request, context) if fault.response else None
        head, body = b"", b""
        if sent is not None:
            head = wire.serialize_response_head(sent)
            if wire.response_has_body(int(sent.code), request.method):
                chunked = sent.headers.has_token("Transfer-Encoding", "chunked")
                body = wire.frame_body(sent.raw_body, chunked=chunked)
        self._record(Handling(self, request, sent, session.connection_id, fault.description))
        for step in fault.plan(sent, head, body):
            if isinstance(step, Send):
                session.stream.write(step.data)
            elif isinstance(step, Pause):
                if not context.sleep(step.seconds):
                    return False
            elif isinstance(step, Hang):
                context.sleep(None)
                return False
            elif isinstance(step, Reset):
                session.stream.abort()
                return False
            else:
                return False
        return fault.completes and sent is not None and wire.response_keeps_alive(sent, request)

    def _handler_for(self, request: Request) -> Handler:
        return self._registry.handler_for(self, request)

    def _run_handler(self, request: Request, context: HandlerContext) -> Response | Fault:
        handler: Handler | Callable[..., Any] = self._handler_for(request)
        try:
            result = call_handler(handler, request, context)
            if not isinstance(result, (Response, Fault)):
                raise TypeError(
                    f"handler {getattr(handler, '__name__', handler)!r} returned "
                    f"{type(result).__name__}; a handler must return a Response (or a fault)"
                )
            return result
        except Exception as exc:
            error = HandlerError(self.name, exc)
            error.__cause__ = exc
            self._registry.report_error(error)
            context.send_default_headers = True
            context.chunked = False
            return error_response(
                500, f"the handler of endpoint {self.name!r} raised {type(exc).__name__}: {exc}"
            )

    def _record(self, handling: Handling) -> None:
        # No lock: deque appends are thread-safe, and a lock taken here on every request makes
        # the connection threads queue behind whichever one the GIL switched away from.
        self._handlings.append(handling)
        self._registry.record(handling)
