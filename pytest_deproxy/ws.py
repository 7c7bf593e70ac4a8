"""WebSocket (RFC 6455) framing over a stream (a :class:`~pytest_deproxy.net.SharedStream`,
which one thread may read while another writes, TLS included), either side.

Rules kept here: this is the only module that imports wsproto, and it starts no thread: whoever
owns the connection reads its bytes and hands them to :meth:`Channel.receive_data` (a client's
reader thread, an endpoint connection's own thread). Every frame leaves through one ordered
outbox, so frames go out in the order they were made whichever thread made them, and a thread
that only reads (to answer a ping or a close) never waits behind another thread's blocked
write. Every frame, both ways, is logged as a :class:`~pytest_deproxy.record.Frame` on the
list the channel was given (a Handling's ``frames``); the end of the connection is recorded
once: who closed it, when, the code and the reason. Frames wsproto refuses to build (the
faults a test commits on purpose) are built here by hand, per RFC 6455 §5.2.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import threading
import time
from collections import deque
from typing import NamedTuple, Protocol

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from .errors import NetworkError
from .models import Headers
from .record import OPCODES as OPCODES
from .record import Frame as Frame

NAMES = {number: name for name, number in OPCODES.items()}  # a reserved opcode: "0x3"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
NO_CLOSE_FRAME = 1006  # RFC 6455 §7.1.5: the connection ended with no close frame


# -- the opening handshake ----------------------------------------------------------------


def new_key() -> str:
    """A fresh ``Sec-WebSocket-Key``: 16 random bytes, base64."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_for(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer ``key`` with."""
    digest = hashlib.sha1(key.encode("ascii") + GUID).digest()  # RFC 6455 §4.2.2: SHA-1
    return base64.b64encode(digest).decode("ascii")


def handshake_headers(key: str, subprotocols: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """The fields that ask for an upgrade to WebSocket (RFC 6455 §4.1)."""
    fields = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key)]
    fields.append(("Sec-WebSocket-Version", "13"))
    if subprotocols:
        fields.append(("Sec-WebSocket-Protocol", ", ".join(subprotocols)))
    return fields


def handshake_problem(headers: Headers, key: str, subprotocols: tuple[str, ...]) -> str | None:
    """What is wrong with a 101 answer to a handshake sent with ``key``, or ``None``."""
    if not headers.has_token("Upgrade", "websocket"):
        return f"the 101 answer's Upgrade is {headers.get('Upgrade')!r}, not 'websocket'"
    if not headers.has_token("Connection", "upgrade"):
        return f"the 101 answer's Connection is {headers.get('Connection')!r}, not 'Upgrade'"
    expected = accept_for(key)
    if headers.get("Sec-WebSocket-Accept") != expected:
        got = headers.get("Sec-WebSocket-Accept")
        return f"the 101 answer's Sec-WebSocket-Accept is {got!r}, expected {expected!r}"
    chosen = headers.get("Sec-WebSocket-Protocol")
    if chosen is not None and chosen not in subprotocols:
        return f"the server chose subprotocol {chosen!r}, which was not offered"
    return None


def check_close(code: int, reason: str) -> None:
    """Refuse a close code or reason that cannot go in a close frame (RFC 6455 §7.4)."""
    if not (isinstance(code, int) and 1000 <= code <= 4999 and code not in (1005, 1006, 1015)):
        raise ValueError(
            f"close code {code!r} cannot be sent in a close frame; "
            "use send_raw_frame('close', ...) to send an invalid one on purpose"
        )
    if len(reason.encode("utf-8")) > 123:
        raise ValueError("a close reason is at most 123 bytes in UTF-8")


# -- frames built by hand -----------------------------------------------------------------


def mask(payload: bytes, key: bytes) -> bytes:
    """``payload`` XORed with the 4-byte masking ``key`` (RFC 6455 §5.3)."""
    size = len(payload)
    stream = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(size, "big")


