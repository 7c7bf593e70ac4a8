"""A connection as a server holds it, and how it begins on a thread of its own.

:class:`Connection` is one accepted connection: its stream and reader (replaced when it turns
to TLS) and its record. :class:`Responder` is what a :class:`~pytest_deproxy.serving.Server`
asks of whoever answers on it. :func:`take_proxy_header` and :func:`start_tls` are what a
connection does first, on its own thread, when it begins with a PROXY protocol header or
turns to TLS after one (or after a CONNECT).

Rule kept here: what a connection settled as it began (its PROXY header, its TLS facts) is on
its record before anything is read from it as HTTP; a connection refused for its beginning is
closed, noted on its record, and the reason reaches the server's errors.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from typing import NamedTuple, Protocol

from . import net, proxyproto
from .connections import ConnectionRecord, TLSInfo
from .errors import DeproxyError
from .models import Request
from .request_reader import Arrival, RequestReader

# How long a TLS handshake, or a PROXY protocol header, may take: a stalled start holds a thread.
TLS_HANDSHAKE_TIMEOUT = 10.0


class Connection:
    """One accepted connection: its stream and reader (replaced when it turns to TLS), and
    its record."""

    def __init__(
        self,
        stream: net.Stream,
        record: ConnectionRecord,
        max_body_size: int | None,
        stopping: threading.Event | None = None,
    ) -> None:
        self.id = record.id
        self.record = record
        self.tunnel: str | None = None  # the CONNECT authority, once a tunnel was opened
        self.timed_out = False  # set by the watchdog when a request stalled
        self.max_body_size = max_body_size
        # The server's: set when it shuts down.
        self.stopping = stopping if stopping is not None else threading.Event()
        self.start_tls_hook: Callable[[Connection, ssl.SSLContext], None] | None = None
        # A TLS connection whose handshake the poll thread runs: when it must be done by.
        self.handshake_deadline: float | None = None
        # What the responder began on the poll thread for the request it then handed to a
        # thread (``first``), for that thread to finish; serving never looks inside.
        self.carried_over: object | None = None
        # While a handler runs on the connection's thread, the poll thread watches for the
        # client leaving ("client": a FIN, "reset": a RST): a proxy cancelling the request.
        self.hung_up: str | None = None
        self.hangup_poller: net.Poller | None = None
        stream.on_read, stream.on_write = record.incoming.tap(), record.outgoing.tap()
        self.use(stream)

    def use(self, stream: net.Stream) -> None:
        self.stream = stream
        self.reader = RequestReader(stream, max_body_size=self.max_body_size)

    def start_tls(self, context: ssl.SSLContext) -> None:
        """Turn the connection to TLS (a server-side handshake), and note what it settled."""
        assert self.start_tls_hook is not None
        self.start_tls_hook(self, context)

    def watch_hangup(self) -> None:
        """From now until :meth:`unwatch_hangup`, note (``hung_up``, and on the record, when)
        the client closing or resetting the connection, while nobody reads it."""
        if self.hangup_poller is not None and self.hung_up is None:
            self.hangup_poller.watch_hangup(self.stream, Hangup(self))

    def unwatch_hangup(self) -> None:
        if self.hangup_poller is not None:
            self.hangup_poller.forget(self.stream)


class Hangup:
    """The poll thread's key for a connection watched only for the client leaving."""

    __slots__ = ("connection",)

    def __init__(self, connection: Connection) -> None:
        self.connection = connection


class Handoff(NamedTuple):
    """What the poll thread leaves to a connection's own thread: the answers it made before
    (``unsent``, in order) and the request it read but may not answer (``first``, as an
    ``Arrival`` and its body's bytes)."""

    unsent: bytes
    first: tuple[Arrival, bytes] | None


