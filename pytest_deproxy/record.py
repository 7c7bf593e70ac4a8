"""The record of traffic: what reached endpoints (Handling), what one call caused
(MessageChain), the WebSocket frames that crossed an upgraded connection (Frame), the registry
that ties them, and the chain as a text diagram (over HTTP/2, with the connection-level
frames of the client's connection and of the endpoints' connections the chain used, each
where it happened in time).

Rules kept here: pure bookkeeping, no socket and no thread. The registry is the one place where
handlings meet calls: a chain is *in flight* exactly while its call runs, and a handling
carrying its tracking id joins it; a handling with no known id joins every chain in flight as
an orphan. Everything it hands out is a snapshot.

What is kept is bounded by default (``DEFAULT_KEEP``), and each record costs the cyclic garbage
collector few objects: lists a record rarely needs (orphans, interim responses, frames) are
made on first use. No record is part of a reference cycle (a handling refers to its
connection's facts, not to the connection's record), so one dropped from the caps and held by
no test is freed at once, not at the next full collection.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from .errors import DeproxyError, DeproxyTimeout
from .models import TRACKING_HEADER, Request, Response

# How much of the record a Deproxy and each endpoint keep by default: the latest 10,000
# chains, handlings and connection records. Enough for any test; a long run (a load test
# through the proxy) then costs bounded memory, and the garbage collector a bounded heap.
# ``keep_chains=None`` / ``keep_handlings=None`` keep everything.
DEFAULT_KEEP = 10_000

OPCODES = {"continuation": 0, "text": 1, "binary": 2, "close": 8, "ping": 9, "pong": 10}


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


class ConnectionEvent(Protocol):
    """One HTTP/2 connection-level frame, as the diagram shows it (a ``FrameEvent``)."""

    direction: str
    type: str
    stream_id: int
    flags: tuple[str, ...]
    values: dict[str, int]
    code: int | None
    error: str | None
    last_stream_id: int | None
    at: float


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
        return diagram(self)

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

    def record(self, handling: Handling) -> None:
        """File ``handling`` as it arrives: in its own chain (in flight or returned), or as an
        orphan of every chain in flight."""
        request_id = handling.request_id
        if request_id is None and not self._in_flight:
            # An orphan with no call in flight belongs to no chain. Under outside load (wrk)
            # this is every request; taking the lock for it made the threads queue.
            return
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


# -- the diagram ---------------------------------------------------------------------------
# Requests are shown in the order they arrived (outermost first, as a nested chain happens),
# then the answers in the order they were sent; a handling still running says so.

KEY_HEADERS = (
    "Host",
    "Content-Type",
    "Content-Length",
    "Transfer-Encoding",
    "Connection",
    "Via",
    "X-Forwarded-For",
    "Location",
    "Upgrade",
    "Expect",
)
WIDTH = 14
CLIENT = "client".ljust(WIDTH + 2)  # endpoints' lanes are indented by two


def _size(data: bytes) -> str:
    return f"body {len(data)} B" if data else "no body"


def _details(message: Request | Response, *extra: str) -> str:
    shown = [f"{name}: {message.headers[name]}" for name in KEY_HEADERS if name in message.headers]
    return " | ".join([*(part for part in extra if part), *shown, _size(message.raw_body)])


def _lane(name: str) -> str:
    return (name if len(name) <= WIDTH else name[: WIDTH - 1] + "~").ljust(WIDTH)


def _request_line(request: Request) -> str:
    return f"{request.method} {request.path}"


def _status_line(response: Response) -> str:
    return f"{response.code} {response.message}".rstrip()


def _where(handling: Handling) -> str:
    """The handling's connection, and its stream on an HTTP/2 connection (``conn-3 s5``)."""
    if handling.stream_id is None:
        return handling.connection
    return f"{handling.connection} s{handling.stream_id}"


def _arrived(handling: Handling) -> str:
    lane = "  " + _lane(handling.endpoint.name)
    facts = handling.facts.summary if handling.facts is not None else ""
    request = handling.request
    return f"{lane}--> {_request_line(request)}   {_details(request, _where(handling), facts)}"


def _answered(handling: Handling) -> list[str]:
    lane = "  " + _lane(handling.endpoint.name)
    lines = [
        f"{lane}<-- {_status_line(interim)} (interim)   {_where(handling)}"
        for interim in handling.interim_responses
    ]
    if not handling.done:
        return [*lines, f"{lane} .. still being handled   {_where(handling)}"]
    if handling.response is None:
        return [*lines, f"{lane} xx {handling.action}   {_where(handling)}"]
    response = handling.response
    line = f"{lane}<-- {_status_line(response)}   {_details(response, _where(handling))}"
    if handling.action is not None:
        line += f"   ({handling.action})"
    return [*lines, line, *_frame_lines(lane, handling.frames, endpoint=True)]


