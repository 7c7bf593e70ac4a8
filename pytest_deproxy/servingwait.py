"""A caller that waits for an answer serves its Deproxy's endpoints meanwhile.

Rule kept here: while ``make_request`` waits for its response, the endpoints of its Deproxy
are served on the caller's thread, each exactly as its poll thread would serve it (the same
code, under the same lock: :meth:`Server.serve_lent`), and each is given back before the call
returns, with what the caller's last step left (its close) served first. An endpoint's poller
is taken out of its poll thread's without waking that thread, and put back the same way.

Why: the request, the endpoint's answer and the response then happen on one thread, where
two threads handed the GIL to each other, and woke each other, at every step: on a machine
whose cores are virtual, those wake-ups were half of what a test with one request cost (a
Deproxy, an endpoint, one request and the shutdown: ~500 us of CPU on two cores, 228 us with
the same code pinned to one, ~245 us served this way; ``benchmarks/run.py fixtures`` measures
it in whole pytest runs).

What a caller serves this way: plain ``http`` requests of its own connection, sent as they are
(no dribble, no hang-up, no ``Expect``), whose body is at most :data:`SMALL_BODY` bytes (sent
whole into the socket's buffer, never waiting for the endpoint to read). One caller at a time
per Deproxy; other callers wait as before, and the endpoints' poll threads serve them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import net

if TYPE_CHECKING:
    from .serving import Server

SMALL_BODY = 64 * 1024
_CLIENT = object()  # the key of the caller's own connection


def lend_to_caller(servers: Sequence[Server]) -> ServingWait | None:
    """The servers that can be lent now, lent to the calling thread (None: none can)."""
    lent: list[tuple[Server, net.Poller]] = []
    for server in servers:
        poller = server.lend()
        if poller is not None:
            lent.append((server, poller))
    return ServingWait(lent) if lent else None


class ServingWait:
    """The servers lent to one waiting caller, and the poller it waits in with them."""

    def __init__(self, lent: Sequence[tuple[Server, net.Poller]]) -> None:
        self._poller = net.Poller(wakeable=False)
        self._lent = [server for server, _ in lent]
        self._interval: float | None = None  # the shortest watchdog interval of those lent
        self._stream: net.Stream | None = None
        for server, poller in lent:
            self._poller.watch(poller, server)
            if server.watch_interval is not None:
                self._interval = min(self._interval or server.watch_interval, server.watch_interval)

    def wait_on(self, stream: net.Stream) -> None:
        """Serve while ``stream`` (the caller's connection) waits to be read."""
        self._poller.watch(stream, _CLIENT)
        stream.wait_readable = self._until_readable
        self._stream = stream

    def _until_readable(self, timeout: float | None) -> bool:
        """Serve the lent servers until the caller's connection can be read (True), or for
        ``timeout`` s (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        remaining = timeout
        while True:
            wait = remaining
            if self._interval is not None and (wait is None or wait > self._interval):
                wait = self._interval  # the lent servers' watchdogs run at least this often
            ready = self._poller.ready(wait)
            for key in ready:
                if key is not _CLIENT:
                    key.serve_lent()  # type: ignore[attr-defined]
            if _CLIENT in ready:
                return True
            if not ready:  # a whole interval with nothing ready: the watchdogs' turn
                for server in self._lent:
                    server.serve_lent()
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False

    def close(self) -> None:
        """Give every server back to its poll thread (see :meth:`Server.take_back`)."""
        try:
            for server in self._lent:
                server.take_back()
        finally:
            if self._stream is not None:  # (a cycle through this object's bound method)
                self._stream.wait_readable = None
                self._poller.forget(self._stream)
            self._poller.close()