def build_frame(
    opcode: str | int,
    payload: bytes,
    *,
    fin: bool = True,
    masked: bool = True,
    rsv: int = 0,
    length: int | None = None,
) -> bytes:
    """One frame exactly as asked, valid or not: ``length`` is the payload length the header
    declares (default: the real one; it may be anything from 0 to 2**64 - 1), ``rsv`` the three
    reserved bits (0-7), ``masked`` whether a masking key is sent (a client must mask)."""
    code = OPCODES.get(opcode, -1) if isinstance(opcode, str) else opcode
    if not 0 <= code <= 15:
        raise ValueError(f"an opcode is one of {', '.join(OPCODES)} or 0 to 15, not {opcode!r}")
    if not 0 <= rsv <= 7:
        raise ValueError(f"rsv is the three reserved bits, 0 to 7, not {rsv}")
    declared = len(payload) if length is None else length
    if not 0 <= declared < 2**64:
        raise ValueError(f"a frame declares a length from 0 to 2**64 - 1, not {declared}")
    head = bytes([(0x80 if fin else 0) | rsv << 4 | code])
    bit = 0x80 if masked else 0
    if declared <= 125:
        head += bytes([bit | declared])
    elif declared <= 0xFFFF:
        head += bytes([bit | 126]) + struct.pack("!H", declared)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", declared)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + mask(payload, key)


class Transport(Protocol):
    """What a channel needs of its connection (a ``net.Stream``)."""

    def write(self, data: bytes) -> None: ...

    def shutdown(self, *, reading_only: bool = False) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class WebSocketClosed(NetworkError):
    """The WebSocket is closed (or was never opened): nothing more can be sent or received."""


class PongReceived(NamedTuple):
    payload: bytes
    at: float  # time.time() when it arrived


class Ended(NamedTuple):
    """The connection ended: the last thing :meth:`Channel.receive_data` hands back."""

    description: str


Received = str | bytes | PongReceived | Ended
Outgoing = TextMessage | BytesMessage | Ping | CloseConnection


