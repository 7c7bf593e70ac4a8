"""The record of traffic: what reached endpoints (Handling), what one call caused
(MessageChain), the WebSocket frames that crossed an upgraded connection (Frame), the registry
that ties them, and the caps on what is kept. The chain's text diagram is drawn by
``diagram.py``, a reader one layer above.

Rules kept here: pure bookkeeping, no socket and no thread. The registry is the one place where
handlings meet calls: a chain is *in flight* exactly while its call runs, and a handling
carrying its tracking id joins it; a handling with no known id joins every chain in flight as
an orphan. Everything it hands out is a snapshot.

What is kept is bounded by default (``DEFAULT_KEEP``), and each record costs the cyclic garbage
collector few objects: lists a record rarely needs (orphans, interim responses, frames) are
made on first use, and so is the Response as sent of an answer made again (the stock answer
under load), from the immutable parts it was sent from. No record is part of a reference
cycle (a handling refers to its connection's facts, not to the connection's record), so one
dropped from the caps and held by no test is freed at once, not at the next full collection.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from .errors import DeproxyError, DeproxyTimeout
from .models import TRACKING_HEADER, Request, Response

# How much of the record a Deproxy and each endpoint keep by default: the latest 10,000
# chains, handlings and connection records. Enough for any test; a long run (a load test
# through the proxy) then costs bounded memory, and the garbage collector a bounded heap.
# ``keep_chains=None`` / ``keep_handlings=None`` keep everything.
DEFAULT_KEEP = 10_000

_TRACKING_KEY = TRACKING_HEADER.lower()
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
    # Its place in its endpoint's arrivals: which of a connection's handlings the endpoint's
    # cap has dropped (see ConnectionRecord.add_handling).
    arrival_number: int = field(default=0, repr=False)
    # Lists most handlings never need, made on first use (see the module's docstring).
    _interim_responses: list[Response] | None = field(default=None, init=False, repr=False)
    _frames: list[Frame] | None = field(default=None, init=False, repr=False)
    # An answer sent as made before (``responding.Made``): ``response`` is made from it when
    # first read, as the Response it would have been, so that the many handlings of a load
    # test nobody reads cost the garbage collector two objects fewer each.
    _sent_as: SentLater | None = field(default=None, init=False, repr=False)

    @classmethod
    def arrived(
        cls,
        endpoint: Place,
        request: Request,
        connection: str,
        received_at: float,
        raw_head: bytes,
        facts: ConnectionFacts | None,
        arrival_number: int,
        stream_id: int | None = None,
    ) -> Handling:
        """The handling of a request whose head just arrived: what the constructor makes
        with these, made in one call with no keywords to match (an endpoint makes one for
        every request; ``tests/test_hotpath_record.py`` holds the two to the same)."""
        handling = object.__new__(cls)
        handling.endpoint, handling.request, handling.connection = endpoint, request, connection
        handling.response = handling.action = handling.responded_at = None
        handling.done = False
        handling.received_at, handling.stream_id = received_at, stream_id
        handling.raw_head = raw_head
        handling.framed_body = None
        handling.facts, handling.arrival_number = facts, arrival_number
        handling._interim_responses = handling._frames = handling._sent_as = None
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
        self.response, self.action = response, action
        if response is not None:
            self.responded_at = time.time()
        self.done = True

    def finish_as(self, made: SentLater) -> None:
        """:meth:`finish` with an ordinary answer whose Response as sent ``made`` makes
        when ``response`` is first read."""
        self._sent_as = made
        del self.response  # an empty slot: reading it asks __getattr__, once
        self.responded_at = time.time()
        self.done = True

    def __getattr__(self, name: str) -> Any:
        # Only an empty slot comes here: ``response`` after finish_as(), until first read.
        if name != "response":
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        with _MAKING:  # made once, whichever thread reads it first
            try:
                return object.__getattribute__(self, "response")
            except AttributeError:  # not made yet
                made = self._sent_as
                self.response = None if made is None else made.sent()
                return self.response


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
    _registry: ChainRegistry[Any] | None = field(default=None, repr=False, compare=False)
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


Routing = TypeVar("Routing")


class _Flight(Generic[Routing]):
    """A chain in flight while a ``with`` block runs (a class, not a generator: it is entered
    on every request)."""

    __slots__ = ("_chain", "_registry", "_routing")

    def __init__(self, registry: ChainRegistry[Routing], chain: MessageChain, routing: Routing):
        self._registry, self._chain, self._routing = registry, chain, routing

    def __enter__(self) -> None:
        self._registry._begin(self._chain, self._routing)

    def __exit__(self, *exc_info: object) -> None:
        self._registry._end(self._chain)


class ChainRegistry(Generic[Routing]):
    """The chains in flight (each with what its caller wants endpoints to know, ``Routing``),
    the chains returned, and the errors raised in endpoint threads.

    ``keep_chains`` caps how many returned chains are remembered (None: all); a late request
    carrying the id of a chain no longer remembered is filed nowhere. A chain forgotten here
    is still whole for whoever holds it.
    """

    def __init__(self, keep_chains: int | None = DEFAULT_KEEP) -> None:
        check_keep(keep_chains, "keep_chains")
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a handling arrived or was settled
        self._waiting = 0  # threads in wait_for: settling notifies only when there are some
        self._in_flight: dict[str, tuple[MessageChain, Routing]] = {}
        self._returned: deque[MessageChain] = deque(maxlen=keep_chains)
        self._returned_by_id: dict[str, MessageChain] = {}
        self._errors: list[BaseException] = []

    def in_flight(self, chain: MessageChain, routing: Routing) -> _Flight[Routing]:
        """Keep ``chain`` in flight for the duration of the ``with`` block."""
        return _Flight(self, chain, routing)

    def _begin(self, chain: MessageChain, routing: Routing) -> None:
        with self._lock:
            if chain.request_id in self._in_flight:
                raise ValueError(
                    f"a request with {TRACKING_HEADER} {chain.request_id!r} is already in "
                    "flight; give each concurrent request its own id"
                )
            self._in_flight[chain.request_id] = (chain, routing)
            chain._registry = self

    def _end(self, chain: MessageChain) -> None:
        chain.elapsed = time.time() - chain.started
        returned = self._returned
        with self._lock:
            del self._in_flight[chain.request_id]
            if len(returned) == returned.maxlen:
                if not returned.maxlen:
                    return  # keep_chains=0: remember none
                forgotten = returned[0]
                if self._returned_by_id.get(forgotten.request_id) is forgotten:
                    del self._returned_by_id[forgotten.request_id]
            returned.append(chain)
            self._returned_by_id[chain.request_id] = chain

    def routing_for(self, request_id: str | None) -> Routing | None:
        """What the call in flight with ``request_id`` asked of endpoints, if there is one."""
        if request_id is None:
            return None
        with self._lock:
            call = self._in_flight.get(request_id)
        return None if call is None else call[1]

    def routing_for_request(self, request: Request) -> Routing | None:
        """What the call in flight that sent ``request`` asked of endpoints, if there is one
        (with no call in flight, as under outside load, without reading its headers)."""
        if not self._in_flight:
            return None
        return self.routing_for(request.headers.get(TRACKING_HEADER))

    def record(self, handling: Handling) -> None:
        """File ``handling`` as it arrives: in its own chain (in flight or returned), or as an
        orphan of every chain in flight."""
        if not self._in_flight and not handling.request._has_header(_TRACKING_KEY):
            # An orphan with no call in flight belongs to no chain. Under outside load (wrk)
            # this is every request; taking the lock for it made the threads queue.
            return
        request_id = handling.request_id
        with self._lock:
            if request_id is not None:
                call = self._in_flight.get(request_id)
                own = call[0] if call is not None else self._returned_by_id.get(request_id)
                if own is not None:
                    own.handlings.append(handling)
                    self._notify()
                    return
            for active, _ in self._in_flight.values():
                active.orphaned_handlings.append(handling)
            self._notify()

    def settled(self, handling: Handling) -> None:
        """``handling`` is done: wake whoever waits for it."""
        if self._waiting:
            with self._lock:
                self._notify()

    def _notify(self) -> None:
        if self._waiting:
            self._changed.notify_all()

    def wait_for(
        self, chain: MessageChain, handlings: int, orphaned_handlings: int, timeout: float
    ) -> None:
        """Block until ``chain.settled(handlings, orphaned_handlings)``; DeproxyTimeout after
        ``timeout`` s."""
        with self._lock:
            self._waiting += 1
            try:
                settled = self._changed.wait_for(
                    lambda: chain.settled(handlings, orphaned_handlings), timeout
                )
            finally:
                self._waiting -= 1
        if not settled:
            raise DeproxyTimeout(
                f"after {timeout} s the chain has {len(chain.handlings)} handlings and "
                f"{len(chain.orphaned_handlings)} orphans (waited for {handlings} and "
                f"{orphaned_handlings}, all done):\n{chain.diagram()}"
            )

    def report_error(self, error: BaseException) -> None:
        with self._lock:
            self._errors.append(error)

    @property
    def errors(self) -> list[BaseException]:
        with self._lock:
            return list(self._errors)

    @property
    def chains(self) -> list[MessageChain]:
        """The chains returned so far, in order."""
        with self._lock:
            return list(self._returned)


def check_keep(keep: object, what: str) -> None:
    """Refuse a cap on the record that is not ``None`` or an int >= 0."""
    if keep is not None and (not isinstance(keep, int) or isinstance(keep, bool) or keep < 0):
        raise ValueError(
            f"{what} is how many to keep: an int >= 0, or None to keep all; got {keep!r}"
        )
