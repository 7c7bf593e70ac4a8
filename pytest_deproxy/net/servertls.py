"""The server side of a TLS connection, run over memory buffers on the plain socket.

:class:`ServerTLS` is what a server-side :class:`~pytest_deproxy.net.Stream` holds in place
of an ``ssl.SSLSocket``, with the part of its surface a stream uses (``recv``, ``send``,
``sendall``, ``pending``, ``do_handshake``, timeouts, the handshake's facts). TLS runs in an
``ssl.SSLObject`` over two ``ssl.MemoryBIO`` and this class moves the bytes between them and
the socket, so that it reads and writes the socket as little as a connection needs: an
``SSLSocket`` reads each TLS record in two system calls (its header, then its body) and
writes each record as it is made, where this reads whatever has arrived in one call and
writes what TLS made in one (the server's first flight; the session ticket with the first
answer, when the request came with the end of the handshake; ``close_notify`` with the last
answer, ``send(..., last=True)``). Wrapping the socket makes no ``SSLSocket`` (whose checks
and timeout changes cost six system calls). :meth:`ServerTLS.handshake_step`, the poll
thread's, says what the handshake waits for instead of raising it, and reads the socket only
when TLS has nothing left to work on: once per flight of the client. A connection made for
one request, a handshake each, costs a polling server ~15 system calls under ``wrk`` (4 of
them OpenSSL's ``getpid``), where an ``SSLSocket`` cost ~37.

Rules kept here, those of ``SSLSocket``: a ``timeout`` of 0 never waits (``SSLWantReadError``
or ``SSLWantWriteError`` say what would be waited for), another bounds each wait
(``TimeoutError``), ``None`` waits for ever; ``recv`` returns ``b""`` at the end of the
stream, ``close_notify`` or not; a ``send`` that could not send all of a TLS record it made
holds the rest, and sends it before anything else (the caller gives the same bytes again,
as OpenSSL asks of a write that must be retried). What TLS made is sent before a wait to
read, the end of the handshake's session ticket too, unless a request came with the
client's last flight: the ticket then goes with the first answer. What is
decrypted is kept here until read, and ``pending`` counts it: a poller never sees it, since
it has left the socket.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

RECORD = 16384  # the most plaintext a TLS record carries
_READ = 65536  # ciphertext taken from the socket at once


class ServerTLS:
    """A server-side TLS connection on ``sock`` (see the module's docstring)."""

    # The name the client asked for (SNI): set by the context's sni_callback, which is
    # given this object (the TLS connection's owner), not an SSLSocket: a callback that
    # switches ``.context`` would not work here. Server contexts are this package's own
    # (tls=True), whose callback only notes the name (net.streams._remember_server_name).
    deproxy_server_name: str | None = None

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.raw = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        # The C object ssl.SSLObject wraps, made as SSLContext.wrap_bio makes it (CPython 3.7
        # and later), as Stream.close uses an SSLSocket's: its Python layer only passes each
        # call on, and costs a frame a call (a quarter of this wrapping).
        self._ssl: Any = context._wrap_bio(  # type: ignore[attr-defined]
            self._incoming, self._outgoing, True, None, owner=self
        )
        self._plain = b""  # decrypted, not read yet
        self._ended = False  # the peer's end of the stream was decrypted (or the socket's)
        self._held = b""  # ciphertext made, which the socket did not take yet
        # Plaintext bytes of a send() whose record was held: sent as far as TLS goes, and
        # given again by the caller, who was told they were not (skipped then).
        self._credit = 0
        self._notified = False  # close_notify was made (sent, or held to be)

    # -- the socket's own ---------------------------------------------------------------------

    def fileno(self) -> int:
        return self.raw.fileno()

    def gettimeout(self) -> float | None:
        return self.raw.gettimeout()

    def settimeout(self, seconds: float | None) -> None:
        self.raw.settimeout(seconds)

    def getsockname(self) -> Any:
        return self.raw.getsockname()

    def getpeername(self) -> Any:
        return self.raw.getpeername()

    def getsockopt(self, level: int, option: int) -> int:
        return self.raw.getsockopt(level, option)

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        self.raw.setsockopt(level, option, value)

    def close(self) -> None:
        self.raw.close()

    # -- TLS ------------------------------------------------------------------------------------

    def do_handshake(self) -> None:
        """Run the handshake as far as the socket's timeout lets it (see the module)."""
        while True:
            try:
                self._ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._receive()
        if not self._incoming.pending:
            # No request came with the client's last flight: it may be waiting for an ACK
            # (a client with Nagle's algorithm on, ~40 ms), which the ticket carries now.
            # Otherwise the ticket goes with the first answer.
            self._flush()

    def handshake_step(self) -> str:
        """Run the handshake as far as it goes without waiting (a socket with a timeout of
        0): ``"done"``, or what it waits for, ``"read"`` or ``"write"``. It says so rather
        than raising, and reads the socket only when TLS has nothing left to work on: once
        a flight is sent the client's answer cannot be there yet (a poller says when it is),
        and each ``SSLWantReadError`` OpenSSL raises costs more than the read it stands for."""
        incoming, tls = self._incoming, self._ssl
        try:
            if self._held:
                self._flush()
            read = not incoming.pending and not incoming.eof  # TLS has what was read before
            while True:
                if read:
                    try:
                        data = self.raw.recv(_READ)
                    except BlockingIOError:
                        return "read"
                    if data:
                        incoming.write(data)
                    else:
                        incoming.write_eof()
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    if self._outgoing.pending:  # a flight for the client: it answers next
                        self._flush()
                        return "read"
                    if incoming.eof:
                        raise ssl.SSLEOFError(
                            "the peer closed the connection in the handshake"
                        ) from None
                    read = True  # TLS took all there was: the rest is still to arrive
            if not incoming.pending:  # see do_handshake(): the ticket goes now
                self._flush()
        except ssl.SSLWantWriteError:
            return "write"
        return "done"

    def recv(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` decrypted; ``b""`` at the end of the stream."""
        data = self._plain
        if data:
            self._plain = b""
        elif self._ended:
            return b""
        else:
            data = self._decrypt()
        if len(data) > max_bytes:
            data, self._plain = data[:max_bytes], data[max_bytes:]
        return data

    def pending(self) -> int:
        """Decrypted bytes not read yet."""
        return len(self._plain)

    def send(self, data: bytes | memoryview, last: bool = False) -> int:
        """Send what the socket takes now of ``data``, in whole TLS records: how many bytes
        of it went (a record partly sent is held, and its bytes not counted: see the module).
        ``last``: nothing is sent after it; ``close_notify`` goes in the same write when
        ``data`` is one record (else :meth:`close_notify` sends it, as ever)."""
        if self._held and not self._send_held():
            raise ssl.SSLWantWriteError("the socket takes no more yet")
        if not self._credit and len(data) <= RECORD:  # the usual answer: one record
            if not self._send_record(data, last):
                raise ssl.SSLWantWriteError("the socket takes no more yet")
            return len(data)
        view = memoryview(data)
        done, self._credit = min(self._credit, len(view)), 0
        while done < len(view):
            piece = view[done : done + RECORD]
            if not self._send_record(piece):
                break
            done += len(piece)
        if not done:
            raise ssl.SSLWantWriteError("the socket takes no more yet")
        return done

    def _send_record(self, piece: bytes | memoryview, last: bool = False) -> bool:
        """Encrypt ``piece`` (one record at most) and send it, and ``close_notify`` after it
        if ``last``; whether all of it went. What the socket did not take is held, and
        ``piece`` is owed as credit (see the module)."""
        self._ssl.write(piece)
        if last:
            self._notify()
        out = self._outgoing.read()
        try:
            sent = self.raw.send(out)
        except BlockingIOError:
            sent = 0
        if sent < len(out):
            self._held, self._credit = out[sent:], len(piece)
            return False
        return True

    def sendall(self, data: bytes | memoryview) -> None:
        """Send all of ``data``, waiting as the socket's timeout lets it."""
        view = memoryview(data)
        if self._credit:
            view, self._credit = view[min(self._credit, len(view)) :], 0
        if len(view):
            self._ssl.write(view)
        self._flush()

    def close_notify(self) -> None:
        """Send ``close_notify`` (and anything TLS made that is still here) without waiting,
        and without waiting for the peer's."""
        if not self._notified:
            self._notify()
        out = self._held + self._outgoing.read()
        self._held = b""
        if out:
            timeout = self.raw.gettimeout()
            if timeout != 0:
                self.raw.settimeout(0)
            try:
                self.raw.send(out)
            except OSError:
                pass

    def _notify(self) -> None:
        """Make ``close_notify`` (to be sent with whatever TLS made before it)."""
        self._notified = True
        try:
            self._ssl.shutdown()
        except ssl.SSLError:
            pass  # it wants the peer's: ours is made all the same

    def facts(self) -> dict[str, Any]:
        """What the finished handshake settled (as :meth:`Stream.tls_facts` gives them)."""
        tls = self._ssl
        cipher = tls.cipher()
        return {
            "sni": self.deproxy_server_name,
            "alpn": tls.selected_alpn_protocol(),
            "version": tls.version(),
            "cipher": cipher[0] if cipher else None,
            "client_certificate": tls.getpeercert() or None,
            "resumed": tls.session_reused,
        }

    # -- moving the bytes -----------------------------------------------------------------------

    def _decrypt(self) -> bytes:
        """Decrypt what has arrived, reading the socket (once it must, as its timeout lets
        it) until something is decrypted or the stream ended (``b""``)."""
        tls, incoming = self._ssl, self._incoming
        # The socket is read first when nothing waits here (TLS holds nothing decrypted
        # either: each read takes a whole record): an SSLWantReadError costs more than this
        # check, and a keep-alive request would raise one. _wait_to_read() inlined.
        if not incoming.pending and not incoming.eof:
            raw = self.raw
            if raw.gettimeout() != 0:
                self._flush()
            try:
                data = raw.recv(_READ)
            except BlockingIOError:
                raise ssl.SSLWantReadError("nothing has arrived yet") from None
            if data:
                incoming.write(data)
            else:
                incoming.write_eof()
        parts: list[bytes] = []
        while True:
            try:
                chunk = tls.read(_READ)
            except ssl.SSLWantReadError:
                if parts:
                    break  # what is left is part of a record: the socket will say when
                self._wait_to_read()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                chunk = b""
            if not chunk:
                self._ended = True
                break
            parts.append(chunk)
            if not incoming.pending:  # a read takes a whole record: nothing is left in TLS
                break
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _wait_to_read(self) -> None:
        if self.raw.gettimeout() != 0:
            self._flush()  # nothing TLS made (a ticket) is held while this waits
        self._receive()

    def _receive(self) -> None:
        """Give TLS what the socket has (waiting as its timeout lets it); its end, at its end."""
        try:
            data = self.raw.recv(_READ)
        except BlockingIOError:
            raise ssl.SSLWantReadError("nothing has arrived yet") from None
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    def _flush(self) -> None:
        """Send what TLS made (held bytes first): all of it, or, with a timeout of 0, what the
        socket takes, holding the rest (``SSLWantWriteError`` then)."""
        out = self._outgoing.read()
        if self._held:
            out, self._held = self._held + out, b""
        if not out:
            return
        if self.raw.gettimeout() != 0:
            self.raw.sendall(out)
            return
        try:
            sent = self.raw.send(out)
        except BlockingIOError:
            sent = 0
        if sent < len(out):
            self._held = out[sent:]
            raise ssl.SSLWantWriteError("the socket takes no more yet")

    def _send_held(self) -> bool:
        try:
            sent = self.raw.send(self._held)
        except BlockingIOError:
            return False
        self._held = self._held[sent:]
        return not self._held
