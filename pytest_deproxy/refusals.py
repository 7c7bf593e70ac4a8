"""What an endpoint writes to a peer whose request it will not hand to a handler: refusals
(400, 413, 431, 501, 505), requests cut short, and requests the watchdog stopped (408).

Rules kept here: such a request is recorded as any other, as far as it came (its handling
made now if its head never arrived whole), and its handling finished with the reason before
the answer is written; the connection is then closed, noted on its record first. After a
refusal, what the client still sends is read and dropped for a while (``LINGER_SECONDS``),
so that a client still sending reads the refusal rather than a reset.
"""

from __future__ import annotations

import time

from . import responding
from .accepted import Connection
from .answering import Answering
from .errors import DeproxyError, DeproxyTimeout
from .models import Request
from .record import Handling
from .request_reader import CutShort, RequestRefused

LINGER_SECONDS = 5.0  # after a refusal, how long what the client still sends is read and dropped


def refuse(
    answering: Answering,
    connection: Connection,
    refused: RequestRefused,
    handling: Handling | None = None,
) -> bool:
    """Answer a request the endpoint will not hand to a handler (400, 413, 431, 501,
    505), recorded with its reason, then close after draining what still comes."""
    handling = _refreshed(answering, connection, handling, refused.partial, refused.raw)
    answering.record_error(refused)
    status = refused.status_hint
    sent = responding.refusal_response(status, str(refused), handling.request)
    handling.finish(sent, f"refused: {refused}; answered {status} and closed")
    answering.settled(handling)
    stream = connection.stream
    connection.record.closed("endpoint")
    stream.write(b"".join(responding.wire_parts(sent, handling.request)))
    _linger(connection)
    return False


def cut_short(
    answering: Answering,
    connection: Connection,
    cut: CutShort,
    request_timeout: float | None,
    handling: Handling | None = None,
) -> bool:
    """Record a request the client cut short; answer 408 if the watchdog stopped it (after
    ``request_timeout`` s without progress)."""
    handling = _refreshed(answering, connection, handling, cut.partial, cut.raw)
    if not connection.timed_out:
        handling.finish(None, str(cut))
        answering.settled(handling)
        connection.record.closed("reset" if cut.reset else "client")
        return False
    size = len(handling.request.raw_body)
    stalled = DeproxyTimeout(
        f"a request made no progress for {request_timeout} s; answered 408 and closed"
    )
    answering.record_error(stalled)
    sent = responding.refusal_response(408, str(stalled), handling.request)
    handling.finish(sent, f"the request stalled after {size} body bytes: 408 sent")
    answering.settled(handling)
    connection.record.closed("endpoint")
    connection.stream.write(b"".join(responding.wire_parts(sent, handling.request)))
    return False


def _refreshed(
    answering: Answering,
    connection: Connection,
    handling: Handling | None,
    request: Request,
    raw: bytes,
) -> Handling:
    """The handling of a request as far as it came: the one that arrived, or a new one."""
    if handling is None:
        return answering.arrive(connection, request, raw, time.time())
    handling.request = request
    handling.framed_body = raw[len(handling.raw_head) :]
    return handling


def _linger(connection: Connection) -> None:
    """Read and drop what the client still sends for a while before closing, so that a
    client still sending gets to read the refusal rather than a reset."""
    stream = connection.stream
    stream.shutdown(writing_only=True)
    deadline = time.monotonic() + LINGER_SECONDS
    while (left := deadline - time.monotonic()) > 0 and not connection.stopping.is_set():
        stream.timeout = left
        try:
            if not stream.read():
                break
        except DeproxyError:  # the client gave up first, or took too long: close anyway
            break
