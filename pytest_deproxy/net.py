"""Sockets, timeouts and TLS wrapping.

Rule kept here: this is the only module that calls the ``socket`` and ``ssl`` APIs, and every
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
so that one thread serves many connections, TLS ones included.
"""

from __future__ import annotations

import errno
import os
import select
import selectors
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .errors import ConnectionReset, DeproxyTimeout, NetworkError

READ_SIZE = 65536
_IGNORE_UNEXPECTED_EOF = getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)  # OpenSSL 3 and later


def translate(exc: OSError, doing: str) -> NetworkError:
    """This project's error for a socket or TLS failure, saying what was being done."""
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError
        return DeproxyTimeout(f"timed out {doing}")
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None) or str(exc)
        return NetworkError(f"TLS failed {doing}: {reason}")
    if isinstance(exc, ConnectionRefusedError):
        return NetworkError(f"connection refused {doing}")
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return ConnectionReset(f"connection reset by peer {doing}")
    return NetworkError(f"{exc.strerror or exc} {doing}")


@contextmanager
def translate_errors(doing: str) -> Iterator[None]:
    """Re-raise socket and TLS failures as this project's errors (see :func:`translate`)."""
    try:
        yield
    except OSError as exc:
        raise translate(exc, doing) from exc


class Stream:
    """A connected socket (plain or TLS) with a timeout: what the framing layer reads and writes.

    ``timeout`` bounds each blocking read or write; ``None`` waits for ever.
    """

    # Who wants to see every byte that crosses: a connection's record (None: nobody). They see
    # the bytes inside TLS, and follow the connection when it turns to TLS.
    # Bytes written are shown *before* they go, so that a record is complete by the time the
    # peer can read them (a failed write then shows bytes that may not all have left).
    on_read: Callable[[bytes], None] | None = None
    on_write: Callable[[bytes], None] | None = None
    _shown_ahead = 0  # bytes write_ready() showed but the socket did not take: write() skips them
    _handshaken = False  # a TLS handshake finished: close() sends close_notify

    def __init__(self, sock: socket.socket, peer: str, timeout: float | None = None) -> None:
        self._sock = sock
        self.peer = peer
        self._closed = False
        self._tls = isinstance(sock, ssl.SSLSocket)
        sock.settimeout(timeout)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def timeout(self) -> float | None:
        return self._sock.gettimeout()

    @timeout.setter
    def timeout(self, seconds: float | None) -> None:
        if seconds != self._sock.gettimeout():
            self._sock.settimeout(seconds)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def addresses(self) -> tuple[str, str]:
        """``("host:port", "host:port")``: this end's address and the peer's."""
        with translate_errors(f"reading the addresses of the connection to {self.peer}"):
            local, remote = self._sock.getsockname(), self._sock.getpeername()
        return format_address(local[0], local[1]), format_address(remote[0], remote[1])

    def read(self, max_bytes: int = READ_SIZE) -> bytes:
        """Up to ``max_bytes``; ``b""`` when the peer has closed its side."""
        try:  # the hot path: nothing is set up unless something goes wrong
            data = self._sock.recv(max_bytes)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""
        except OSError as exc:
            raise translate(exc, f"reading from {self.peer}") from exc
        if data and self.on_read is not None:
            self.on_read(data)
        return data

    def reset_by_peer(self) -> bool:
        """Whether the peer reset the connection (RST), rather than closed its side (FIN)."""
        try:
            pending = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError:
            return True
        return pending in (errno.ECONNRESET, errno.EPIPE)

    def peek(self, max_bytes: int) -> bytes:
        """What has arrived, without taking it (a plain socket only: before any TLS)."""
        try:
            return self._sock.recv(max_bytes, socket.MSG_PEEK)
        except OSError as exc:
            raise translate(exc, f"reading from {self.peer}") from exc

    def write(self, data: bytes) -> None:
        if self.on_write is not None:
            skipped = min(self._shown_ahead, len(data))
            self._shown_ahead -= skipped
            if skipped < len(data):
                self.on_write(data[skipped:])
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise translate(exc, f"writing to {self.peer}") from exc

    # A stream with ``timeout=0`` never waits: a poller says when to read, and these say how
    # much could be done at once.

    def read_ready(self, max_bytes: int = READ_SIZE) -> bytes | None:
        """What has arrived (``b""``: the peer closed), or ``None`` if nothing has yet.

        Under TLS, what the TLS layer already holds decrypted is read too: no poller would
        say it is there, since it has left the socket."""
        try:
            data = self._sock.recv(max_bytes)
            if self._tls and data:
                sock: Any = self._sock
                while (held := sock.pending()) > 0:
                    data += sock.recv(held)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""
        except OSError as exc:
            raise translate(exc, f"reading from {self.peer}") from exc
        if data and self.on_read is not None:
            self.on_read(data)
        return data

    def write_ready(self, data: bytes) -> int:
        """Write as much of ``data`` as the connection takes now; return how many bytes.
        The rest is to be given to :meth:`write` next (it is shown to ``on_write`` already)."""
        if self.on_write is not None and data:
            self.on_write(data)
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            sent = 0
        except OSError as exc:
            raise translate(exc, f"writing to {self.peer}") from exc
        if self.on_write is not None:
            self._shown_ahead += len(data) - sent
        return sent

    def fileno(self) -> int:
        return self._sock.fileno()

    def start_tls(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        handshake: bool = True,
    ) -> Stream:
        """Wrap this connection in TLS and run the handshake; the new stream replaces this one.

        ``handshake=False`` leaves the handshake to :meth:`handshake`, so that the caller can
        make the new stream the one to wake before anything waits on it: this stream is
        empty once wrapped, and shutting it down wakes nothing.
        """
        timeout = self._sock.gettimeout()
        if server_side and not context.options & _IGNORE_UNEXPECTED_EOF:
            # An EOF without close_notify (a client gone, or the reading side shut down by a
            # watchdog) is then an end of file, after which a 408 can still be written.
            context.options |= _IGNORE_UNEXPECTED_EOF
        if server_side and context.sni_callback is None:
            context.sni_callback = _remember_server_name
        with translate_errors(f"in the TLS handshake with {self.peer}"):
            wrapped = context.wrap_socket(
                self._sock,
                server_side=server_side,
                server_hostname=None if server_side else server_hostname,
                do_handshake_on_connect=False,
            )
        stream = Stream(wrapped, self.peer, timeout)
        stream.on_read, stream.on_write = self.on_read, self.on_write
        if handshake:
            try:
                stream.handshake()
            except BaseException:
                stream.close()
                raise
        return stream

    def handshake(self) -> None:
        """Run the TLS handshake of a stream :meth:`start_tls` made with ``handshake=False``."""
        assert isinstance(self._sock, ssl.SSLSocket)
        with translate_errors(f"in the TLS handshake with {self.peer}"):
            self._sock.do_handshake()
        self._handshaken = True

    def handshake_ready(self) -> str:
        """Go on with the TLS handshake of a stream with ``timeout=0`` (one that
        :meth:`start_tls` made with ``handshake=False``) as far as it can without waiting:
        ``"done"``, or what it waits for, ``"read"`` (more from the peer) or ``"write"``
        (room to send). A failed handshake raises, as :meth:`handshake` does."""
        assert isinstance(self._sock, ssl.SSLSocket)
        try:
            self._sock.do_handshake()
        except ssl.SSLWantReadError:
            return "read"
        except ssl.SSLWantWriteError:
            return "write"
        except OSError as exc:
            raise translate(exc, f"in the TLS handshake with {self.peer}") from exc
        self._handshaken = True
        return "done"

    def tls_facts(self) -> dict[str, Any] | None:
        """What a finished server-side TLS handshake settled (``None`` on a plain stream):
        ``sni``, ``alpn``, ``version``, ``cipher``, ``client_certificate``."""
        sock = self._sock
        if not isinstance(sock, ssl.SSLSocket):
            return None
        cipher = sock.cipher()
        return {
            "sni": getattr(sock, "deproxy_server_name", None),
            "alpn": sock.selected_alpn_protocol(),
            "version": sock.version(),
            "cipher": cipher[0] if cipher else None,
            "client_certificate": sock.getpeercert() or None,
            "resumed": sock.session_reused,
        }

    def shutdown(self, *, reading_only: bool = False, writing_only: bool = False) -> None:
        """Wake any thread blocked on this stream: a read sees end of file, a write or a TLS
        handshake fails.

        ``reading_only`` leaves the writing side open, so an answer can still be sent;
        ``writing_only`` sends end of file to the peer and leaves the reading side open.
        """
        how = (
            socket.SHUT_RD if reading_only else socket.SHUT_WR if writing_only else socket.SHUT_RDWR
        )
        try:
            # At the socket, not SSLSocket.shutdown(): that one also drops the TLS state, so a
            # later write would go out in plaintext into the TLS connection.
            socket.socket.shutdown(self._sock, how)
        except OSError:
            pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        sock = self._sock
        if self._handshaken:
            # close_notify, but no TLS unwrap(): that waits for the peer's close_notify, which
            # a test peer may never send. Non-blocking, the shutdown sends ours and returns.
            try:
                if sock.gettimeout() != 0:  # a polled stream is non-blocking already
                    sock.settimeout(0)
                sock._sslobj.shutdown()  # type: ignore[attr-defined]
            except (OSError, AttributeError, ValueError):
                pass  # wants the peer's (the usual case), or the connection is gone
        try:
            sock.close()
        except OSError:
            pass

    def abort(self) -> None:
        """Close with a TCP reset (RST) instead of an orderly FIN (and no close_notify)."""
        self._handshaken = False
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()


