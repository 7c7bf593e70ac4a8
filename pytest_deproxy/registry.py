"""The registry that ties handlings to calls: the chains in flight, the chains returned,
and the errors raised in endpoint threads.

Rules kept here: the registry is the one place where handlings meet calls. A chain is *in
flight* exactly while its call runs, and a handling carrying its tracking id joins it; a
handling with no known id joins every chain in flight as an orphan. Everything it hands out
is a snapshot. No socket, no thread of its own.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

from .errors import DeproxyTimeout
from .models import TRACKING_HEADER, TRACKING_KEY, Request
from .record import DEFAULT_KEEP, Handling, MessageChain, check_keep

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
        # The same dict, for others to see at a glance (no call) whether any call is in
        # flight: false under outside load, when no handler needs looking up. Read only.
        self.in_flight_now = self._in_flight
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
        (with no call in flight, as under outside load, or no tracking id, without reading
        its headers)."""
        if not self._in_flight or not request._has_header(TRACKING_KEY):
            return None  # (asked without reading an unread request's headers)
        return self.routing_for(request.headers.get(TRACKING_HEADER))

    def record(self, handling: Handling) -> None:
        """File ``handling`` as it arrives: in its own chain (in flight or returned), or as an
        orphan of every chain in flight; whoever waits is woken when it is filed, so a
        handling filed done (answered as it arrived) needs no :meth:`settled` after."""
        request = handling.request
        # An orphan with no call in flight belongs to no chain. Under outside load (wrk) this
        # is every request; taking the lock for it made the threads queue. (An unread request
        # is known to carry no tracking id: its headers stay unread.)
        if not self._in_flight and request._unread_head is not None:
            return
        tracked = request._unread_head is None and request._has_header(TRACKING_KEY)
        if not tracked and not self._in_flight:
            return
        request_id = handling.request_id if tracked else None
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
