"""The poll thread's HTTP/1 answers: what an endpoint answers without a thread of its own.

Rules kept here: only what can never wait is answered here: a canned answer (a Response, or
``handlers.simple``), or a ``non_blocking`` handler's; anything else is left (``None``) to
the connection's own thread. A request joins the record when it has arrived, before its
handler runs, and its handling is finished before a byte of the answer is written. A handler
of the request alone runs with no context made; when its answer, or a canned one, equals the
last one made, the handling is finished as that answer (its Response as sent made when read)
and no new head is made. A request no chain can claim (no tracking id, its headers unread,
while no call is in flight) costs the owner no call. A read that is one whole request and
nothing more (a client that waits for each answer) is answered without the pipelining loop
(:meth:`PolledAnswers.answer_alone`), and such a GET answered as the last one was (the
commonest read under load) with no call but the record's and no Request made (its handling
makes it from the bytes when first read); recorded the same. A handler's
fault or upgrade is left, as a :class:`Carried`, for the connection's thread to carry out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from . import responding, wire
from .accepted import Connection, Handoff
from .answering import Answering, checked
from .faults import Fault, Takeover
from .handlers import Handler, HandlerContext, canned_answer, never_blocks, takes_context
from .models import Request, Response
from .record import Handling
from .request_reader import handed_over
from .responding import respond_again

_answered = Handling.answered
_arrived = Handling.arrived
_time = time.time


class PolledAnswers:
    """An endpoint's answers on its poll thread (``Http1Responder.answer_polled``).
    ``unusual`` says which requests go to a thread before a handler is looked for (a
    CONNECT the endpoint intercepts, an h2c upgrade), when any do."""

    def __init__(self, answering: Answering, unusual: Callable[[Request], bool] | None) -> None:
        self._unusual = unusual
        # The parts called on every request, looked up once.
        self._endpoint = answering.endpoint
        self._handler_for = answering.handler_for
        # The handler of any request no call claims, where the endpoint's owner picks it (an
        # endpoint with requests of its own to look at first, ``unusual``, looks each up).
        self._unclaimed = answering.unclaimed_handler if unusual is None else None
        self._arrive = answering.arrive
        self._record = answering.record
        self._in_flight = answering.in_flight  # (empty: no call in flight; see Answering)
        self._kept = answering.handlings
        self._run_handler = answering.run_handler
        self._settled = answering.settled
        self._handler_failed = answering.handler_failed
        # The last handler found to give a canned answer, and that answer: the same handler
        # again (the stock one, under load) is not asked what it is again.
        self._canned_handler: object = object()  # none yet
        self._canned: Response | None = None
        # The last handler found to be a non-blocking function of the request alone (no
        # context): the same one again is not asked what it is again.
        self._plain_handler: object = object()  # none yet

    def answer_alone(
        self, connection: Connection, data: bytes
    ) -> tuple[bytes, bool] | Handoff | None:
        """Answer ``data``, read with nothing before it, if it is one whole, ordinary request
        and nothing more (the commonest read: see ``RequestReader.take_alone``), as
        :meth:`answer` would, in fewer steps. The commonest answer under load (the last one
        made again, to an untracked GET/1.1 whose fields need no reading) is made with no
        Request (its handling makes it when first read) and no call but the record's.
        ``None``: ``data`` is pending in the connection's reader, each request in it to be
        answered through :meth:`answer`."""
        reader = connection.reader
        head = reader.glance(data)
        handler = None
        if type(head) is tuple and head[3] == len(data) and self._unclaimed is not None:
            # A head left unread has no tracking id: no call claims it, whatever is in flight.
            handler = self._unclaimed()
            made, canned = responding._last_made, self._canned
            if (
                # respond_again(canned, request, at), its commonest answer asked with no call
                handler is self._canned_handler
                and made is not None
                and canned is not None
                and canned.headers._items is made.source
                and canned.code is made.code
                and canned.message is made.message
                and canned.body is made.body
                and canned.raw_body is made.raw_body
                and canned._trailers is None
                and canned.http_version == "1.1"
                and made.since <= (at := _time()) < made.until
                and head[0] == "GET"
                and head[2] == "1.1"
            ):
                sent, answer, _ = made.again_get
                facts = connection.record.facts
                handling = _answered(
                    self._endpoint, None, connection.id, at, data, facts, sent, head
                )
                self._kept.append(handling)
                if self._in_flight:  # else in no chain (it has no tracking id): no call
                    self._record(handling)  # (filed done: the owner wakes whoever waits for it)
                return answer, True
        taken = reader.take_alone(data, head)
        if taken is None:
            return None
        request, raw_head, at = taken
        if self._unusual is not None and self._unusual(request):  # a CONNECT, an h2c upgrade
            return Handoff(b"", handed_over(request, raw_head, at))
        if handler is None:
            handler = self._handler_for(request)
        answered = self._answer(connection, request, raw_head, at, handler)
        if answered is None:  # it needs a thread
            return Handoff(b"", handed_over(request, raw_head, at))
        return answered

    def answer(
        self, connection: Connection, request: Request, raw_head: bytes, at: float
    ) -> tuple[bytes, bool] | None:
        """Answer a whole request (as ``RequestReader.read_buffered`` read it), if that can
        never wait: the bytes to send and whether to keep the connection; ``None``: it
        needs a thread."""
        if self._unusual is not None and self._unusual(request):  # a CONNECT, an h2c upgrade
            return None
        return self._answer(connection, request, raw_head, at, self._handler_for(request))

    def _answer(
        self, connection: Connection, request: Request, raw_head: bytes, at: float, handler: Handler
    ) -> tuple[bytes, bool] | None:
        if handler is self._canned_handler:  # the handler of a canned answer, as last time
            canned: Response | None = self._canned
        elif handler is self._plain_handler:  # a function of the request alone, as last time
            return self._answer_plain(connection, request, raw_head, at, handler)
        elif never_blocks(handler):
            canned = canned_answer(handler)
            if canned is not None:  # a Response, or ``simple``: what it is never changes
                self._canned_handler, self._canned = handler, canned
            elif not takes_context(handler):
                self._plain_handler = handler
                return self._answer_plain(connection, request, raw_head, at, handler)
        else:
            return None
        again = None if canned is None else respond_again(canned, request, at)
        if again is not None:
            # The last answer again: recorded as made, on arrival (no handler runs), before a
            # byte of it is written, with no call to the record but the owner's.
            facts = connection.record.facts
            handling = _answered(
                self._endpoint, request, connection.id, at, raw_head, facts, again[0]
            )
            self._kept.append(handling)
            if self._in_flight or request._unread_head is None:  # else in no chain: no call
                self._record(handling)  # (filed done: the owner wakes whoever waits for it)
            return again[1], again[2]
        handling = self._arrive(connection, request, raw_head, at)
        interim = b""
        if canned is not None:  # respond() copies it: the canned Response is never changed
            sent, data, keep_alive = responding.respond(canned, request)
        else:
            heads: list[bytes] = []
            context = self.context(connection, handling, heads)
            result = self._run_handler(request, context, handler)
            if not isinstance(result, Response):  # a fault or an upgrade: a thread carries it out
                connection.carried_over = Carried(handling, context, result, heads)
                return None
            sent, data, keep_alive = responding.respond(
                result, request, defaults=context.send_default_headers, chunked=context.chunked
            )
            interim = b"".join(heads)
        handling.finish(sent)
        self._settled(handling)
        return (interim + data if interim else data), keep_alive

    def _answer_plain(
        self,
        connection: Connection,
        request: Request,
        raw_head: bytes,
        at: float,
        handler: Handler,
    ) -> tuple[bytes, bool] | None:
        """:meth:`answer` through a non-blocking handler of the request alone (a stock
        one, or a user's marked function): recorded on arrival, then the handler runs, with
        no context made; an answer equal to the last one made costs its record no Response
        as sent (made when read, as a canned answer's) and no new head."""
        handling = _arrived(
            self._endpoint, request, connection.id, at, raw_head, connection.record.facts, None
        )
        self._kept.append(handling)  # (as Answering.arrive files it)
        # With no call in flight, a request with no tracking id is in no chain: nobody can
        # wait for it there (no call to file it nowhere, none to say it is settled).
        in_chains = bool(self._in_flight) or request._unread_head is None
        if in_chains:
            self._record(handling)
        try:
            result = handler(request)  # type: ignore[operator]
            if type(result) is not Response:  # (a Response is what the handler gave: no check)
                result = checked(handler, result)
        except Exception as exc:  # reported (the test fails) and answered 500
            result = self._handler_failed(exc)
        if not isinstance(result, Response):  # a fault or an upgrade: a thread carries it out
            heads: list[bytes] = []
            context = self.context(connection, handling, heads)
            connection.carried_over = Carried(handling, context, result, heads)
            return None
        if again := respond_again(result, request, at):
            handling.finish_as(again[0])
            if in_chains:
                self._settled(handling)
            return again[1], again[2]
        sent, data, keep_alive = responding.respond(result, request)
        handling.finish(sent)
        if in_chains:
            self._settled(handling)
        return data, keep_alive

    def context(
        self, connection: Connection, handling: Handling, heads: list[bytes]
    ) -> HandlerContext:
        """The context of a non-blocking handler on the poll thread: it may not wait, and
        the interim responses it sends go out (in ``heads``) with its answer."""

        def send_interim(interim: Response) -> None:
            handling.interim_responses.append(interim)
            heads.append(wire.serialize_response_head(interim))

        return HandlerContext(
            self._endpoint,
            connection.id,
            tunnel=connection.tunnel,
            _stopping=connection.stopping,
            _send_interim=send_interim,
            _on_poll_thread=True,
        )


class Carried(NamedTuple):
    """A request whose non-blocking handler returned a fault or an upgrade on the poll thread."""

    handling: Handling
    context: HandlerContext
    result: Fault | Takeover
    interim_heads: list[bytes]
