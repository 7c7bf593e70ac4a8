"""When an HTTP/1.1 endpoint answers ``Expect: 100-continue``: before the handler runs, or
as the handler decides (``context.send_continue``).

A handler that takes a context may refuse the body a client only announced: it sets
``context.send_continue = False`` and answers (a 413 or a 417, say) without reading it. So
for such a handler the body is read when it is first needed, and ``100 Continue`` goes out
just before, unless the handler said not to. It is needed when the handler reads
``request.body`` (or ``raw_body``, or the trailers), when it waits (``context.sleep``), and
when it returns: a handler that never looks still sees the exchange it always did.

Rules kept here: the record holds what crossed the wire. A body the handler read is on the
handling's request; a body it refused is not (the request is the head alone), and the
endpoint closes the connection after its answer, saying so with ``Connection: close``,
since whatever the client sends next may be that body. A body that could not be read (too
large, cut short) is answered as any such request, whatever the handler returned.
"""

from __future__ import annotations

from .awaiting import RequestAwaitingBody
from .faults import Fault, Takeover
from .handlers import HandlerContext
from .models import Request, Response
from .record import Handling
from .request_reader import Arrival, CutShort, RequestReader, RequestRefused, with_body

CONTINUE = Response(100)


class AwaitedBody:
    """The body of one ``Expect: 100-continue`` request, read at most once, when first
    needed; ``send_continue`` says whether ``100 Continue`` goes out first."""

    def __init__(
        self,
        reader: RequestReader,
        arrival: Arrival,
        handling: Handling,
        context: HandlerContext,
    ) -> None:
        self._reader, self._arrival, self._handling = reader, arrival, handling
        self._context = context
        self.read_whole: Request | None = None  # the request with its body, once read
        self.failure: RequestRefused | CutShort | None = None
        context._before_wait = self.read

    @property
    def request(self) -> Request:
        """What the handler is given: the request, its body read when it asks for it."""
        return RequestAwaitingBody(self._arrival.request, self.read)

    def read(self) -> Request:
        """The request with its body: read now (after ``100 Continue`` unless the handler
        refused it) if it was not yet; as far as it came if reading it failed."""
        if self.read_whole is not None:
            return self.read_whole
        if self.failure is not None:
            return self.failure.partial
        if self._context.send_continue:
            self._context.send_interim(CONTINUE)
        try:
            body = self._reader.read_body(self._arrival)
        except (RequestRefused, CutShort) as failure:
            self.failure = failure
            return failure.partial
        self.read_whole = with_body(self._arrival, body)
        self._handling.request, self._handling.framed_body = self.read_whole, body.framed
        return self.read_whole

    def settle(self, result: Response | Fault | Takeover) -> Response | Fault | Takeover:
        """After the handler returned ``result``: read the body it did not refuse, and
        return what to answer with (``Connection: close`` added when it refused it)."""
        if self.read_whole is None and self.failure is None and self._context.send_continue:
            self.read()
        closing = self.refused and self._context.send_default_headers
        if closing and isinstance(result, Response) and "Connection" not in result.headers:
            result = result.copy()
            result.headers._append("Connection", "close")
        return result

    @property
    def refused(self) -> bool:
        """Whether the handler answered without the body (the connection then closes)."""
        return self.read_whole is None and self.failure is None
