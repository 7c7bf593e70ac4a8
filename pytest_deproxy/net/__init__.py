"""Sockets, timeouts and TLS wrapping: :mod:`.streams` (a connection) and :mod:`.listening`
(the server side), re-exported here; :mod:`.servertls` runs a server side's TLS over memory
buffers on the plain socket (a connection's handshake in fewer system calls).

Rule kept here: this package is the only one that calls the ``socket`` and ``ssl`` APIs, and every
``OSError``, ``TimeoutError`` and ``ssl.SSLError`` leaves it translated into a
:class:`~pytest_deproxy.errors.NetworkError` (or :class:`DeproxyTimeout`) that says what was
being attempted, with the original chained.

A stream can always be woken: :meth:`Stream.shutdown` works at the socket under TLS too, and
keeps the TLS state, so a thread blocked in a read, a write or a handshake returns, and an
answer can still be written inside TLS after the reading side was shut down. A server-side
TLS stream reads a client that closes without ``close_notify`` as an end of file (as
:meth:`Stream.read` always did), not as a fatal TLS error.

A TLS stream whose handshake finished sends ``close_notify`` when it is closed (RFC 8446
6.1), never waiting for the peer's: a client then sees a clean end, and keeps the session
for resumption (OpenSSL drops a session whose connection ended without one). :meth:`Stream.abort`
sends none: a reset is abrupt.

A stream with ``timeout=0`` never waits (``read_ready``, ``write_ready``, ``handshake_ready``),
so that one thread serves many connections, TLS ones included. Every stream on TCP has
``TCP_NODELAY``: an accepted one from its listener (:func:`accepted_stream`, on Linux; no
system call a connection), a connected one set by the stream.
"""

from .listening import LISTEN_BACKLOG, Poller, Source, accept_all, accepted_stream, listen
from .streams import (
    READ_SIZE,
    SharedStream,
    Stream,
    connect,
    format_address,
    translate,
    translate_errors,
)

__all__ = [
    "LISTEN_BACKLOG",
    "READ_SIZE",
    "Poller",
    "SharedStream",
    "Source",
    "Stream",
    "accept_all",
    "accepted_stream",
    "connect",
    "format_address",
    "listen",
    "translate",
    "translate_errors",
]