FRAMES_SHOWN = 6  # frames shown at the start of a WebSocket; then the last two
ARRIVING = {"sent": "~~>", "received": "<~~"}  # a client's frames, as its arrows go


def _frame_lines(lane: str, frames: list[Frame], *, endpoint: bool) -> list[str]:
    """The frames of an upgraded connection, collapsed past a few: arrows point as requests
    (towards the endpoints) and answers (back to the client) do."""
    frames = list(frames)
    shown = frames
    if len(frames) > FRAMES_SHOWN + 3:
        shown = frames[:FRAMES_SHOWN] + frames[-2:]
    lines = []
    for number, frame in enumerate(shown):
        if number == FRAMES_SHOWN and shown is not frames:
            hidden = frames[FRAMES_SHOWN:-2]
            sent = sum(1 for f in hidden if f.direction == "sent")
            lines.append(
                f"{lane}    ... {len(hidden)} frames more ({sent} sent, "
                f"{len(hidden) - sent} received) ..."
            )
        direction = frame.direction
        if endpoint:  # what an endpoint received came towards it, from the client's side
            direction = "received" if direction == "sent" else "sent"
        lines.append(f"{lane}{ARRIVING[direction]} {frame.summary}")
    return lines


def _answer_order(handling: Handling) -> float:
    return handling.responded_at if handling.responded_at is not None else float("inf")


def chain_window(chain: MessageChain) -> tuple[float, float]:
    """From the chain's start to its answer and the last of its handlings' answers (to the
    end of time while the call or a handling is still running)."""
    ends = [chain.started + chain.elapsed if chain.elapsed is not None else float("inf")]
    for handling in chain.handlings:
        ends.append(handling.responded_at or handling.received_at)
        if not handling.done:
            ends.append(float("inf"))
    return chain.started, max(ends)


def endpoint_events(chain: MessageChain) -> list[tuple[Handling, list[ConnectionEvent]]]:
    """The HTTP/2 frames of each endpoint connection the chain's handlings came on (one
    entry per connection, with its first handling): those on the chain's streams, and the
    connection's own (stream 0) while the chain ran. HTTP/1 connections have none."""
    start, end = chain_window(chain)
    found: list[tuple[Handling, list[ConnectionEvent]]] = []
    seen: dict[int, set[int]] = {}
    firsts: dict[int, Handling] = {}
    for handling in chain.handlings:
        if handling.stream_id is None or handling.facts is None:
            continue
        key = id(handling.facts)
        seen.setdefault(key, set()).add(handling.stream_id)
        firsts.setdefault(key, handling)
    for key, handling in firsts.items():
        events: list[ConnectionEvent] = list(getattr(handling.facts, "events", ()))
        streams = seen[key]
        kept = [
            e
            for e in events
            if e.stream_id in streams or (e.stream_id == 0 and start <= e.at <= end)
        ]
        found.append((handling, kept))
    return found


EVENT_ARROWS = {"sent": "==>", "received": "<=="}  # as a client's: requests go right
# RFC 9113 6.5.2's initial values: a SETTINGS frame is shown by what it changes.
SETTINGS_DEFAULTS = {
    "HEADER_TABLE_SIZE": 4096,
    "ENABLE_PUSH": 1,
    "INITIAL_WINDOW_SIZE": 65535,
    "MAX_FRAME_SIZE": 16384,
    "ENABLE_CONNECT_PROTOCOL": 0,
}


def event_text(event: ConnectionEvent) -> str:
    """A frame in a few words: ``SETTINGS INITIAL_WINDOW_SIZE=0`` (the values that differ
    from the initial ones), ``RST_STREAM s3 CANCEL``, ``GOAWAY PROTOCOL_ERROR
    last_stream_id=1``, ``PING ACK``."""
    parts = [event.type]
    if event.stream_id:
        parts.append(f"s{event.stream_id}")
    if event.flags:
        parts.append("+".join(event.flags))
    values = event.values
    if event.type == "SETTINGS":
        values = {k: v for k, v in values.items() if SETTINGS_DEFAULTS.get(k) != v}
        if not values and not event.flags:
            parts.append("(initial values)")
    if values:
        parts.append(", ".join(f"{k}={v}" for k, v in values.items()))
    if event.error is not None:
        parts.append(event.error)
    if event.last_stream_id is not None:
        parts.append(f"last_stream_id={event.last_stream_id}")
    return " ".join(parts)


