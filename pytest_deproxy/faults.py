"""Faults an endpoint can commit on the wire, as data.

A handler returns a :class:`Fault` instead of a ``Response``. Rule kept here: a fault only
*plans* (a list of steps computed from the response as it would be sent); the endpoint records
the Handling, with the fault's description, and then carries the steps out. Pauses and hangs
wait on the endpoint's shutdown, so a hanging handler never holds up ``shutdown()``.

The public names live in :mod:`pytest_deproxy.handlers`: ``close``, ``reset``, ``raw(data)``,
``hang``, ``headers_then_hang(response)``, ``truncate(response, nbytes)``,
``dribble(response, pieces, seconds)``, ``bad_chunk(response)``.

A handler may also return a :class:`Takeover`: a response (``101 Switching Protocols``) and
what then owns the connection. The endpoint records the handling with that response, writes
it, and hands the connection over as an :class:`Upgraded` (WebSocket, a raw tunnel).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .models import Response
from .record import Handling


@dataclass(frozen=True)
class Send:
    data: bytes


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Hang:
    """Wait until the endpoint shuts down (or the peer goes away)."""


@dataclass(frozen=True)
class Close:
    """Close the connection with an orderly FIN."""


@dataclass(frozen=True)
class Reset:
    """Close the connection with a TCP reset (RST)."""


Step = Send | Pause | Hang | Close | Reset
# (the response as it goes on the wire, its head bytes, its framed body bytes) -> steps
Plan = Callable[[Response | None, bytes, bytes], list[Step]]


@dataclass(frozen=True)
class Fault:
    """What a misbehaving server does instead of answering properly.

    ``response`` (may be ``None``) is what it starts to send, recorded on the Handling with
    default headers added as for any response; ``chunked`` asks for chunked framing; a fault
    that ``completes`` leaves the connection usable, like a normal response.
    """

    description: str
    response: Response | None
    plan: Plan
    chunked: bool = False
    completes: bool = False


def close_fault() -> Fault:
    return Fault("closed the connection without answering", None, lambda *_: [Close()])


def reset_fault() -> Fault:
    return Fault("reset the connection (RST) without answering", None, lambda *_: [Reset()])


def raw(data: bytes) -> Fault:
    """Send ``data`` (anything, even not HTTP), then close."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"raw() sends bytes; encode {type(data).__name__} first")
    payload = bytes(data)
    return Fault(
        f"sent {len(payload)} raw bytes, then closed", None, lambda *_: [Send(payload), Close()]
    )


def hang_fault() -> Fault:
    return Fault("hung without answering", None, lambda *_: [Hang()])


def headers_then_hang(response: Response) -> Fault:
    """Send the status line and headers, then nothing more (a proxy's read timeout's test)."""
    return Fault("sent the headers, then hung", response, lambda _, head, __: [Send(head), Hang()])


def truncate(response: Response, nbytes: int) -> Fault:
    """Send the headers (full ``Content-Length``) and ``nbytes`` of the body, then close."""
    if nbytes < 0:
        raise ValueError(f"truncate keeps nbytes >= 0 of the body, got {nbytes}")
    total = len(response.raw_body)
    if nbytes >= total:
        raise ValueError(f"truncate needs nbytes below the body's {total} bytes, got {nbytes}")
    return Fault(
        f"sent the headers and {nbytes} of {total} body bytes, then closed",
        response,
        lambda _, head, body: [Send(head + body[:nbytes]), Close()],
    )


def dribble(response: Response, pieces: int, seconds: float, *, chunked: bool = False) -> Fault:
    """Send the whole response in ``pieces`` parts, ``seconds`` apart (chunked framing if asked)."""
    if pieces < 1 or seconds < 0:
        raise ValueError("dribble takes pieces >= 1 and seconds >= 0")

    def plan(_: Response | None, head: bytes, body: bytes) -> list[Step]:
        data = head + body
        size = max(1, -(-len(data) // pieces))
        parts = [data[start : start + size] for start in range(0, len(data), size)]
        steps: list[Step] = []
        for number, part in enumerate(parts):
            if number:
                steps.append(Pause(seconds))
            steps.append(Send(part))
        return steps

    framing = "chunked " if chunked else ""
    return Fault(
        f"sent the {framing}response in {pieces} pieces, {seconds} s apart",
        response,
        plan,
        chunked=chunked,
        completes=True,
    )


def bad_chunk(response: Response) -> Fault:
    """Send chunked headers, then a chunk whose size is not hexadecimal, then close."""
    return Fault(
        "sent chunked headers, then a malformed chunk, then closed",
        response,
        lambda _, head, __: [Send(head + b"zz\r\nthis is not a chunk\r\n"), Close()],
        chunked=True,
    )


class Duplex(Protocol):
    """A connection taken over after an upgrade: one thread may read while another writes
    (a ``net.SharedStream``). ``read`` returns ``b""`` once the peer closed its side, or once
    the endpoint shuts down; ``timeout`` bounds each wait (``None``: none)."""

    timeout: float | None

    def read(self, max_bytes: int = ...) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def shutdown(self, *, reading_only: bool = False, writing_only: bool = False) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


@dataclass(frozen=True)
class Upgraded:
    """What a takeover is given once its response was written: the connection's ``stream``,
    the bytes that came after the request (``early``: already the new protocol's), the
    ``handling`` of the request that asked for the upgrade, the endpoint's ``stopping`` event
    (set when it shuts down; the stream's reads then return ``b""``), ``report`` (an error
    that must fail the test) and ``closed`` (note who ended the connection: ``"client"``,
    ``"endpoint"`` or ``"reset"``)."""

    stream: Duplex
    early: bytes
    handling: Handling
    stopping: threading.Event
    report: Callable[[BaseException], None]
    closed: Callable[[str], None]


@dataclass(frozen=True)
class Takeover:
    """Answer with ``response`` (a ``101 Switching Protocols``), then let ``run`` own the
    connection until it returns; the connection is closed after it. ``description`` is the
    handling's ``action`` (``None`` for an ordinary upgrade)."""

    response: Response
    run: Callable[[Upgraded], None]
    description: str | None = None
