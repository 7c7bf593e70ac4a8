"""The record of traffic: what reached endpoints (Handling), what one call caused
(MessageChain), the WebSocket frames that crossed an upgraded connection (Frame), and the
caps on what is kept. The registry that ties handlings to calls is ``registry.py``, one layer
up, and the chain's text diagram is drawn by ``diagram.py``, a reader one layer up too.

Rules kept here: pure bookkeeping, no socket and no thread. Everything it hands out is a
snapshot.

What is kept is bounded by default (``DEFAULT_KEEP``), and each record costs the cyclic garbage
collector few objects: lists a record rarely needs (orphans, interim responses, frames) are
made on first use, and so are the Response as sent of an answer made again (the stock answer
under load), from the immutable parts it was sent from, and the Request of a head only
glanced at (the stock request under load), from its bytes. No record is part of a reference
cycle (a handling refers to its connection's facts, not to the connection's record), so one
dropped from the caps and held by no test is freed at once, not at the next full collection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import DeproxyError
from .models import TRACKING_HEADER, Request, Response

# How much of the record a Deproxy and each endpoint keep by default: the latest 10,000
# chains, handlings and connection records. Enough for any test; a long run (a load test
# through the proxy) then costs bounded memory, and the garbage collector a bounded heap.
# ``keep_chains=None`` / ``keep_handlings=None`` keep everything.
DEFAULT_KEEP = 10_000

OPCODES = {"continuation": 0, "text": 1, "binary": 2, "close": 8, "ping": 9, "pong": 10}


# The chain's text diagram is drawn by diagram.py, a reader of the record one layer above:
# it hands its drawing over here when imported (the package imports it), so the record
# imports nothing above it and MessageChain.diagram() and str(chain) still draw.
_drawing: Callable[[MessageChain], str] | None = None


def draw_diagrams_with(drawing: Callable[[MessageChain], str]) -> None:
    global _drawing
    _drawing = drawing


@dataclass(frozen=True, slots=True)
class Frame:
    """One WebSocket frame as it crossed the wire: ``direction`` ``"sent"``/``"received"``,
    ``opcode`` by name (``"text"``, ``"binary"``, ``"continuation"``, ``"ping"``, ``"pong"``,
    ``"close"``, or ``"0x3"`` for a reserved one), the unmasked ``payload``, ``fin``, and
    ``at`` (``time.time()``)."""

    direction: str
    opcode: str
    payload: bytes
    fin: bool = True
    at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.direction not in ("sent", "received"):
            raise ValueError(f"direction is 'sent' or 'received', not {self.direction!r}")
        if self.opcode not in OPCODES and not self.opcode.startswith("0x"):
            raise ValueError(f"opcode is one of {', '.join(OPCODES)}, not {self.opcode!r}")

    def __repr__(self) -> str:
        shown = self.payload[:24] + (b"..." if len(self.payload) > 24 else b"")
        fin = "" if self.fin else " (not fin)"
        return f"Frame({self.direction} {self.opcode} {len(self.payload)} B {shown!r}{fin})"

    @property
    def summary(self) -> str:
        """The frame in a few words, for diagrams: ``text 5 B 'hello'``, ``close 1000 'bye'``."""
        payload = self.payload
        fin = "" if self.fin else " (not fin)"
        if self.opcode == "close" and len(payload) >= 2:
            code = int.from_bytes(payload[:2], "big")
            reason = payload[2:].decode("utf-8", "replace")
            return f"close {code}" + (f" {reason!r}" if reason else "")
        shown: str | bytes = payload[:24]
        if self.opcode == "text":
            shown = payload[:24].decode("utf-8", "replace")
        more = "..." if len(payload) > 24 else ""
        return f"{self.opcode} {len(payload)} B {shown!r}{more}{fin}"


class Place(Protocol):
    """Where a handling happened: an endpoint, as the record needs to know it."""

    @property
    def name(self) -> str: ...

    @property
    def url(self) -> str: ...


class Waits(Protocol):
    """What a chain waits on for its traffic (its Deproxy's ``ChainRegistry``)."""

    def wait_for(
        self, chain: MessageChain, handlings: int, orphaned_handlings: int, timeout: float
    ) -> None: ...


class ConnectionFacts(Protocol):
    """A handling's connection, as the diagram shows it (a ``ConnectionRecord``)."""

    @property
    def summary(self) -> str: ...


_MAKING = threading.Lock()  # makes a record's rare lists once, whichever thread asks first


def _made_once(record: object, slot: str) -> Any:
    """The list in ``record``'s ``slot``, made empty on first use (by one thread only: an
    endpoint thread may append while the test reads)."""
    found = getattr(record, slot)
    if found is None:
        with _MAKING:
            found = getattr(record, slot)
            if found is None:
                found = []
                setattr(record, slot, found)
    return found


@dataclass(eq=False, slots=True)
class Handling:
    """One request as an endpoint received it, and what the endpoint did about it.

    It joins the record when the request's head has arrived (``received_at``), and is
    ``done`` once the endpoint has answered it, or given up on it. ``request`` is the request
    as received (its body is filled in once it has all arrived); ``response`` is the response
    as sent, default headers included (``None`` while the handler runs, and when none was
    sent); ``action`` says what a fault did or why the endpoint refused the request, and is
    ``None`` for an ordinary answer. ``raw`` is the request's bytes exactly as they arrived,
    head and framed body. After an upgrade to WebSocket, ``frames`` are the frames exchanged
    on the connection, both ways, as they cross (``"received"``: from the proxy's side).
    """

    endpoint: Place
    request: Request
    connection: str
    response: Response | None = None
    action: str | None = None
    done: bool = False
    received_at: float = field(default_factory=time.time)
    responded_at: float | None = None
    stream_id: int | None = None
    raw_head: bytes = field(default=b"", repr=False)
    # The body's bytes as framed on the wire, when they differ from ``request.raw_body``
    # (chunked): kept apart so that an ordinary body is not held twice.
    framed_body: bytes | None = field(default=None, repr=False)
    facts: ConnectionFacts | None = field(default=None, repr=False)
    # Lists most handlings never need, made on first use (see the module's docstring).
    _interim_responses: list[Response] | None = field(default=None, init=False, repr=False)
    _frames: list[Frame] | None = field(default=None, init=False, repr=False)
    # An answer sent as made before (``responding.Made``): ``response`` is made from it when
    # first read, as the Response it would have been, so that the many handlings of a load
    # test nobody reads cost the garbage collector two objects fewer each.
    _sent_as: SentLater | None = field(default=None, init=False, repr=False)
    # A request head only glanced at (``heads.Glance``: method, target, version, size), of a
    # request answered as it arrived: ``request`` is made from it and ``raw_head`` when
    # first read, as ``Request.unread`` would have made it then.
    _glanced: tuple[str, str, str, int] | None = field(default=None, init=False, repr=False)

    @classmethod
    def arrived(
        cls,
        endpoint: Place,
        request: Request,
        connection: str,
        received_at: float,
        raw_head: bytes,
        facts: ConnectionFacts | None,
        stream_id: int | None = None,
    ) -> Handling:
        """The handling of a request whose head just arrived: what the constructor makes
        with these, made in one call with no keywords to match (an endpoint makes one for
        every request; ``tests/test_hotpath_record.py`` holds the two to the same)."""
        handling = object.__new__(cls)
        handling.endpoint, handling.connection = endpoint, connection
        # The slots themselves, not their descriptors' Python __set__.
        _set_request(handling, request)
        _set_response(handling, None)
        handling.action = handling.responded_at = None
        handling.done = False
        handling.received_at, handling.stream_id = received_at, stream_id
        handling.raw_head = raw_head
        handling.framed_body = None
        handling.facts = facts
        handling._interim_responses = handling._frames = handling._sent_as = None
        handling._glanced = None
        return handling

    @classmethod
    def answered(
        cls,
        endpoint: Place,
        request: Request | None,
        connection: str,
        received_at: float,
        raw_head: bytes,
        facts: ConnectionFacts | None,
        made: SentLater,
        glanced: tuple[str, str, str, int] | None = None,
        stream_id: int | None = None,
    ) -> Handling:
        """The handling of a request answered as it arrived with an answer made before:
        :meth:`arrived` then :meth:`finish_as` ``made``, in one call. With no ``request``,
        its head was only ``glanced`` at (``heads.Glance``) and is all of ``raw_head``: the
        Request is made when first read (under load, nearly every request is one of these,
        and nobody reads it)."""
        handling = object.__new__(cls)  # response (and request) slots left empty: see below
        if request is not None:
            _set_request(handling, request)
        handling.endpoint, handling.connection, handling._glanced = endpoint, connection, glanced
        handling.action, handling.stream_id = None, stream_id
        handling.received_at, handling.raw_head, handling.facts = received_at, raw_head, facts
        handling.framed_body = handling._interim_responses = handling._frames = None
        handling._sent_as = made
        handling.responded_at = time.time()
        handling.done = True
        return handling

    @property
    def interim_responses(self) -> list[Response]:
        """The 1xx responses sent before the final one, in order."""
        made: list[Response] = _made_once(self, "_interim_responses")
        return made

    @property
    def frames(self) -> list[Frame]:
        """After an upgrade to WebSocket: the frames on the connection, both ways."""
        made: list[Frame] = _made_once(self, "_frames")
        return made

    @property
    def raw(self) -> bytes:
        """The request's bytes as they arrived: the head and the body as framed."""
        body = self.request.raw_body if self.framed_body is None else self.framed_body
        return self.raw_head + body

    @property
    def request_id(self) -> str | None:
        """The request's ``Deproxy-Request-ID``, if it carried one."""
        return self.request.headers.get(TRACKING_HEADER)

    def finish(self, response: Response | None, action: str | None = None) -> None:
        """Record what was done about the request (before the response is written, so that
        a client that has its answer finds the record complete)."""
        _set_response(self, response)
        self.action = action
        if response is not None:
            self.responded_at = time.time()
        self.done = True

    def finish_as(self, made: SentLater) -> None:
        """:meth:`finish` with an ordinary answer whose Response as sent ``made`` makes
        when ``response`` is first read."""
        self._sent_as = made
        _RESPONSE_SLOT.__delete__(self)  # an empty slot: the first read makes it, once
        self.responded_at = time.time()
        self.done = True


class _MadeOnFirstRead:
    """A slot a handling may leave empty (``response`` after :meth:`Handling.finish_as`,
    ``request`` of :meth:`Handling.answered` given none): its value, or, where it is empty,
    what ``make`` makes of the handling when first read (by one thread only), then kept in
    the slot. A descriptor over the slot rather than ``__getattr__``: a class with
    ``__getattr__`` has every attribute of every instance looked up the slow way (the
    interpreter does not specialize them)."""

    def __init__(self, slot: Any, make: Callable[[Handling], Any]) -> None:
        self._get, self._set, self._delete = slot.__get__, slot.__set__, slot.__delete__
        self._make = make

    def __get__(self, handling: Handling | None, owner: type | None = None) -> Any:
        if handling is None:
            return self
        try:
            return self._get(handling)
        except AttributeError:  # not made yet
            with _MAKING:
                try:
                    return self._get(handling)
                except AttributeError:
                    made = self._make(handling)
                    self._set(handling, made)
                    return made

    def __set__(self, handling: Handling, value: Any) -> None:
        self._set(handling, value)

    def __delete__(self, handling: Handling) -> None:
        self._delete(handling)


def _response_as_sent(handling: Handling) -> Response | None:
    made = handling._sent_as
    return None if made is None else made.sent()


def _request_as_glanced(handling: Handling) -> Request:
    assert handling._glanced is not None  # (the only handlings made with no request)
    method, target, version, _ = handling._glanced
    return Request.unread(method, target, handling.raw_head, version)


# The slots' own descriptors, that store (Handling's attributes are descriptors over them).
_RESPONSE_SLOT = Handling.__dict__["response"]
_set_response = _RESPONSE_SLOT.__set__
_set_request = Handling.__dict__["request"].__set__
Handling.response = _MadeOnFirstRead(_RESPONSE_SLOT, _response_as_sent)  # type: ignore[assignment,misc]
Handling.request = _MadeOnFirstRead(Handling.__dict__["request"], _request_as_glanced)  # type: ignore[assignment,misc]


class SentLater(Protocol):
    """What makes a handling's Response as sent when it is first read (``responding.Made``)."""

    def sent(self) -> Response: ...


@dataclass(eq=False)
class MessageChain:
    """Everything one :meth:`Deproxy.make_request` call caused.

    ``handlings`` are the requests carrying this chain's tracking id that reached endpoints,
    in the order they arrived, also after the call returned; ``orphaned_handlings`` are
    untracked requests that reached endpoints while the call was in flight.
    ``received_response`` is ``None`` when no response arrived, and ``error`` then says why.
    ``interim_responses`` are the 1xx responses received before the final one, in order (a
    ``101 Switching Protocols`` is final, not interim).

    ``body_withheld`` is true when ``make_request(expect_continue=True)`` had a final answer
    before any ``100 Continue``: the request body was then never sent (``sent_request``
    still holds it, as built) and the connection was closed. ``error`` stays ``None``: a
    server may refuse a body that way.

    ``frames``: for the opening handshake of :meth:`Deproxy.websocket`, the frames the client
    sent and received on that WebSocket (``session.frames``), as they cross.

    ``connection_events``: over HTTP/2, the client connection's frames (``FrameEvent``) on
    this call's streams, and the connection's own frames (SETTINGS, PING, GOAWAY) from the
    call's start until its answer, both ways as the client saw them.
    """

    request_id: str
    sent_request: Request
    received_response: Response | None = None
    handlings: list[Handling] = field(default_factory=list)
    error: DeproxyError | None = None
    url: str = ""  # the URL make_request was given
    sent_bytes: bytes | None = field(default=None, repr=False)  # make_raw_request's exact bytes
    started: float = field(default_factory=time.time, repr=False)  # wall clock, for reports
    elapsed: float | None = field(default=None, repr=False)  # seconds, once the call returned
    body_withheld: bool = False
    connection_events: tuple[Any, ...] = field(default=(), repr=False)
    _registry: Waits | None = field(default=None, repr=False, compare=False)
    # Lists most chains never need, made on first use (see the module's docstring).
    _orphaned_handlings: list[Handling] | None = field(default=None, init=False, repr=False)
    _interim_responses: list[Response] | None = field(default=None, init=False, repr=False)
    _frames: list[Frame] | None = field(default=None, init=False, repr=False)

    @property
    def orphaned_handlings(self) -> list[Handling]:
        """Untracked requests that reached endpoints while the call was in flight."""
        made: list[Handling] = _made_once(self, "_orphaned_handlings")
        return made

    @property
    def interim_responses(self) -> list[Response]:
        """The 1xx responses received before the final one, in order."""
        made: list[Response] = _made_once(self, "_interim_responses")
        return made

    @property
    def frames(self) -> list[Frame]:
        """The WebSocket frames of :meth:`Deproxy.websocket`'s session, both ways."""
        made: list[Frame] = _made_once(self, "_frames")
        return made

    def wait(
        self,
        handlings: int | None = None,
        orphaned_handlings: int | None = None,
        timeout: float = 5.0,
    ) -> MessageChain:
        """Block until the chain holds at least ``handlings`` handlings and
        ``orphaned_handlings`` orphans and every one of them is done; return the chain.

        For traffic a proxy sends after it answered (mirrors, background fetches, retries)::

            chain = deproxy.make_request(proxy_url).wait(handlings=2)

        Raises :class:`DeproxyTimeout`, showing the chain's diagram, after ``timeout`` s.
        """
        for wanted in (handlings, orphaned_handlings):
            if wanted is not None and (not isinstance(wanted, int) or wanted < 0):
                raise ValueError(f"wait() counts handlings with ints >= 0, not {wanted!r}")
        if self._registry is None:
            raise RuntimeError("only a chain made by a Deproxy can wait for its traffic")
        self._registry.wait_for(self, handlings or 0, orphaned_handlings or 0, timeout)
        return self

    def settled(self, handlings: int = 0, orphaned_handlings: int = 0) -> bool:
        """Whether :meth:`wait` with these counts would return now."""
        found = (self.handlings, self.orphaned_handlings)
        return (
            len(found[0]) >= handlings
            and len(found[1]) >= orphaned_handlings
            and all(handling.done for group in found for handling in group)
        )

    def diagram(self) -> str:
        """The chain as a text sequence diagram: client, each endpoint, and back."""
        if _drawing is None:
            raise RuntimeError("no diagram: import pytest_deproxy (its diagram module draws)")
        return _drawing(self)

    def __str__(self) -> str:
        return self.diagram()


def check_keep(keep: object, what: str) -> None:
    """Refuse a cap on the record that is not ``None`` or an int >= 0."""
    if keep is not None and (not isinstance(keep, int) or isinstance(keep, bool) or keep < 0):
        raise ValueError(
            f"{what} is how many to keep: an int >= 0, or None to keep all; got {keep!r}"
        )
