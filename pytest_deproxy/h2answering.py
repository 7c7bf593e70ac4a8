"""How an endpoint answers HTTP/2: what :class:`~pytest_deproxy.h2serve.H2Session` asks of
it, and the switch of a connection to HTTP/2.

Rules kept here: a connection is served as HTTP/2 when TLS chose ``h2`` by ALPN, or, on an
``http2="h2c"`` endpoint, when it begins with the prior-knowledge preface or its first
request asks ``Upgrade: h2c`` (a later request that asks is answered in HTTP/1.1). A stream
is recorded and answered with the same parts as an HTTP/1 request
(:mod:`~pytest_deproxy.answering`); a handler that would take the connection over is
answered 501, since a stream is not a connection. A canned answer (a Response, or
``handlers.simple``) is given as such, without calling its handler, as on the HTTP/1 poll
path; the session sends a copy of it, never it. A handler that never blocks but takes a
context runs on the stream's thread, with one; a fault it returns is carried out there too.

The h2 library (through :mod:`~pytest_deproxy.h2serve`) loads when the first endpoint that
speaks HTTP/2 is made, not with this module: an HTTP/1 endpoint, and :func:`asks_h2c` on the
poll thread, never need it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from . import responding
from .accepted import Connection
from .answering import Answering
from .errors import DeproxyError
from .faults import Fault, Takeover
from .handlers import Handler, HandlerContext, canned_answer, never_blocks, takes_context
from .models import Request, Response
from .record import Handling
from .request_reader import Arrival

if TYPE_CHECKING:
    from .h2serve import H2Session


class H2Answering:
    """An endpoint's answers on HTTP/2 streams (an ``h2serve.StreamResponder``)."""

    def __init__(self, answering: Answering, http2: bool | str) -> None:
        from . import h2serve  # the h2 library: loaded by the first endpoint that speaks HTTP/2

        self._session: type[H2Session] = h2serve.H2Session
        self._answering = answering
        self.name = answering.name
        # What a stream asks of the record is the endpoint's own answering, called straight
        # (one call a stream fewer each, on the connection's thread).
        self.arrive_stream: Callable[..., Handling] = answering.arrive
        self.arrive_answered: Callable[..., Handling] = answering.arrive_answered
        self._unclaimed = answering.unclaimed_handler  # None: each request's is looked up
        self.settle: Callable[[Handling], None] = answering.settled
        self.h2c = http2 == "h2c"  # also over cleartext, not only by ALPN over TLS
        # The last handler that gave a canned answer (handlers.canned_answer), and that answer.
        self._canned: tuple[Handler | None, Response] = (None, Response(200))

    def serve_h2(self, connection: Connection, first: tuple[Arrival, bytes] | None) -> bool:
        """Serve the connection as HTTP/2 if it is one (ALPN h2, the prior-knowledge
        preface, or ``Upgrade: h2c`` on its first request); whether it was."""
        tls = connection.record.tls
        if (tls is not None and tls.alpn == "h2") or (
            self.h2c and first is None and _begins_h2(connection)
        ):
            self._session(connection, self).serve()
            return True
        if not self.h2c or first is None:
            return False  # a later request asking Upgrade: h2c is answered in HTTP/1.1
        arrival, _ = first
        request = arrival.request
        if not asks_h2c(request):
            return False
        handling = self._answering.arrive(connection, request, arrival.raw_head, arrival.at)
        self._session(connection, self).serve(upgraded=handling)
        return True

    # -- what h2serve asks (arrive_stream and settle are the answering's own) ---------------

    def answer_now(self, handling: Handling) -> tuple[Response | None, Handler]:
        """A stream's handler, and its answer when the handler never waits (as for the poll
        fast path: a canned Response or a stock handler that only computes)."""
        request = handling.request
        handler = self._answering.handler_for(request)
        last = self._canned  # one tuple: connection threads read it as another replaces it
        if handler is last[0]:  # the handler of a canned answer, as last time
            return last[1], handler
        if not never_blocks(handler) or (callable(handler) and takes_context(handler)):
            return None, handler  # (one that takes a context gets it on the stream's thread)
        canned = canned_answer(handler)
        if canned is not None:  # a Response, or ``simple``: what it is never changes (the
            self._canned = (handler, canned)  # session sends a copy of it)
            return canned, handler
        try:  # The stock handlers that never block take no context: none is made for them.
            result = handler if isinstance(handler, Response) else handler(request)  # type: ignore[operator]
        except Exception as exc:
            self._answering.handler_error(exc)
            return self._answering.error_answer(exc), handler
        if isinstance(result, Response):
            return result, handler
        return None, _returning(result, handler)

    def canned_unclaimed(self) -> Response | None:
        """The canned answer of a request no call can claim (one with no tracking id), when
        its handler is the one last found to give it; ``None``: ask :meth:`answer_now`."""
        if self._unclaimed is None:
            return None
        handler, canned = self._canned
        return canned if self._unclaimed() is handler else None

    def awaits_body(self, handling: Handling) -> Handler | None:
        """The handler of a request that asks ``Expect: 100-continue``, when it may refuse
        the body (a function that takes a context, as on HTTP/1.1): it runs as the request's
        HEADERS arrive. ``None``: ``100 Continue`` goes out at once, and the handler runs
        when the request is whole."""
        handler = self._answering.handler_for(handling.request)
        return handler if callable(handler) and takes_context(handler) else None

    def run_stream_handler(
        self,
        connection: Connection,
        handling: Handling,
        handler: Handler,
        send_interim: Callable[[Response], None],
        client_gone: Callable[[], bool],
        awaited: tuple[Request, Callable[[HandlerContext], None]] | None = None,
    ) -> tuple[Response | Fault, HandlerContext]:
        """Run a stream's handler with a context of its own; with ``awaited``, on the
        request given (whose body is read when first asked for), after the function given
        has seen the context."""
        context = HandlerContext(
            self._answering.endpoint,
            connection.id,
            tunnel=connection.tunnel,
            _stopping=connection.stopping,
            _send_interim=send_interim,
            _client_gone=client_gone,
        )
        request = handling.request
        if awaited is not None:
            request, prepare = awaited
            prepare(context)
        result = self._answering.run_handler(request, context, handler)
        if isinstance(result, Takeover):  # an upgrade takes a whole HTTP/1 connection over
            return responding.error_response(
                501, "a handler that takes the connection over cannot answer an HTTP/2 stream"
            ), context
        return result, context

    def report(self, error: BaseException) -> None:
        self._answering.report_error(error)

    def record_error(self, error: DeproxyError) -> None:
        self._answering.record_error(error)


def _returning(result: object, handler: Handler) -> Handler:
    """A handler that gives ``result``, which ``handler`` (one that never blocks) returned
    already: a fault, carried out on the stream's thread as any handler's, or nonsense,
    reported there (in ``handler``'s name) as any handler's, without calling it twice."""

    def returned(request: Request, context: HandlerContext) -> object:
        return result

    returned.__name__ = getattr(handler, "__name__", repr(handler))
    return returned


def _begins_h2(connection: Connection) -> bool:
    """Whether what the client sent so far is the HTTP/2 preface, or its start."""
    from .h2frames import PREFACE  # loaded already: only an h2c endpoint asks

    reader = connection.reader
    while len(reader.pending) < len(PREFACE) and PREFACE.startswith(reader.pending):
        data = connection.stream.read()
        if not data:
            break
        reader.pending += data
    return reader.pending.startswith(PREFACE)


def asks_h2c(request: Request) -> bool:
    """Whether the request asks to switch its connection to HTTP/2 (``Upgrade: h2c``)."""
    return request.headers.has_token("Upgrade", "h2c") and "HTTP2-Settings" in request.headers