class SharedStream:
    """A stream that one thread reads while another writes (a WebSocket, a tunnel), TLS too.

    OpenSSL does not promise that a TLS connection may be read in one thread while it is
    written in another. Under TLS the socket is made non-blocking and every TLS call is made
    under one lock that is never held while waiting: a reader waits, outside the lock, for
    the socket to be readable, a writer for it to take more. A plain socket is used as it
    is: the kernel lets one thread read while another writes. Writers take turns (one at a
    time), as do readers. ``timeout`` bounds each wait, as on :class:`Stream`.
    """

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.peer = stream.peer
        self._tls = isinstance(stream._sock, ssl.SSLSocket)
        self._timeout = stream.timeout
        self._lock = threading.Lock()
        if self._tls:
            stream._sock.settimeout(0)

    @property
    def timeout(self) -> float | None:
        return self._timeout if self._tls else self.stream.timeout

    @timeout.setter
    def timeout(self, seconds: float | None) -> None:
        if self._tls:
            self._timeout = seconds
        else:
            self.stream.timeout = seconds

    def read(self, max_bytes: int = READ_SIZE) -> bytes:
        """Up to ``max_bytes``; ``b""`` when the peer has closed its side."""
        if not self._tls:
            return self.stream.read(max_bytes)
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            with self._lock:  # a TLS record half read waits for the rest outside the lock
                data = self.stream.read_ready(max_bytes)
            if data is not None:
                return data
            self._wait(select.POLLIN, deadline, "reading from")

    def write(self, data: bytes) -> None:
        if not self._tls:
            self.stream.write(data)
            return
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while data:
            with self._lock:  # a TLS write that must wait is retried with the same bytes
                sent = self.stream.write_ready(data)
            if sent:
                data = data[sent:]
            elif not self._wait(select.POLLOUT, deadline, "writing to"):
                time.sleep(0.001)  # writable, yet TLS wants to read first: the reader will

    def _wait(self, event: int, deadline: float | None, doing: str) -> bool:
        """Wait until the socket is ready for ``event``; whether it had to wait at all."""
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise DeproxyTimeout(f"timed out {doing} {self.peer}")
        descriptor = self.stream.fileno()
        if descriptor < 0:  # closed under this thread: nothing will ever be ready
            raise NetworkError(f"the connection to {self.peer} is closed, {doing} it")
        poll = select.poll()  # not a selector: it holds no file descriptor of its own
        poll.register(descriptor, event)
        if poll.poll(0):
            return False
        poll.poll(None if left is None else left * 1000)
        return True

    def shutdown(self, *, reading_only: bool = False, writing_only: bool = False) -> None:
        self.stream.shutdown(reading_only=reading_only, writing_only=writing_only)

    def close(self) -> None:
        with self._lock:  # its close_notify is a TLS call too (none waits under the lock)
            self.stream.close()

    def abort(self) -> None:
        with self._lock:
            self.stream.abort()

    def fileno(self) -> int:
        return self.stream.fileno()


