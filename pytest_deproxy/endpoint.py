"""Endpoints: HTTP(S) servers that stand in for the servers behind a proxy.

Rule kept here: a handling is recorded *before* its response is written, so a client that
has its answer can rely on the record being complete. How connections are accepted and
served (threads, the poll thread, shutdown) is :mod:`pytest_deproxy.serving`'s; what to
answer, and what is recorded, is decided here.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from . import net, responding, wire
from .errors import HandlerError
from .faults import Fault, Hang, Pause, Reset, Send
from .handlers import Handler, HandlerContext, call_handler
from .models import Request, Response
from .record import Handling
from .serving import ConnectionServer, Session
from .tls import CertificateAuthority

DEFAULT_REQUEST_TIMEOUT = 30.0  # per read, once a request has begun (slowloris)
# A request body is held in memory whole. 256 MiB is more than upload tests through a proxy
# send (proxies' own limits are far lower: nginx's client_max_body_size is 1 MiB), and a
# body that never ends then costs at most about twice that while it is read, not all the
# memory of a CI runner.
DEFAULT_MAX_BODY_SIZE = 256 * 1024 * 1024


class HandlingRegistry(Protocol):
    """What an endpoint needs from its owner (a :class:`Deproxy`)."""

    @property
    def ca(self) -> CertificateAuthority: ...

    def handler_for(self, endpoint: Endpoint, request: Request) -> Handler: ...

    def record(self, handling: Handling) -> None: ...

    def report_error(self, error: BaseException) -> None: ...


class Endpoint(ConnectionServer):
    """An HTTP(S) server on a local port that answers through handlers and records what it saw.

    Made by :meth:`Deproxy.add_endpoint`. ``handlings`` is every :class:`Handling` in order;
    ``errors`` lists failures on its connections (malformed requests, failed TLS handshakes).
    A request body over ``max_body_size`` bytes (None: no limit) is answered 413 unread, and
    the connection closed; that handling is recorded with the head, an empty body and the 413.
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
        max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        if max_body_size is not None and (
            not isinstance(max_body_size, int) or isinstance(max_body_size, bool)
        ):
            raise TypeError(
                f"max_body_size is a number of bytes (an int) or None for no limit, "
                f"not {type(max_body_size).__name__}"
            )
        if max_body_size is not None and max_body_size < 0:
            raise ValueError(f"max_body_size is a number of bytes >= 0, got {max_body_size}")
        self.default_handler = default_handler
        self.tls = tls
        self._registry = registry
        # Long runs cap what is kept: the last `keep_handlings` (None keeps every one).
        self._handlings: deque[Handling] = deque(maxlen=keep_handlings)
        super().__init__(
            name=name,
            hostname=hostname,
            port=port,
            tls_context=(
                registry.ca.server_context("localhost", "127.0.0.1", hostname) if tls else None
            ),
            request_timeout=request_timeout,
            max_body_size=max_body_size,
        )

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

    def __repr__(self) -> str:
        return f"<Endpoint {self.name} {self.url}>"

    # -- answering: the hooks ConnectionServer calls ---------------------------------------

    def _exchange(self, session: Session, request: Request) -> bool:
        """Answer one request; return whether the connection stays open."""
        context = self._context_for(session)
        result = self._run_handler(request, context, self._handler_for(request))
        if isinstance(result, Fault):
            return self._commit_fault(session, request, context, result)
        data, keep_alive = self._respond(session, request, result, context)
        session.stream.write(data)
        return keep_alive

    def _answer(self, session: Session, request: Request, handler: Handler) -> tuple[bytes, bool]:
        """What a handler that never blocks answers: the bytes, and whether to keep alive."""
        context = self._context_for(session)
        response = self._run_handler(request, context, handler)
        assert isinstance(response, Response)  # handlers.never_blocks returns no fault
        return self._respond(session, request, response, context)

    def _respond(
        self, session: Session, request: Request, response: Response, context: HandlerContext
    ) -> tuple[bytes, bool]:
        """Record ``response`` as it will be sent; its bytes, and whether to keep alive."""
        sent = self._as_sent(response, request, context)
        self._record(Handling(self, request, sent, session.connection_id))
        head, body = responding.wire_parts(sent, request)
        return head + body, wire.response_keeps_alive(sent, request)

    def _commit_fault(
        self, session: Session, request: Request, context: HandlerContext, fault: Fault
    ) -> bool:
        """Record what the fault will do, then do it; return whether the connection stays open."""
        context.chunked = context.chunked or fault.chunked
        sent = None if fault.response is None else self._as_sent(fault.response, request, context)
        head, body = (b"", b"") if sent is None else responding.wire_parts(sent, request)
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

    def _context_for(self, session: Session) -> HandlerContext:
        return HandlerContext(
            self, session.connection_id, tunnel=session.tunnel, _stopping=self._stopping
        )

    @staticmethod
    def _as_sent(response: Response, request: Request, context: HandlerContext) -> Response:
        return responding.as_sent(
            response, request, defaults=context.send_default_headers, chunked=context.chunked
        )

    def _handler_for(self, request: Request) -> Handler:
        return self._registry.handler_for(self, request)

    def _run_handler(
        self, request: Request, context: HandlerContext, handler: Handler
    ) -> Response | Fault:
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
            return responding.error_response(
                500, f"the handler of endpoint {self.name!r} raised {type(exc).__name__}: {exc}"
            )

    def _record_unanswered(
        self, session: Session, request: Request, action: str, response: Response | None = None
    ) -> None:
        self._record(Handling(self, request, response, session.connection_id, action))

    def _report(self, error: BaseException) -> None:
        self._registry.report_error(error)

    def _record(self, handling: Handling) -> None:
        # No lock: deque appends are thread-safe, and a lock taken here on every request makes
        # the connection threads queue behind whichever one the GIL switched away from.
        self._handlings.append(handling)
        self._registry.record(handling)
