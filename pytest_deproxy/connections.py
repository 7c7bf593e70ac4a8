"""The record of a connection an endpoint accepted: who it came from, when it opened and
closed and who closed it, every byte both ways, its TLS facts, its PROXY protocol header and,
on HTTP/2, its connection-level frames both ways (``events``).

Rules kept here: pure bookkeeping, no socket. The bytes are the ones that crossed the wire,
after TLS is taken off and before anything reads them as HTTP; a connection's record is
written by the one thread that serves it, and read by the test as a snapshot. Its handlings
are not kept twice: they are read from its endpoint's (those of them it still keeps). A
handling refers to its connection's :class:`Facts`, never to the record, which refers to its
endpoint's handlings: so a record dropped from the endpoint's cap is freed at once, not by the
garbage collector.

A record of an HTTP/1 connection holds as few objects as the garbage collector must walk:
a transcript's list of parts is made when its first part is frozen (a full 64 KiB block, or
a run of one chunk repeated), and the list of HTTP/2 frames when the first frame comes (a
handling's :class:`Facts` made before then is given the list then). Every fresh connection
leaves a record, up to the endpoint's cap, and each object a full collection walks costs
each request that follows.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .proxyproto import ProxyHeader
from .record import Handling

CLOSED_BY = ("client", "endpoint", "reset", "shutdown")
EVENT_LIMIT = 10_000  # HTTP/2 frames kept per connection: a PING or SETTINGS flood costs no more


@dataclass(frozen=True)
class FrameEvent:
    """One connection-level HTTP/2 frame as it crossed the wire: ``direction`` (``"sent"`` or
    ``"received"``, seen from whoever holds the record), ``type`` (``"SETTINGS"``,
    ``"WINDOW_UPDATE"``, ``"PING"``, ``"RST_STREAM"``, ``"GOAWAY"``), ``stream_id``,
    ``flags`` (e.g. ``("ACK",)``), ``values`` (SETTINGS: name to value; WINDOW_UPDATE:
    ``{"increment": n}``), ``code`` and ``error`` (RST_STREAM, GOAWAY: the error code and
    its name), ``last_stream_id`` (GOAWAY), ``data`` (PING's opaque data, GOAWAY's debug
    data) and ``at`` (wall clock)."""

    direction: str
    type: str
    stream_id: int = 0
    flags: tuple[str, ...] = ()
    values: dict[str, int] = field(default_factory=dict)
    code: int | None = None
    error: str | None = None
    last_stream_id: int | None = None
    data: bytes = b""
    at: float = field(default_factory=time.time)

    def __str__(self) -> str:
        parts = [f"{self.direction} {self.type}"]
        if self.stream_id:
            parts.append(f"s{self.stream_id}")
        if self.flags:
            parts.append("+".join(self.flags))
        if self.values:
            parts.append(", ".join(f"{k}={v}" for k, v in self.values.items()))
        if self.error is not None:
            parts.append(f"{self.error}({self.code})")
        if self.last_stream_id is not None:
            parts.append(f"last_stream_id={self.last_stream_id}")
        return " ".join(parts)


@dataclass(frozen=True)
class TLSInfo:
    """What the TLS handshake settled: the name the client asked for (``sni``), the
    protocol ALPN chose, the TLS ``version`` and ``cipher``, the client's certificate
    (a dict like ``ssl.SSLSocket.getpeercert()``; ``None`` when it sent none), and whether
    the client resumed an earlier session (``resumed``: a TLS 1.3 ticket or a TLS 1.2
    session, so no certificate was sent)."""

    sni: str | None
    alpn: str | None
    version: str | None
    cipher: str | None
    client_certificate: dict[str, Any] | None = None
    resumed: bool = False


class Repeats:
    """A chunk that came again, ``count`` more times in a row (its first copy is in the part
    before): a transcript keeps it once, so that a long keep-alive run of one request and one
    answer costs no memory for each exchange."""

    __slots__ = ("chunk", "count")

    def __init__(self, chunk: bytes) -> None:
        self.chunk = chunk
        self.count = 1

    def __len__(self) -> int:
        return len(self.chunk) * self.count

    def __bytes__(self) -> bytes:
        return self.chunk * self.count


class Transcript:
    """The bytes of one direction of a connection, in order: the first ``limit`` of them
    (``None``: all), and a count of those past it (``dropped``), so that a huge body or a
    long keep-alive run costs bounded memory.

    Kept in parts, joined only when the transcript is read:

    - blocks of about ``BLOCK`` bytes: a ``bytearray`` the chunks are appended to (the tail),
      frozen into ``bytes`` when full and a new one begun. So a chunk costs one append of its
      bytes to a small buffer, never a move of the whole transcript (one ``bytearray`` grown
      to megabytes is copied whole whenever the allocator cannot grow it in place), and the
      garbage collector walks one short list (one reference a block, where a list of a long
      run's chunks, 60,000 small ones in 4 MiB, was walked whole by every full collection);
    - :class:`Repeats`: a chunk equal to the one before it is counted, not copied. Under a
      load generator every request and every answer is the same, and copying each into fresh
      memory (a page fault every 4 KiB, ~5 us on a virtual machine) cost a tenth of the rate.

    A connection's stream writes through :meth:`tap`, a plain function that keeps its own
    count of the room left: a chunk then costs a comparison, one C call and a subtraction.
    """

    BLOCK = 64 * 1024

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.dropped = 0
        self._tail = bytearray()
        # The frozen parts, then the tail: one list, changed by one slice assignment when a
        # part is frozen, so that a reader on another thread sees every byte once, in order.
        # None until the first part is frozen (most connections never fill a block nor send
        # a chunk twice): the tail is then all there is. A reader takes the tail before this,
        # the writer sets this before a new tail, so a reader that finds None here took the
        # only tail.
        self._parts: list[bytes | bytearray | Repeats] | None = None
        self._tapped = False

    def tap(self) -> Callable[[bytes], None]:
        """The function to hand every chunk to, in order: the transcript's one writer. It
        holds the transcript, never the other way round, so that a record is freed by its
        count of references alone."""
        if self._tapped:
            raise RuntimeError("this transcript has its writer already: write through its tap")
        self._tapped = True
        # The writer's state, kept here rather than on the transcript (cell variables cost
        # less than attributes): the bytes the fast paths may take before _write() must
        # look (``room``, of ``granted`` when it was last set, at logical length
        # ``length``); the last chunk (a repeat's candidate) and the open run of repeats.
        length = 0
        room = granted = self._room(length)
        extend = self._tail.extend
        last: bytes | None = None
        run: Repeats | None = None

        def add(data: bytes) -> None:
            nonlocal room, granted, length, extend, last, run
            size = len(data)
            if size < room:  # nearly always: one C call under the GIL, seen whole or not
                if data != last:
                    extend(data)
                    room -= size
                    last, run = data, None
                    return
                if run is not None:
                    run.count += 1
                    room -= size  # (takes no block space: _write() then finds more room)
                    return
                # (else a second copy in a row: _write() opens a run)
            elif room == 0:  # the limit is reached (a block is never left full)
                self.dropped += size
                return
            length += granted - room  # what the fast paths took since room was granted
            run, kept = self._write(data, size, length, last, run)
            length += kept
            # After a repeat, the run's own chunk stays the one compared with (never a
            # caller's buffer); a big body is never held for this.
            last = run.chunk if run is not None else (data if size < self.BLOCK else None)
            room = granted = self._room(length)
            extend = self._tail.extend

        return add

    def _room(self, length: int) -> int:
        """Bytes the fast paths may take, at this logical length: to the end of the tail
        block, or to the limit, whichever comes first (0: the limit is reached)."""
        to_block = self.BLOCK - len(self._tail)
        return to_block if self.limit is None else min(to_block, self.limit - length)

    def _write(
        self, data: bytes, size: int, length: int, last: bytes | None, run: Repeats | None
    ) -> tuple[Repeats | None, int]:
        """Add ``data`` the long way (it fills the tail block, reaches the limit or opens a
        run of repeats) at logical ``length``: the open run after it, and the bytes kept."""
        room = math.inf if self.limit is None else self.limit - length
        kept = size if size <= room else max(0, int(room))
        self.dropped += size - kept
        # (a run is opened only after an immutable chunk: the fast path compares the next
        # ones with it, and a buffer a caller reuses would have changed since)
        if kept == size and type(last) is bytes and data == last:
            if run is None:
                run = Repeats(last)
                self._freeze(run)
            else:
                run.count += 1
            return run, kept
        if kept:
            self._tail += data if kept == size else data[:kept]
        if len(self._tail) >= self.BLOCK:
            self._freeze(None)
        return None, kept

    def _freeze(self, run: Repeats | None) -> None:
        """Freeze the tail (with ``run`` after it), and begin a new one."""
        tail, fresh = self._tail, bytearray()
        frozen: list[bytes | bytearray | Repeats] = [bytes(tail)] if tail else []
        if run is not None:
            frozen.append(run)
        frozen.append(fresh)
        if self._parts is None:
            self._parts = frozen
        else:
            self._parts[-1:] = frozen
        self._tail = fresh

    def __bytes__(self) -> bytes:
        tail, parts = self._tail, self._parts  # in this order (see __init__)
        if parts is None:
            return bytes(tail)
        parts = parts[:]  # one C call: the parts and tail as they are now
        # The tail before the runs' counts: a run still open grows only while the tail after
        # it is empty, so counts read after the tail give every byte before it.
        last = bytes(parts.pop())  # a copy, so that nothing holds the tail while it grows
        return b"".join(
            [*(bytes(part) if isinstance(part, Repeats) else part for part in parts), last]
        )

    def __len__(self) -> int:
        tail, parts = self._tail, self._parts
        if parts is None:
            return len(tail)
        parts = parts[:]
        last = len(parts.pop())  # the tail first (see __bytes__)
        return sum(map(len, parts)) + last


@dataclass(frozen=True, slots=True)
class Facts:
    """What a handling's connection was, as its diagram shows it: the client's ``peer``, and
    the ``tls`` and ``proxy_protocol`` facts settled before its first request, and (HTTP/2)
    the connection's frames as they go on (the record's own list, shared, never copied; an
    empty tuple until the first frame: the record then gives its list to these facts)."""

    peer: str
    tls: TLSInfo | None = None
    proxy_protocol: ProxyHeader | None = None
    frames: list[FrameEvent] | tuple[()] = field(default=(), repr=False, compare=False)

    @property
    def events(self) -> list[FrameEvent]:
        """HTTP/2: the connection-level frames both ways, so far (empty on HTTP/1)."""
        return list(self.frames)

    @property
    def summary(self) -> str:
        """The facts a diagram shows beside a request."""
        parts = [f"from {self.peer}"]
        if self.proxy_protocol is not None and self.proxy_protocol.source is not None:
            parts.append(f"PROXY v{self.proxy_protocol.version} {self.proxy_protocol.source}")
        if self.tls is not None:
            parts.append(f"TLS SNI {self.tls.sni}" if self.tls.sni else "TLS, no SNI")
            if self.tls.client_certificate is not None:
                parts.append(f"client cert {_subject(self.tls.client_certificate)}")
        return ", ".join(parts)


@dataclass(eq=False)
class ConnectionRecord:
    """One TCP connection an endpoint accepted. ``id`` is the ``Handling.connection`` of its
    requests; ``peer`` is the client's (the proxy's) ``host:port``; ``closed_by`` is
    ``"client"``, ``"endpoint"``, ``"reset"`` or ``"shutdown"`` (``None`` while open);
    ``received`` and ``sent`` are every byte in and out, TLS removed (up to
    ``transcript_limit`` bytes each way; ``incoming.dropped``/``outgoing.dropped`` count the
    rest). ``handlings`` are those of its requests its endpoint still keeps (its
    ``keep_handlings``): read from ``endpoint_handlings``, the endpoint's own, not kept twice."""

    id: str
    peer: str
    opened_at: float = field(default_factory=time.time)
    closed_at: float | None = None
    closed_by: str | None = None
    tls: TLSInfo | None = None
    proxy_protocol: ProxyHeader | None = None
    transcript_limit: int | None = field(default=None, repr=False)
    # Where its endpoint keeps every connection's handlings, in order of arrival (None: a
    # record of no endpoint's).
    endpoint_handlings: deque[Handling] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.incoming = Transcript(self.transcript_limit)
        self.outgoing = Transcript(self.transcript_limit)
        self._events: list[FrameEvent] | None = None  # made by the first frame (HTTP/2)
        self.events_dropped = 0  # frames past EVENT_LIMIT, counted, not kept
        self._facts: Facts | None = None

    @property
    def facts(self) -> Facts:
        """The connection's facts as they stand (made once, again only if they changed)."""
        facts = self._facts
        if (
            facts is None
            or facts.tls is not self.tls
            or facts.proxy_protocol is not self.proxy_protocol
        ):
            events = self._events
            frames = () if events is None else events
            facts = self._facts = Facts(self.peer, self.tls, self.proxy_protocol, frames)
            if events is None and self._events is not None:  # the first frame came meanwhile
                _give_frames(facts, self._events)
        return facts

    @property
    def events(self) -> list[FrameEvent]:
        """HTTP/2: the connection-level frames both ways, in order (empty on HTTP/1)."""
        events = self._events
        return [] if events is None else events[:]

    def add_event(self, event: FrameEvent) -> None:
        events = self._events
        if events is None:  # the first frame: the list, shared with the facts made so far
            # (setdefault: one list even if two threads come first at once)
            events = self._events = self.__dict__.setdefault("_shared_events", [])
            if self._facts is not None:
                _give_frames(self._facts, events)
        if len(events) >= EVENT_LIMIT:
            self.events_dropped += 1
            return
        events.append(event)  # list.append is atomic: stream threads may add too

    @property
    def handlings(self) -> list[Handling]:
        """The requests that came on this connection, in order: those of them its endpoint
        still keeps (``keep_handlings``), so that many connections hold no more of the record
        than the endpoint does. Read from the endpoint's handlings (one pass over them), not
        kept twice: a request costs the record one append, not two and a trim."""
        kept = self.endpoint_handlings
        if kept is None:
            return []
        me = self.id
        return [handling for handling in kept.copy() if handling.connection == me]

    @property
    def received(self) -> bytes:
        """Every byte the client sent, in order (the first ``transcript_limit`` of them)."""
        return bytes(self.incoming)

    @property
    def sent(self) -> bytes:
        """Every byte the endpoint sent, in order (the first ``transcript_limit`` of them),
        noted as it is handed to the socket: complete once the client has read it (after a
        failed write, ``closed_by`` says so, and the last bytes may not have arrived)."""
        return bytes(self.outgoing)

    def closed(self, by: str) -> None:
        """Note the end of the connection, once: the first reason given is the true one."""
        if self.closed_at is None:
            self.closed_at, self.closed_by = time.time(), by

    @property
    def summary(self) -> str:
        """The facts a diagram shows beside a request."""
        return self.facts.summary


def _give_frames(facts: Facts, events: list[FrameEvent]) -> None:
    """Let ``facts``, made before its connection's first frame, share the frames' list
    (the same facts object: the handlings that refer to it see the frames too)."""
    object.__setattr__(facts, "frames", events)  # (frozen to everyone else)


def _subject(certificate: dict[str, Any]) -> str:
    for rdn in certificate.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return "(no common name)"