def _remember_server_name(
    sock: ssl.SSLSocket | ssl.SSLObject, server_name: str | None, _: ssl.SSLContext
) -> None:
    """The SNI callback of server contexts: keeps the name the client asked for."""
    sock.deproxy_server_name = server_name  # type: ignore[union-attr]


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect(host: str, port: int, timeout: float | None) -> Stream:
    """Open a TCP connection, failing within ``timeout`` seconds."""
    address = format_address(host, port)
    family, sockaddr = _literal_address(host, port)
    with translate_errors(f"connecting to {address}"):
        if not family:  # a name: the resolver, and each address it gives in turn
            sock = socket.create_connection((host, port), timeout=timeout)
        else:  # an IP literal (a test's endpoint): no lookup, no IDNA encoding of the host
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(sockaddr)
            except BaseException:
                sock.close()
                raise
    return Stream(sock, address, timeout)


# How many connections may wait to be accepted. A burst of a thousand connects (a load test
# opening its connections at once) then waits in the queue instead of overflowing it into
# SYN retries a second apart; the kernel caps it (Linux: net.core.somaxconn, 4096 since 5.4).
LISTEN_BACKLOG = 4096


def _literal_address(hostname: str, port: int) -> tuple[int, Any]:
    """``(family, address)`` of a plain IPv4 or IPv6 literal such as ``127.0.0.1`` or ``::1``
    (what getaddrinfo would give), or ``(0, None)`` for anything else (a port that is not an
    int included: getaddrinfo says what is wrong with it)."""
    if not isinstance(port, int) or isinstance(port, bool):
        return 0, None
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, hostname)
        except (OSError, ValueError, TypeError):
            continue
        return family, (hostname, port) if family == socket.AF_INET else (hostname, port, 0, 0)
    return 0, None


