"""The server side: listening, accepting a burst at once, and watching many sockets
(:class:`Poller`). See :mod:`pytest_deproxy.net` for the rules the package keeps.
"""

from __future__ import annotations

import _socket
import errno
import os
import select
import selectors
import socket
import ssl
import sys
import threading
from typing import Any, TypeAlias

from ..errors import NetworkError
from .streams import Stream, format_address, literal_address

# How many connections may wait to be accepted. A burst of a thousand connects (a load test
# opening its connections at once) then waits in the queue instead of overflowing it into
# SYN retries a second apart; the kernel caps it (Linux: net.core.somaxconn, 4096 since 5.4).
LISTEN_BACKLOG = 4096
# Linux gives an accepted TCP socket the listener's TCP_NODELAY: set once on the listener,
# it costs no system call a connection. Elsewhere each accepted socket is set.
_NODELAY_INHERITED = sys.platform.startswith("linux")


def listen(hostname: str, port: int, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """A non-blocking listening socket on ``hostname:port`` (0 takes a free port), for a
    poller to watch and :func:`accept_all` to accept from.

    ``SO_REUSEADDR`` is set so that a port an endpoint just released can be bound again at once,
    and ``TCP_NODELAY``, for the sockets it accepts (see :func:`accepted_stream`).
    """
    family, sockaddr = literal_address(hostname, port)
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
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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


# The listener's family and type as the socket object holds them (ints), not as enums.
_RAW_FAMILY: Any = _socket.socket.family
_RAW_TYPE: Any = _socket.socket.type


def accept_all(
    listener: socket.socket, limit: int = LISTEN_BACKLOG
) -> list[tuple[socket.socket, str]]:
    """Accept every connection waiting on a non-blocking ``listener`` (at most ``limit``):
    one wake-up of a poller takes a whole burst, not one connection of it.

    ``socket.accept()`` is spelled out here: it reads the listener's ``family`` and ``type``
    for each connection, each made an enum (a quarter of what accepting costs in Python)."""
    accepted: list[tuple[socket.socket, str]] = []
    family, kind = _RAW_FAMILY.__get__(listener), _RAW_TYPE.__get__(listener)
    proto = listener.proto
    while len(accepted) < limit:
        try:
            descriptor, addr = listener._accept()  # type: ignore[attr-defined]
        except (BlockingIOError, InterruptedError):
            break  # none waits
        except OSError as exc:
            if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                continue  # that client gave up before it was accepted: the next may not have
            break  # out of descriptors, say: the poller wakes again while any waits
        try:
            sock = socket.socket(family, kind, proto, descriptor)
        except OSError:  # gone already: as if never accepted
            os.close(descriptor)
            continue
        accepted.append((sock, format_address(str(addr[0]), int(addr[1]))))
    return accepted


def accepted_stream(
    sock: socket.socket,
    peer: str,
    timeout: float | None,
    tls: ssl.SSLContext | None = None,
) -> Stream:
    """The stream of a socket :func:`accept_all` took from a :func:`listen` listener, with
    ``TCP_NODELAY`` (the listener's, on Linux); with ``tls``, a server-side TLS stream whose
    handshake has not begun (``Stream.handshake_ready`` or ``Stream.handshake`` runs it):
    ``NetworkError`` if the context cannot make one."""
    if not _NODELAY_INHERITED:  # an OSError here: the peer is gone already
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls is not None:
        return Stream.serving_tls(sock, peer, tls, timeout)
    return Stream(sock, peer, timeout, nodelay=False)


_FORGOTTEN = object()  # what a descriptor no longer watched stands for
Source: TypeAlias = "socket.socket | Stream | Poller"  # what a poller watches
_WAKE = object()  # the key of a poller's own wake-up descriptor


class Poller:
    """Tells which of many sockets (listeners, or streams) have something to read.

    Each is watched under a key of the caller's; :meth:`ready` returns the keys. Another
    thread can :meth:`wake` a thread waiting in :meth:`ready` (it then returns, perhaps with
    no key). On Linux it is epoll itself (a third of the cost of ``selectors`` per wake-up,
    on the hot path of a server under load), woken through an eventfd it watches itself: one
    descriptor and no socket objects, for a server that lives for one test and makes and
    closes a poller each time. Elsewhere, ``selectors``, woken by a byte through a socket pair.
    A poller made with ``wakeable=False`` has no wake-up of its own: it is watched in another
    (a poller is a source too: ready when something in it is), and that one is woken.
    """

    def __init__(self, *, wakeable: bool = True) -> None:
        self._epoll = select.epoll() if hasattr(select, "epoll") else None
        self._selector = None if self._epoll is not None else selectors.DefaultSelector()
        self._keys: dict[int, object] = {}  # descriptor: key (epoll)
        self._watched: dict[Source, int] = {}  # source: fd, for forget() (epoll)
        self._wake_fd = -1  # the eventfd (epoll)
        self._wake_in: socket.socket | None = None  # the socket pair (selectors)
        self._wake_out: socket.socket | None = None
        self._closed = False
        self._close_lock = threading.Lock()  # wake() never writes to a descriptor closed
        if not wakeable:
            return
        if self._epoll is not None and hasattr(os, "eventfd"):
            self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._epoll.register(self._wake_fd, select.EPOLLIN)
            self._keys[self._wake_fd] = _WAKE
            return
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self.watch(self._wake_in, _WAKE)

    def fileno(self) -> int:
        """The descriptor another poller watches this one by (readable: something is ready)."""
        if self._epoll is not None:
            return self._epoll.fileno()
        return int(self._selector.fileno())  # type: ignore[union-attr]

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

    def watch(self, source: Source, key: object) -> None:
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

    def forget(self, source: Source, *, closing: bool = False) -> None:
        """Stop watching ``source`` (nothing happens if it was not watched). ``closing``: the
        caller closes it next, which takes it out of epoll's set (a system call saved a
        connection); the poller forgets it at once all the same."""
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
        if closing:
            return
        try:
            self._epoll.unregister(descriptor)
        except (OSError, ValueError):  # the descriptor, or the poller, is closed already
            pass

    def forget_all(self) -> None:
        """Stop watching everything but the poller's own wake-up: a poller lent to the next
        server's loop starts empty."""
        if self._epoll is None:
            assert self._selector is not None
            for key in list(self._selector.get_map().values()):
                if key.data is not _WAKE:
                    self._selector.unregister(key.fileobj)
            return
        for source in list(self._watched):
            self.forget(source)

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
        # Connections only, nearly always (asked in C, by identity first): the list as it is.
        if _WAKE not in sources and _FORGOTTEN not in sources:
            return sources
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
            if self._wake_fd >= 0:
                os.close(self._wake_fd)
        if self._epoll is not None:
            self._epoll.close()
        if self._selector is not None:
            self._selector.close()
        if self._wake_in is not None:
            assert self._wake_out is not None
            self._wake_in.close()
            self._wake_out.close()
