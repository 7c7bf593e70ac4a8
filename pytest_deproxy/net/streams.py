"""Streams: one connection's socket, its timeouts and its TLS, and opening one (:func:`connect`).
See :mod:`pytest_deproxy.net` for the rules the package keeps.
"""

from __future__ import annotations

import errno
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import ConnectionReset, DeproxyTimeout, NetworkError
from .servertls import ServerTLS

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
    # Who waits for a plain stream to be readable, given its timeout, before each read (a
    # caller that serves its endpoints meanwhile: see servingwait); False: it timed out.
    wait_readable: Callable[[float | None], bool] | None = None
    _shown_ahead = 0  # bytes write_ready() showed but the socket did not take: write() skips them
    _handshaken = False  # a TLS handshake finished: close() sends close_notify

    def __init__(
        self,
        sock: socket.socket | ServerTLS,
        peer: str,
        timeout: float | None = None,
        *,
        nodelay: bool = True,
    ) -> None:
        """``nodelay=False``: the socket has ``TCP_NODELAY`` already (one accepted from a
        listener that passes it on: see :func:`~.listening.accepted_stream`)."""
        self._sock = sock
        self.peer = peer
        self._closed = False
        self._tls = isinstance(sock, (ssl.SSLSocket, ServerTLS))
        if sock.gettimeout() != timeout:
            sock.settimeout(timeout)
        if nodelay and not isinstance(sock, ServerTLS):  # whose socket has it already
            try:  # not asking sock.family first: it makes an enum each time (~2 us)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    raise  # not a Unix socket's refusal

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
        if self.wait_readable is not None and not self.wait_readable(self._sock.gettimeout()):
            raise translate(TimeoutError("timed out"), f"reading from {self.peer}")
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
        sock = self._sock
        assert not self._tls and isinstance(sock, socket.socket)
        try:
            return sock.recv(max_bytes, socket.MSG_PEEK)
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

    def write_ready(self, data: bytes, *, last: bool = False) -> int:
        """Write as much of ``data`` as the connection takes now; return how many bytes.
        The rest is to be given to :meth:`write` next (it is shown to ``on_write`` already).
        ``last``: the stream is closed next, nothing written after ``data``; a server-side
        TLS stream then sends its ``close_notify`` with ``data`` (one write, not two)."""
        on_write = self.on_write
        if on_write is not None and data:
            on_write(data)
        try:
            if last and type(self._sock) is ServerTLS and self._handshaken:
                sent = self._sock.send(data, last=True)
            else:
                sent = self._sock.send(data)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            sent = 0
        except OSError as exc:
            raise translate(exc, f"writing to {self.peer}") from exc
        if on_write is not None and sent != len(data):  # (nearly always all of it is taken)
            self._shown_ahead += len(data) - sent
        return sent

    def fileno(self) -> int:
        return self._sock.fileno()

    @classmethod
    def serving_tls(
        cls, sock: socket.socket, peer: str, context: ssl.SSLContext, timeout: float | None
    ) -> Stream:
        """A server-side TLS stream on a plain, connected ``sock`` that has ``TCP_NODELAY``
        (an accepted one), its handshake not begun (:meth:`handshake_ready` or
        :meth:`handshake` runs it): what :meth:`start_tls` makes of a server side, without a
        plain stream first."""
        if sock.gettimeout() != timeout:
            sock.settimeout(timeout)
        if not getattr(context, "_deproxy_server_side", False):
            _serve_with(context)
        try:  # (no translate_errors here: its context manager costs ~1.5 us a connection)
            wrapped = ServerTLS(sock, context)
        except OSError as exc:
            raise translate(exc, f"in the TLS handshake with {peer}") from exc
        return cls(wrapped, peer, timeout)

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
        make the new stream the one to wake before anything waits on it: the socket is
        the new stream's once wrapped (this one's close does nothing then).

        A server side runs TLS over memory buffers (:class:`~.servertls.ServerTLS`, fewer
        system calls); a client side is an ``ssl.SSLSocket``.
        """
        plain = self._sock
        assert not self._tls and isinstance(plain, socket.socket), "this stream is TLS already"
        timeout = plain.gettimeout()
        if server_side:
            stream = Stream.serving_tls(plain, self.peer, context, timeout)
            self._closed = True  # the socket is the new stream's now (close it there)
        else:
            with translate_errors(f"in the TLS handshake with {self.peer}"):
                wrapped = context.wrap_socket(
                    plain, server_hostname=server_hostname, do_handshake_on_connect=False
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
        sock: Any = self._sock
        assert self._tls
        with translate_errors(f"in the TLS handshake with {self.peer}"):
            sock.do_handshake()
        self._handshaken = True

    def handshake_ready(self) -> str:
        """Go on with the TLS handshake of a stream with ``timeout=0`` (one that
        :meth:`start_tls` made with ``handshake=False``) as far as it can without waiting:
        ``"done"``, or what it waits for, ``"read"`` (more from the peer) or ``"write"``
        (room to send). A failed handshake raises, as :meth:`handshake` does."""
        sock: Any = self._sock
        assert self._tls
        try:
            if type(sock) is ServerTLS:
                state = sock.handshake_step()
                if state == "done":
                    self._handshaken = True
                return state
            sock.do_handshake()
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
        sock: Any = self._sock
        if type(sock) is ServerTLS:
            return sock.facts()
        if not self._tls:
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
            sock = self._sock
            socket.socket.shutdown(sock.raw if isinstance(sock, ServerTLS) else sock, how)
        except OSError:
            pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        sock: Any = self._sock
        if self._handshaken and type(sock) is ServerTLS:
            sock.close_notify()  # not waiting, as below
        elif self._handshaken:
            # close_notify, but no TLS unwrap(): that waits for the peer's close_notify, which
            # a test peer may never send. Non-blocking, the shutdown sends ours and returns.
            try:
                if sock.gettimeout() != 0:  # a polled stream is non-blocking already
                    sock.settimeout(0)
                sock._sslobj.shutdown()
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
        self._tls = stream._tls
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


def _serve_with(context: ssl.SSLContext) -> None:
    """Make ``context`` fit for a server side, once (the checks cost ~8 us a connection:
    ``options`` makes a flag enum each time it is read)."""
    if not context.options & _IGNORE_UNEXPECTED_EOF:
        # An EOF without close_notify (a client gone, or the reading side shut down by a
        # watchdog) is then an end of file, after which a 408 can still be written.
        context.options |= _IGNORE_UNEXPECTED_EOF
    if context.sni_callback is None:
        context.sni_callback = _remember_server_name
    context._deproxy_server_side = True  # type: ignore[attr-defined]


def _remember_server_name(
    sock: ssl.SSLSocket | ssl.SSLObject, server_name: str | None, _: ssl.SSLContext
) -> None:
    """The SNI callback of server contexts: keeps the name the client asked for."""
    sock.deproxy_server_name = server_name  # type: ignore[union-attr]


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def literal_address(hostname: str, port: int) -> tuple[int, Any]:
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


def connect(host: str, port: int, timeout: float | None) -> Stream:
    """Open a TCP connection, failing within ``timeout`` seconds."""
    address = format_address(host, port)
    family, sockaddr = literal_address(host, port)
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