def listen(hostname: str, port: int, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """A non-blocking listening socket on ``hostname:port`` (0 takes a free port), for a
    poller to watch and :func:`accept_all` to accept from.

    ``SO_REUSEADDR`` is set so that a port an endpoint just released can be bound again at once.
    """
    family, sockaddr = _literal_address(hostname, port)
    if not family:  # a name: the resolver says which address (a literal needs no lookup)
        try:
            infos = socket.getaddrinfo(
                hostname, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as exc:
            raise NetworkError(f"cannot listen on {hostname!r}: {exc.strerror}") from exc
        family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        address = format_address(hostname, port)
        if exc.errno == errno.EADDRINUSE:
            raise NetworkError(
                f"cannot listen on {address}: the port is already in use; "
                "stop whatever holds it, or pass port=0 to take a free port"
            ) from exc
        if exc.errno == errno.EACCES:
            raise NetworkError(
                f"cannot listen on {address}: permission denied (ports below 1024 need "
                "privileges); pass port=0 to take a free port"
            ) from exc
        raise NetworkError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
    return sock


def accept_all(
    listener: socket.socket, limit: int = LISTEN_BACKLOG
) -> list[tuple[socket.socket, str]]:
    """Accept every connection waiting on a non-blocking ``listener`` (at most ``limit``):
    one wake-up of a poller takes a whole burst, not one connection of it."""
    accepted: list[tuple[socket.socket, str]] = []
    while len(accepted) < limit:
        try:
            sock, addr = listener.accept()
        except (BlockingIOError, InterruptedError):
            break  # none waits
        except OSError as exc:
            if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                continue  # that client gave up before it was accepted: the next may not have
            break  # out of descriptors, say: the poller wakes again while any waits
        accepted.append((sock, format_address(str(addr[0]), int(addr[1]))))
    return accepted


_FORGOTTEN = object()  # what a descriptor no longer watched stands for
_WAKE = object()  # the key of a poller's own wake-up descriptor


class Poller:
    """Tells which of many sockets (listeners, or streams) have something to read.

    Each is watched under a key of the caller's; :meth:`ready` returns the keys. Another
    thread can :meth:`wake` a thread waiting in :meth:`ready` (it then returns, perhaps with
    no key). On Linux it is epoll itself (a third of the cost of ``selectors`` per wake-up,
    on the hot path of a server under load), woken through an eventfd it watches itself: one
    descriptor and no socket objects, for a server that lives for one test and makes and
    closes a poller each time. Elsewhere, ``selectors``, woken by a byte through a socket pair.
    """

    def __init__(self) -> None:
        self._epoll = select.epoll() if hasattr(select, "epoll") else None
        self._selector = None if self._epoll is not None else selectors.DefaultSelector()
        self._keys: dict[int, object] = {}  # descriptor: key (epoll)
        self._watched: dict[object, int] = {}  # source: descriptor, for forget() (epoll)
        self._wake_fd = -1  # the eventfd (epoll)
        self._wake_in: socket.socket | None = None  # the socket pair (selectors)
        self._wake_out: socket.socket | None = None
        self._closed = False
        self._close_lock = threading.Lock()  # wake() never writes to a descriptor closed
        if self._epoll is not None and hasattr(os, "eventfd"):
            self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._epoll.register(self._wake_fd, select.EPOLLIN)
            self._keys[self._wake_fd] = _WAKE
            return
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self.watch(self._wake_in, _WAKE)

    def wake(self) -> None:
        """Make a :meth:`ready` waiting in another thread return (safe after :meth:`close`)."""
        if self._wake_out is not None:
            try:
                self._wake_out.send(b"\0")
            except OSError:  # a byte already waits (the pair is full), or the poller is closed
                pass
            return
        with self._close_lock:  # once closed, the descriptor's number may be another's
            if not self._closed:
                try:
                    os.eventfd_write(self._wake_fd, 1)
                except OSError:  # the counter is full: a wake-up waits already
                    pass

    def watch(self, source: socket.socket | Stream, key: object) -> None:
        if self._epoll is None:
            assert self._selector is not None
            self._selector.register(source, selectors.EVENT_READ, key)
            return
        descriptor = source.fileno()
        self._epoll.register(descriptor, select.EPOLLIN)
        self._keys[descriptor] = key
        self._watched[source] = descriptor

    def watch_hangup(self, source: Stream, key: object) -> bool:
        """Watch ``source`` only for its peer closing (FIN) or resetting (RST) it, not for
        what it sends (whoever owns the stream reads that); ``False`` where only
        ``selectors`` is at hand, which cannot tell the two apart."""
        if self._epoll is None:
            return False
        descriptor = source.fileno()
        try:
            self._epoll.register(descriptor, select.EPOLLRDHUP)
        except (OSError, ValueError):  # watched already, or the poller closed (shutdown)
            return False
        self._keys[descriptor] = key
        self._watched[source] = descriptor
        return True

    def forget(self, source: socket.socket | Stream) -> None:
        """Stop watching ``source`` (nothing happens if it was not watched)."""
        if self._epoll is None:
            assert self._selector is not None
            try:
                self._selector.unregister(source)
            except (KeyError, ValueError):
                pass
            return
        descriptor = self._watched.pop(source, None)
        if descriptor is None:
            return
        self._keys.pop(descriptor, None)
        try:
            self._epoll.unregister(descriptor)
        except (OSError, ValueError):  # the descriptor, or the poller, is closed already
            pass

    def ready(self, timeout: float | None = None) -> list[object]:
        """Wait until something can be read, or :meth:`wake` is called, or ``timeout`` s
        passed (``None``: no limit); the keys of whatever can be read."""
        if self._epoll is not None:
            try:
                events = self._epoll.poll(-1 if timeout is None else timeout)
            except InterruptedError:
                return []
            keys = self._keys
            sources = [keys.get(descriptor, _FORGOTTEN) for descriptor, _ in events]
        else:
            assert self._selector is not None
            sources = [key.data for key, _ in self._selector.select(timeout)]
        found = []
        for source in sources:
            if source is _WAKE:
                self._drain_wake()
            elif source is not _FORGOTTEN:
                found.append(source)
        return found

    def _drain_wake(self) -> None:
        try:
            if self._wake_in is None:
                os.eventfd_read(self._wake_fd)
            else:
                self._wake_in.recv(4096)
        except OSError:  # nothing to read after all (another ready() took it)
            pass

    def close(self) -> None:
        """Close the poller (again: nothing happens)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            if self._wake_in is None:
                os.close(self._wake_fd)
        if self._epoll is not None:
            self._epoll.close()
        if self._selector is not None:
            self._selector.close()
        if self._wake_in is not None:
            assert self._wake_out is not None
            self._wake_in.close()
            self._wake_out.close()