class Responder(Protocol):
    """What a server asks of whoever answers on it (an endpoint's ``Http1Responder``)."""

    def answer_polled(
        self, connection: Connection, request: Request, raw_head: bytes, at: float
    ) -> tuple[bytes, bool] | None:
        """Answer a whole, ordinary request on the poll thread (as ``read_buffered`` read
        it: the request with its body, its head's bytes, when it arrived), if that can never
        wait: the bytes to send and whether to keep the connection; ``None``: it needs a
        thread (which is handed it as an ``Arrival``)."""

    def answer_alone(
        self, connection: Connection, data: bytes
    ) -> tuple[bytes, bool] | Handoff | None:
        """Answer ``data``, read with nothing pending before it, on the poll thread, if it
        is one whole request and nothing more (the commonest read): as
        :meth:`answer_polled`, a :class:`Handoff` when it needs a thread. ``None``:
        ``data`` is pending in ``connection.reader``, for :meth:`answer_polled`."""

    def serve(self, connection: Connection, first: tuple[Arrival, bytes] | None) -> None:
        """Serve the connection on its own thread (``first``: a request the poll thread read)
        until it should close; note on ``connection.record`` who ended it."""

    def report(self, error: BaseException) -> None:
        """An error that must fail the test: an exception of this package's own, raised in a
        server thread, or a thread that would not stop."""


def start_tls(connection: Connection, context: ssl.SSLContext, stopping: threading.Event) -> None:
    """Turn the connection to TLS. The TLS stream is the connection's before the handshake
    starts, so that shutdown (which sets ``stopping``, then shuts down each connection's
    stream) wakes a stalled handshake too; wrapping the socket leaves the old stream
    nothing to shut down."""
    stream = connection.stream
    stream.timeout = TLS_HANDSHAKE_TIMEOUT  # a stalled handshake must not hold a thread
    stream = stream.start_tls(context, server_side=True, handshake=False)
    connection.use(stream)
    if stopping.is_set():  # shutdown may have looked before use(): it missed this one
        stream.shutdown()
    stream.handshake()
    stream.timeout = None
    note_tls(connection)


def note_tls(connection: Connection) -> None:
    """Put what the TLS handshake settled on the connection's record."""
    facts = connection.stream.tls_facts()
    if facts is not None:
        connection.record.tls = TLSInfo(**facts)


def take_proxy_header(
    connection: Connection, *, optional: bool, refuse: Callable[[DeproxyError], None]
) -> bool:
    """Read the PROXY protocol header a connection begins with, byte by byte so as not
    to read into what follows it (a TLS handshake reads from the socket itself); whether
    the connection goes on. One that does not begin with a header (unless ``optional``) or
    with a broken one is refused: ``refuse`` is told why, and the connection is closed."""
    stream = connection.stream
    stream.timeout = TLS_HANDSHAKE_TIMEOUT
    received = b""
    while True:
        if not proxyproto.could_begin(received + stream.peek(1)):
            if optional:
                connection.reader.pending = received  # a plain request, already begun
                stream.timeout = None
                return True
            return _refuse(connection, refuse, received + stream.peek(64))
        wanted = 1  # a v1 header is a line: read to its end a byte at a time
        signature = proxyproto.V2_SIGNATURE
        if received.startswith(signature) and len(received) >= len(signature) + 4:
            wanted = max(1, proxyproto.v2_size(received) - len(received))
        data = stream.read(wanted)
        if not data:
            connection.record.closed("client")
            return False
        received += data
        try:
            found = proxyproto.read(received)
        except proxyproto.ProxyHeaderError as exc:
            return _refuse(connection, refuse, received, exc)
        if found is not None:
            connection.record.proxy_protocol = found[0]
            stream.timeout = None
            return True


def _refuse(
    connection: Connection,
    refuse: Callable[[DeproxyError], None],
    began: bytes,
    error: Exception | None = None,
) -> bool:
    reason = str(error) if error else f"it began {began[:32]!r}"
    refuse(
        DeproxyError(
            f"connection {connection.id} from {connection.record.peer} was closed: it "
            f"did not begin with a PROXY protocol header ({reason}); the endpoint was "
            "made with proxy_protocol=True"
        )
    )
    connection.record.closed("endpoint")
    return False
