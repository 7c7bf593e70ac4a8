"""The record of traffic: what reached endpoints (Handling), what one call caused
(MessageChain), the registry that ties the two, and the chain as a text diagram.

Rules kept here: pure bookkeeping, no socket and no thread. The registry is the one place where
handlings meet calls: a chain is *in flight* exactly while its call runs, and a handling
carrying its tracking id joins it; a handling with no known id joins every chain in flight as
an orphan. Everything it hands out is a snapshot.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from .errors import DeproxyError
from .models import TRACKING_HEADER, Request, Response


class Place(Protocol):
    """Where a handling happened: an endpoint, as the record needs to know it."""

    @property
    def name(self) -> str: ...

    @property
    def url(self) -> str: ...


@dataclass(frozen=True, eq=False)
class Handling:
    """One request as an endpoint received it, and what the endpoint did about it.

    ``response`` is the response as sent, default headers included; it is ``None`` when the
    handler chose a fault that sends no response. ``action`` says in a few words what the
    endpoint did (``"responded"``, or the fault's description).
    """

    endpoint: Place
    request: Request
    response: Response | None
    connection: str
    action: str = "responded"

    @property
    def request_id(self) -> str | None:
        """The request's ``Deproxy-Request-ID``, if it carried one."""
        return self.request.headers.get(TRACKING_HEADER)


@dataclass(eq=False)
class MessageChain:
    """Everything one :meth:`Deproxy.make_request` call caused.

    ``handlings`` are the requests carrying this chain's tracking id that reached endpoints;
    ``orphaned_handlings`` are untracked requests that reached endpoints while the call was
    in flight. ``received_response`` is ``None`` when no response arrived, and ``error``
    then says why. ``interim_responses`` are the 1xx responses received before the final
    one, in order (a ``101 Switching Protocols`` is final, not interim).

    ``body_withheld`` is true when ``make_request(expect_continue=True)`` had a final answer
    before any ``100 Continue``: the request body was then never sent (``sent_request``
    still holds it, as built) and the connection was closed. ``error`` stays ``None``: a
    server may refuse a body that way.
    """

    request_id: str
    sent_request: Request
    received_response: Response | None = None
    handlings: list[Handling] = field(default_factory=list)
    orphaned_handlings: list[Handling] = field(default_factory=list)
    error: DeproxyError | None = None
    interim_responses: list[Response] = field(default_factory=list)
    url: str = ""  # the URL make_request was given
    sent_bytes: bytes | None = field(default=None, repr=False)  # make_raw_request's exact bytes
    started: float = field(default_factory=time.time, repr=False)  # wall clock, for reports
    elapsed: float | None = field(default=None, repr=False)  # seconds, once the call returned
    body_withheld: bool = False

    def diagram(self) -> str:
        """The chain as a text sequence diagram: client, each endpoint, and back."""
        return diagram(self)

    def __str__(self) -> str:
        return self.diagram()


Routing = TypeVar("Routing")


@dataclass
class _InFlight(Generic[Routing]):
    chain: MessageChain
    routing: Routing


class ChainRegistry(Generic[Routing]):
    """The chains in flight (each with what its caller wants endpoints to know, ``Routing``),
    the chains returned, and the errors raised in endpoint threads.

    ``keep_chains`` caps how many returned chains are remembered (None: all).
    """

    def __init__(self, keep_chains: int | None = None) -> None:
        self._lock = threading.Lock()
        self._in_flight: dict[str, _InFlight[Routing]] = {}
        self._returned: deque[MessageChain] = deque(maxlen=keep_chains)
        self._errors: list[BaseException] = []

    @contextmanager
    def in_flight(self, chain: MessageChain, routing: Routing) -> Iterator[None]:
        """Keep ``chain`` in flight for the duration of the ``with`` block."""
        with self._lock:
            if chain.request_id in self._in_flight:
                raise ValueError(
                    f"a request with {TRACKING_HEADER} {chain.request_id!r} is already in "
                    "flight; give each concurrent request its own id"
                )
            self._in_flight[chain.request_id] = _InFlight(chain, routing)
        try:
            yield
        finally:
            chain.elapsed = time.time() - chain.started
            with self._lock:
                del self._in_flight[chain.request_id]
                self._returned.append(chain)

    def routing_for(self, request_id: str | None) -> Routing | None:
        """What the call in flight with ``request_id`` asked of endpoints, if there is one."""
        if request_id is None:
            return None
        with self._lock:
            call = self._in_flight.get(request_id)
        return None if call is None else call.routing

    def record(self, handling: Handling) -> None:
        """File ``handling`` in its chain, or as an orphan of every chain in flight."""
        request_id = handling.request_id
        if request_id is None and not self._in_flight:
            # An orphan with no call in flight belongs to no chain. Under outside load (wrk)
            # this is every request; taking the lock for it made the threads queue.
            return
        with self._lock:
            call = self._in_flight.get(request_id) if request_id is not None else None
            if call is not None:
                call.chain.handlings.append(handling)
                return
            for active in self._in_flight.values():
                active.chain.orphaned_handlings.append(handling)

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


# -- the diagram ---------------------------------------------------------------------------
# Handlings are appended as they complete (innermost first), so the diagram shows the requests
# outermost first and the responses in the order they completed, as a nested chain happens.

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
    return " | ".join([*extra, *shown, _size(message.raw_body)])


def _lane(name: str) -> str:
    return (name if len(name) <= WIDTH else name[: WIDTH - 1] + "~").ljust(WIDTH)


def _request_line(request: Request) -> str:
    return f"{request.method} {request.path}"


def _status_line(response: Response) -> str:
    return f"{response.code} {response.message}".rstrip()


def _handling_lines(handling: Handling, arrow: str) -> str:
    lane = "  " + _lane(handling.endpoint.name)
    connection = handling.connection
    if arrow == "-->":
        request = handling.request
        return f"{lane}--> {_request_line(request)}   {_details(request, connection)}"
    if handling.response is None:
        return f"{lane} xx {handling.action}   {connection}"
    line = (
        f"{lane}<-- {_status_line(handling.response)}   {_details(handling.response, connection)}"
    )
    if handling.action != "responded":
        line += f"   ({handling.action})"
    return line


def diagram(chain: MessageChain) -> str:
    """The chain as a sequence of arrows: client, then each endpoint, then back."""
    title = f"--- MessageChain {chain.request_id} "
    lines = [title + "-" * max(3, 72 - len(title))]
    lines.append(
        f"{CLIENT}--> {_request_line(chain.sent_request)}   {_details(chain.sent_request)}"
    )
    if chain.body_withheld:
        lines.append(f"{CLIENT}    (body withheld: the answer came before 100 Continue)")
    lines += [_handling_lines(h, "-->") for h in reversed(chain.handlings)]
    lines += [_handling_lines(h, "<--") for h in chain.handlings]
    lines += [
        f"{CLIENT}<-- {_status_line(interim)} (interim)   {_details(interim)}"
        for interim in chain.interim_responses
    ]
    elapsed = f"{chain.elapsed * 1000:.0f} ms" if chain.elapsed is not None else ""
    if chain.received_response is not None:
        response = chain.received_response
        lines.append(f"{CLIENT}<-- {_status_line(response)}   {_details(response, elapsed)}")
    if chain.error is not None:
        lines.append(f"{CLIENT} xx {type(chain.error).__name__}: {chain.error}")
    if chain.orphaned_handlings:
        lines.append("  orphans (requests without this chain's tracking id, meanwhile):")
        for handling in chain.orphaned_handlings:
            lines.append(_handling_lines(handling, "-->"))
            lines.append(_handling_lines(handling, "<--"))
    return "\n".join(lines)