def _event_lines(
    lane: str, events: list[ConnectionEvent], *, endpoint: bool, where: str = ""
) -> list[tuple[float, str]]:
    """One line per frame, at its time; a run of alike frames (a rapid-reset burst, a
    WINDOW_UPDATE for each DATA) is one line that counts them. SETTINGS acks are left out
    (``events`` keeps them)."""
    runs: list[list[ConnectionEvent]] = []
    for event in events:
        if event.type == "SETTINGS" and "ACK" in event.flags:
            continue
        last = runs[-1][-1] if runs else None
        if (
            last is not None
            and (last.direction, last.type, last.flags, last.error)
            == (event.direction, event.type, event.flags, event.error)
            and event.type in ("RST_STREAM", "WINDOW_UPDATE", "PING")
        ):
            runs[-1].append(event)
        else:
            runs.append([event])
    lines = []
    for run in runs:
        first = run[0]
        direction = first.direction
        if endpoint:  # what an endpoint received came towards it, from the client's side
            direction = "received" if direction == "sent" else "sent"
        text = event_text(first)
        if len(run) > 1:
            streams = sorted({e.stream_id for e in run if e.stream_id})
            named = f" on s{streams[0]}..s{streams[-1]}" if len(streams) > 1 else ""
            text = f"{first.type}{named} {first.error or ''}".rstrip()
            text += f" ({len(run)} frames)"
        suffix = f"   {where}" if where else ""
        lines.append((first.at, f"{lane}{EVENT_ARROWS[direction]} {text}{suffix}"))
    return lines


def _merge(timed: list[tuple[float, str]], events: list[tuple[float, str]]) -> list[str]:
    """The diagram's lines with the frames between them, each after the last line that
    happened before it (the lines' own order is kept)."""
    events = sorted(events, key=lambda pair: pair[0])
    out, latest, index = [], float("-inf"), 0
    for at, line in timed:
        latest = max(latest, at)
        while index < len(events) and events[index][0] < latest:
            out.append(events[index][1])
            index += 1
        out.append(line)
    out += [line for _, line in events[index:]]
    return out


def diagram(chain: MessageChain) -> str:
    """The chain as a sequence of arrows: client, then each endpoint, then back; over
    HTTP/2, the connections' frames (``==>``/``<==``) where they happened in time."""
    title = f"--- MessageChain {chain.request_id} "
    lines = [title + "-" * max(3, 72 - len(title))]
    timed: list[tuple[float, str]] = []
    timed.append(
        (
            chain.started,
            f"{CLIENT}--> {_request_line(chain.sent_request)}   {_details(chain.sent_request)}",
        )
    )
    if chain.body_withheld:
        timed.append(
            (chain.started, f"{CLIENT}    (body withheld: the answer came before 100 Continue)")
        )
    handlings = list(chain.handlings)
    timed += [(h.received_at, _arrived(h)) for h in handlings]
    for handling in sorted(handlings, key=_answer_order):
        timed += [(_answer_order(handling), line) for line in _answered(handling)]
    ended = chain.started + chain.elapsed if chain.elapsed is not None else float("inf")
    timed += [
        (ended, f"{CLIENT}<-- {_status_line(interim)} (interim)   {_details(interim)}")
        for interim in chain.interim_responses
    ]
    elapsed = f"{chain.elapsed * 1000:.0f} ms" if chain.elapsed is not None else ""
    if chain.received_response is not None:
        response = chain.received_response
        timed.append(
            (ended, f"{CLIENT}<-- {_status_line(response)}   {_details(response, elapsed)}")
        )
        timed += [(ended, line) for line in _frame_lines(CLIENT, chain.frames, endpoint=False)]
    if chain.error is not None:
        timed.append((ended, f"{CLIENT} xx {type(chain.error).__name__}: {chain.error}"))
    events = _event_lines(CLIENT, list(chain.connection_events), endpoint=False)
    for handling, found in endpoint_events(chain):
        lane = "  " + _lane(handling.endpoint.name)
        events += _event_lines(lane, found, endpoint=True, where=handling.connection)
    lines += _merge(timed, events)
    if chain.orphaned_handlings:
        lines.append("  orphans (requests without this chain's tracking id, meanwhile):")
        for handling in list(chain.orphaned_handlings):
            lines.append(_arrived(handling))
            lines += _answered(handling)
    return "\n".join(lines)