class Channel:
    """A WebSocket on a connected stream, as ``role`` (``"client"`` or ``"server"``).

    Bytes that arrived right after the handshake are already frames: feed them first.
    ``answer_pings=False`` leaves pings unanswered (a fault an endpoint may want). ``log`` is
    the list each frame is appended to as it crosses (a Handling's ``frames``, say).
    """

    def __init__(
        self,
        stream: Transport,
        role: str,
        *,
        answer_pings: bool = True,
        log: list[Frame] | None = None,
    ) -> None:
        if role not in ("client", "server"):
            raise ValueError(f"role is 'client' or 'server', not {role!r}")
        self.stream = stream
        self.role = role
        self.peer_role = "server" if role == "client" else "client"
        self.answer_pings = answer_pings
        self._lock = threading.Lock()  # wsproto's state, the log and the outbox
        self._write_lock = threading.Lock()  # held while bytes go out
        self._outbox: deque[tuple[int, bytes]] = deque()  # (place in order, bytes)
        self._queued = self._written = 0  # the places of the last frame queued and written
        self._broken: NetworkError | None = None  # why nothing more can be written
        self._frames: list[Frame] = [] if log is None else log
        self._conn = Connection(ConnectionType[role.upper()])
        self._frame_part = bytearray()  # the frame being received, until it is whole
        self._message: list[bytes | str] = []  # the message being received, frame by frame
        self._mid_message = False  # the next data frame received continues a message
        self.closed_by: str | None = None
        self.closed_at: float | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.ended = False  # the TCP connection is over

    # -- what happened -----------------------------------------------------------------

    @property
    def frames(self) -> list[Frame]:
        with self._lock:
            return list(self._frames)

    @property
    def open(self) -> bool:  # messages may still be sent: no close began, the connection stands
        return self.closed_by is None and not self.ended

    def describe_close(self) -> str:
        if self.closed_by is None:
            return "the WebSocket is open"
        reason = f" {self.close_reason!r}" if self.close_reason else ""
        return f"closed by the {self.closed_by} with {self.close_code}{reason}"

    def _record_close(self, by: str, code: int | None, reason: str | None) -> None:
        if self.closed_by is None:  # the first to close is the one on record
            self.closed_by, self.closed_at = by, time.time()
            self.close_code, self.close_reason = code, reason

    # -- receiving ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Received]:
        """Feed what arrived (``b""``: the peer closed its side); return the whole messages,
        pongs and the end, in order. Pings and closes are answered here."""
        with self._lock:
            if self._conn.state is ConnectionState.CLOSED and data:
                return []  # after the closing handshake nothing more is read
            self._conn.receive_data(data or None)
            received = self._events(data)
        self.flush()
        return received

    def _events(self, data: bytes) -> list[Received]:
        received: list[Received] = []
        for event in self._conn.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                received += self._data(event)
            elif isinstance(event, Ping):
                self._log("received", "ping", bytes(event.payload))
                if self.answer_pings and self._conn.state is ConnectionState.OPEN:
                    self._emit(self._conn.send(event.response()), "pong", bytes(event.payload))
            elif isinstance(event, Pong):
                self._log("received", "pong", bytes(event.payload))
                received.append(PongReceived(bytes(event.payload), time.time()))
            elif isinstance(event, CloseConnection):
                received += self._close(event, at_eof=not data)
        return received

    def _data(self, event: TextMessage | BytesMessage) -> list[Received]:
        if event.message_finished and not self._message and not self._frame_part:
            # The common case, a whole message in one frame, read at once: the fast path.
            if isinstance(event.data, str):
                self._frames.append(Frame("received", "text", event.data.encode("utf-8")))
                return [event.data]
            payload = bytes(event.data)
            self._frames.append(Frame("received", "binary", payload))
            return [payload]
        # A text frame split inside a character is logged with that character in the next.
        piece = event.data.encode("utf-8") if isinstance(event.data, str) else bytes(event.data)
        self._frame_part += piece
        self._message.append(event.data if isinstance(event.data, str) else piece)
        if event.frame_finished:
            kind = "text" if isinstance(event, TextMessage) else "binary"
            kind = "continuation" if self._mid_message else kind
            self._log("received", kind, bytes(self._frame_part), event.message_finished)
            self._frame_part = bytearray()
            self._mid_message = not event.message_finished
        if not event.message_finished:
            return []
        parts, self._message = self._message, []
        if isinstance(event, TextMessage):
            return ["".join(str(part) for part in parts)]
        return [b"".join(bytes(part) for part in parts)]  # type: ignore[arg-type]

    def _close(self, event: CloseConnection, *, at_eof: bool) -> list[Received]:
        state = self._conn.state
        if at_eof:  # wsproto's stand-in for "the connection ended without a close frame"
            self.ended = True
            self._record_close(self.peer_role, NO_CLOSE_FRAME, "closed without a close frame")
            return [Ended(self.describe_close())]
        if state in (ConnectionState.REMOTE_CLOSING, ConnectionState.CLOSED):  # a real frame
            code = int(event.code)
            payload = b"" if code == 1005 else struct.pack("!H", code)
            self._log("received", "close", payload + (event.reason or "").encode("utf-8"))
            self._record_close(self.peer_role, code, event.reason or "")
            if state is ConnectionState.REMOTE_CLOSING:  # echo it, as RFC 6455 §5.5.1 asks
                reply = CloseConnection(code if code != 1005 else 1000, event.reason)
                self._emit(self._conn.send(reply), "close", self._close_payload(reply))
            return [Ended(self.describe_close())]
        # The peer broke the protocol: wsproto says how; close with that code.
        self._record_close(self.role, int(event.code), event.reason or "")
        if state is ConnectionState.OPEN:
            reply = CloseConnection(int(event.code), event.reason)
            self._emit(self._conn.send(reply), "close", self._close_payload(reply))
        return []

    @staticmethod
    def _close_payload(event: CloseConnection) -> bytes:
        reason = (event.reason or "").encode("utf-8")[:123]
        return struct.pack("!H", int(event.code)) + reason

    def connection_lost(self, why: str) -> Ended:
        """The connection broke (a reset, a read that failed): record it, if nothing was."""
        with self._lock:
            self.ended = True
            self._record_close(self.peer_role, NO_CLOSE_FRAME, why)
            return Ended(self.describe_close())

    # -- sending -----------------------------------------------------------------------

    def _log(self, direction: str, opcode: str, payload: bytes, fin: bool = True) -> None:
        self._frames.append(Frame(direction, opcode, payload, fin))

    def _emit(self, data: bytes, opcode: str, payload: bytes, fin: bool = True) -> int:
        """Queue a frame's bytes and log it (the lock held); its place in the outbox order."""
        self._log("sent", opcode, payload, fin)
        return self._queue(data)

    def _queue(self, data: bytes) -> int:
        self._queued += 1
        self._outbox.append((self._queued, bytes(data)))
        return self._queued

    def flush(self, until: int | None = None) -> None:
        """Write what the outbox holds. A writer passes ``until`` (its frame's place): it waits
        for its turn, and ``WebSocketClosed`` tells it if its frame could not go out. A reading
        thread (``until=None``) leaves the bytes to whichever thread is writing already, which
        writes them before it lets go: a reader never waits behind a blocked write. What the
        outbox holds goes out in one write (the replies to a batch of messages, say)."""
        while self._outbox:
            if not self._write_lock.acquire(blocking=until is not None):
                return
            try:
                while self._outbox:
                    batch = [self._outbox.popleft() for _ in range(len(self._outbox))]
                    if self._broken is None:
                        try:
                            self.stream.write(b"".join(data for _, data in batch))
                            self._written = batch[-1][0]
                        except NetworkError as exc:
                            self._broken = exc  # this and everything after it is dropped
            finally:
                self._write_lock.release()
        if until is not None and until > self._written and self._broken is not None:
            why = str(self._broken) if self.closed_by is None else self.describe_close()
            raise WebSocketClosed(f"the frame was not sent: {why}") from self._broken

    def finish(self, *, reset: bool = False) -> None:
        """Close the connection (``reset``: with an RST), once the reading is over; frames
        not written by then are dropped, and their senders told. Safe to call twice."""
        with self._write_lock:
            if self._broken is None:
                self._broken = WebSocketClosed(f"the connection is closed: {self.describe_close()}")
            self.ended = True
            if reset:
                self.stream.abort()
            self.stream.close()

    def _send(
        self, event: Outgoing, opcode: str, payload: bytes, fin: bool = True, now: bool = True
    ) -> None:
        with self._lock:
            if self.ended or self._conn.state is not ConnectionState.OPEN:
                raise WebSocketClosed(f"cannot send a {opcode} frame: {self.describe_close()}")
            data = self._conn.send(event)
            if isinstance(event, CloseConnection):
                self._record_close(self.role, event.code, event.reason)
            place = self._emit(data, opcode, payload, fin)
        if now:
            self.flush(place)

    def send_message(
        self, data: str | bytes, *, fin: bool = True, first: bool = True, now: bool = True
    ) -> None:
        """One data frame (``fin=False``: more of the message follows; ``first=False``: it
        continues a message). ``now=False`` leaves it in the outbox for the next
        :meth:`flush` (the reading thread's replies to what one read brought)."""
        payload = data.encode() if isinstance(data, str) else bytes(data)
        message: Outgoing = (
            TextMessage(data, message_finished=fin)
            if isinstance(data, str)
            else BytesMessage(payload, message_finished=fin)
        )
        kind = "text" if isinstance(data, str) else "binary"
        self._send(message, kind if first else "continuation", payload, fin, now)

    def send_ping(self, payload: bytes = b"") -> None:
        self._send(Ping(payload=payload), "ping", payload)

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        event = CloseConnection(code=code, reason=reason)
        self._send(event, "close", self._close_payload(event))

    def send_raw(self, data: bytes, frames: list[Frame]) -> None:
        """Bytes built by hand (faults), logged as ``frames``; wsproto's state is not told."""
        with self._lock:
            self._frames += frames
            place = self._queue(data)
        self.flush(place)

    def abort(self, *, reset: bool = False) -> None:
        """Begin ending the TCP connection with no close frame: a FIN now, or (``reset``) no
        FIN, for :meth:`finish` to send an RST once the reading has stopped. Either way a
        thread reading the stream wakes up to end of file."""
        with self._lock:
            self._record_close(self.role, NO_CLOSE_FRAME, "aborted: no close frame")
            self.ended = True
        self.stream.shutdown(reading_only=reset)
