"""The parts of answering a request that HTTP/1 and HTTP/2 share: recording its arrival,
choosing and running its handler, and finishing its handling.

Rules kept here: a request joins the record (its endpoint's handlings, its connection's
record, the owner's chains) when its head has arrived, before its handler runs. A handler
that raises, or returns what is not an answer, is reported to the owner, so the test fails,
and answered 500. :meth:`Answering.respond` finishes a handling, and tells the owner, before
its caller writes a byte of the answer. A request answered as it arrives with an answer made
before (no handler runs: ``Http1Responder.answer_polled``) joins the record finished, in the
owner's one ``record`` call, which wakes whoever waits for it; and a request no chain can
claim (no tracking id, its headers unread, while no call is in flight: the owner's
``in_flight_now`` says so at a glance) is kept by its endpoint with no call to the owner at
all: so the poll thread's commonest request costs the record no call. A connection's
record reads its handlings from the endpoint's: a request is kept once, not once more per
connection.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection

from . import responding, wire
from .accepted import Connection
from .errors import DeproxyError, HandlerError
from .faults import Fault, Takeover
from .handlers import Handler, HandlerContext, ServingEndpoint, call_handler
from .models import Request, Response
from .record import Handling, SentLater


class Answering:
    """What an endpoint's protocols answer with: made by the endpoint, one per endpoint.

    ``handler_for`` picks a request's handler; ``unclaimed_handler`` (where there is one)
    is what it picks for a request no call claims, as one with no tracking id (a head left
    unread) never is, asked with no Request. ``record``, ``settled`` and ``report_error``
    are the owner's (a request arrived, its handling is finished, a handler failed);
    ``record_error`` files a failure on the endpoint's connections. ``in_flight`` is the
    owner's calls in flight, as they change (empty: none; no chain can claim a request with
    no tracking id then, and ``record`` is not called for one known to carry none).
    """

    def __init__(
        self,
        endpoint: ServingEndpoint,
        *,
        name: str,
        keep_handlings: int | None,
        handler_for: Callable[[Request], Handler],
        record: Callable[[Handling], None],
        settled: Callable[[Handling], None],
        report_error: Callable[[BaseException], None],
        record_error: Callable[[DeproxyError], None],
        in_flight: Collection[object],
        unclaimed_handler: Callable[[], Handler] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.name = name
        self.handler_for = handler_for
        self.unclaimed_handler = unclaimed_handler
        self.settled = settled
        self.report_error = report_error
        self.record_error = record_error
        self.record = record
        self.in_flight = in_flight
        # The last `keep_handlings` handlings are kept (None keeps every one).
        self.handlings: deque[Handling] = deque(maxlen=keep_handlings)

    def arrive(
        self,
        connection: Connection,
        request: Request,
        raw_head: bytes,
        at: float,
        stream_id: int | None = None,
    ) -> Handling:
        """Record a request whose head arrived: its handling, on every record it belongs to."""
        record = connection.record
        handling = Handling.arrived(
            self.endpoint,
            request,
            connection.id,
            at,
            raw_head,
            record.facts,  # not the record: it refers to the endpoint's handlings
            stream_id,
        )
        # No lock: deque appends are thread-safe, and a lock taken here on every request makes
        # the connection threads queue behind whichever one the GIL switched away from.
        self.handlings.append(handling)
        if self.in_flight or request._unread_head is None:  # else in no chain: no call
            self.record(handling)
        return handling

    def arrive_answered(
        self,
        connection: Connection,
        request: Request,
        raw_head: bytes,
        at: float,
        made: SentLater,
        stream_id: int | None = None,
    ) -> Handling:
        """Record a request with no tracking id answered as it arrived with an answer made
        before (``Handling.answered``): filed done, so no :attr:`settled` follows, and in no
        chain unless a call is in flight (then an orphan of each)."""
        handling = Handling.answered(
            self.endpoint,
            request,
            connection.id,
            at,
            raw_head,
            connection.record.facts,
            made,
            None,
            stream_id,
        )
        self.handlings.append(handling)
        if self.in_flight:
            self.record(handling)
        return handling

    def run_handler(
        self, request: Request, context: HandlerContext | None, handler: Handler
    ) -> Response | Fault | Takeover:
        """The handler's answer; a 500 (reported) when it raises or answers nonsense. With no
        ``context``, ``handler`` is a function of the request alone (``takes_context`` said)."""
        try:
            if context is None:
                result = handler(request)  # type: ignore[operator]
            else:
                result = call_handler(handler, request, context)
            return checked(handler, result)
        except Exception as exc:
            if context is not None:
                context.send_default_headers = True
                context.chunked = False
            return self.handler_failed(exc)

    def handler_failed(self, exc: Exception) -> Response:
        """Report what a handler raised (or the nonsense it returned, ``checked`` said so),
        and answer with the 500 it comes to."""
        self.handler_error(exc)
        return self.error_answer(exc)

    def error_answer(self, exc: Exception) -> Response:
        """The 500 that answers a request whose handler raised ``exc``."""
        return responding.error_response(
            500, f"the handler of endpoint {self.name!r} raised {type(exc).__name__}: {exc}"
        )

    def handler_error(self, exc: BaseException) -> None:
        """Report what a handler (or a takeover's code) raised: the test must hear of it."""
        error = HandlerError(self.name, exc)
        error.__cause__ = exc
        self.report_error(error)

    def respond(
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
        self.settled(handling)
        return data, keep_alive

    def send_interim(self, connection: Connection, handling: Handling, interim: Response) -> None:
        """Write an interim (1xx) response now, on the record first."""
        handling.interim_responses.append(interim)
        connection.stream.write(wire.serialize_response_head(interim))

    def interim_sender(
        self, connection: Connection, handling: Handling
    ) -> Callable[[Response], None]:
        return lambda interim: self.send_interim(connection, handling, interim)


def checked(handler: Handler, result: object) -> Response | Fault | Takeover:
    """``result``, if it is an answer a handler may give; raises ``TypeError`` if not."""
    if not isinstance(result, (Response, Fault, Takeover)):
        raise TypeError(
            f"handler {getattr(handler, '__name__', handler)!r} returned "
            f"{type(result).__name__}; a handler must return a Response (or a fault)"
        )
    return result


def as_sent(response: Response, request: Request, context: HandlerContext) -> Response:
    """``response`` as it will be sent, with the defaults and framing ``context`` asks for."""
    return responding.as_sent(
        response, request, defaults=context.send_default_headers, chunked=context.chunked
    )
