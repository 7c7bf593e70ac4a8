"""One HTTP/2 connection driven over a stream: with :mod:`~pytest_deproxy.h2frames`, the
modules of the package that import ``h2``; none other does.

Rules kept here: h2's state machine is driven under one lock, by whichever thread reads or
writes, and everything it wants sent is written before the lock is let go, so frames leave in
the order h2 made them; a thread that corks the connection (see :meth:`H2Wire.corked`) lets
its own frames wait in h2's buffer until it uncorks, and whoever writes next takes them along
first. The rest of the package sees :mod:`~pytest_deproxy.h2frames`' event types, never h2's.
Every connection-level frame is read off the bytes as they cross, both ways, by a frame log
per direction and handed to ``on_event``: the record is what crossed the wire, also when it
was a raw frame h2 never saw. Headers are kept as received: names and values in wire order,
pseudo-headers included, no normalising (a request's block seen again gives the same fields
list, which no one changes). A GOAWAY received ends the opening of streams, not
the streams up to its last_stream_id (RFC 9113 §6.8), which still complete.
The connection itself, with its fast paths, is :class:`~pytest_deproxy.h2conn.H2Connection`.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.stream

from .connections import FrameEvent
from .errors import DeproxyTimeout, NetworkError
from .h2conn import H2Connection
from .h2frames import (
    CANCEL,
    NO_ERROR,
    PREFACE,
    DataIn,
    Ended,
    Event,
    FrameLog,
    GoneAway,
    HeadersIn,
    Reset,
    Violation,
    error_name,
    request_fields,
    split_header_block,
)

# Its own names, and the h2frames names the package imported from here before the split.
__all__ = [
    "CANCEL",
    "PREFACE",
    "READ_POLL",
    "ByteStream",
    "DataIn",
    "Ended",
    "GoneAway",
    "H2Wire",
    "HeadersIn",
    "Reset",
    "StreamGone",
    "Violation",
    "WindowShut",
    "error_name",
    "request_fields",
]

READ_POLL = 0.05  # on TLS: how long a read may hold the lock waiting for the rest of a record


class ByteStream(Protocol):
    timeout: float | None

    def read(self, max_bytes: int = ...) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def fileno(self) -> int: ...


class StreamGone(NetworkError):
    """The stream or connection was reset or closed while something was to be sent on it."""


class WindowShut(StreamGone):
    """The peer's flow-control window stayed shut until the sender's deadline."""


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


_TEXTS_KEPT = 512
_BLOCKS_KEPT = 64
_HEADER_EVENTS: dict[type, str] = {
    h2.events.RequestReceived: "request",
    h2.events.ResponseReceived: "response",
    h2.events.InformationalResponseReceived: "interim",
    h2.events.TrailersReceived: "trailers",
}


class H2Wire:
    """One HTTP/2 connection, either side, over ``stream``.

    ``on_event`` receives every connection-level frame both ways. ``hold_window`` (a set of
    stream ids, or ``True`` for all) stops giving the peer flow-control credit back.
    """

    def __init__(
        self,
        stream: ByteStream,
        *,
        client_side: bool,
        on_event: Callable[[FrameEvent], None],
        settings: dict[int, int] | None = None,
    ) -> None:
        config = h2.config.H2Configuration(
            client_side=client_side,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
        self.client_side = client_side
        self._conn = H2Connection(config)
        self.peer_goaway: str | None = None  # the GOAWAY received, as a sentence
        if settings:
            self._conn.local_settings.update(settings)
        self._stream = stream
        self._lock = threading.Lock()
        self._window_opened = threading.Condition(self._lock)
        self._window_waiters = 0  # senders waiting on it (most reads find none to wake)
        self._in_log = FrameLog("received", on_event, preface=not client_side)
        self._out_log = FrameLog("sent", on_event, preface=client_side)
        self.hold_window: bool = False
        self.closed = False
        self._corked_by: int | None = None  # a thread whose frames wait: see corked()
        self._said_goaway = False
        # OpenSSL forbids using one TLS connection from two threads at once: on TLS, a read
        # waits for the socket outside the lock, then reads under it (see _read).
        self._tls = getattr(stream, "tls_facts", lambda: None)() is not None
        self._texts: dict[tuple[bytes | str, bytes | str], tuple[str, str]] = {}
        self._blocks: dict[tuple[tuple[bytes | str, bytes | str], ...], list[tuple[str, str]]] = {}

    # -- starting ----------------------------------------------------------------------------

    def initiate(self) -> None:
        """Send the preface (the client's magic too) and our SETTINGS."""
        with self._lock:
            self._conn.initiate_connection()
            self._flush()

    def initiate_upgrade(self, settings_header: str | None) -> None:
        """Server side of ``Upgrade: h2c``: stream 1 is the request that asked for it."""
        with self._lock:
            header = settings_header.encode() if settings_header else None
            self._conn.initiate_upgrade_connection(header)
            self._flush()

    # -- reading -----------------------------------------------------------------------------

    def read(self) -> bytes:
        """What came next from the peer; ``b""`` once it closed (or the socket broke)."""
        try:
            return self._read()
        except NetworkError:
            return b""

    @property
    def tls(self) -> bool:
        return self._tls

    def wait_readable(self, timeout: float | None) -> bool:
        """Whether the peer sent something, waiting up to ``timeout`` s (``None``: for as long
        as it takes). A plain socket only: a TLS one may hold a record already read."""
        try:
            return bool(select.select([self._stream], [], [], timeout)[0])
        except (OSError, ValueError):  # closed meanwhile: reading says so
            return True

    def receive(self, data: bytes | None = None) -> list[Event] | None:
        """Read what came (or take ``data`` already read), answer what h2 answers itself
        (SETTINGS and PING acks), and return the events; ``None`` when the peer closed."""
        if data is None:
            data = self.read()
        if not data:
            self._close()
            return None
        self._in_log.feed(data)
        with self._lock:
            try:
                events = self._conn.receive_fast(data)
            except h2.exceptions.ProtocolError as exc:
                if self._said_goaway:  # frames that crossed our GOAWAY: ignored, as RFC 9113 6.8
                    self._conn.data_to_send()
                    return []
                self._flush()
                self._wake_window_waiters()
                return [Violation(f"{type(exc).__name__}: {exc}")]
            translated = self._translate(events)
            self._flush()
            self._wake_window_waiters()
        return translated

    def _read(self) -> bytes:
        stream = self._stream
        if not self._tls:
            return stream.read()
        while True:
            select.select([stream], [], [], READ_POLL)
            with self._lock:
                stream.timeout = READ_POLL  # a TLS record still arriving: give the lock back
                try:
                    return stream.read()
                except DeproxyTimeout:
                    continue
                finally:
                    stream.timeout = None

    def _translate(self, events: list[h2.events.Event]) -> list[Event]:
        out: list[Event] = []
        said: h2.events.StreamEnded | None = None  # an end a request's HeadersIn says
        for event in events:
            kind = _HEADER_EVENTS.get(type(event))
            if kind is not None:
                headers = event.headers  # type: ignore[attr-defined]
                fields = self._block(headers) if kind == "request" else self._fields(headers)
                end = getattr(event, "stream_ended", None)
                if kind == "request":
                    said = end
                ended = kind == "trailers" or end is not None
                out.append(HeadersIn(event.stream_id, kind, fields, ended))  # type: ignore[attr-defined]
            elif type(event) is h2.events.StreamEnded:
                if event is not said:
                    out.append(Ended(event.stream_id))
            elif isinstance(event, h2.events.DataReceived):
                if event.flow_controlled_length and not self.hold_window:
                    try:
                        self._conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    except h2.exceptions.StreamClosedError:
                        pass
                out.append(DataIn(event.stream_id, event.data))
            elif isinstance(event, h2.events.StreamEnded):
                out.append(Ended(event.stream_id))
            elif isinstance(event, h2.events.StreamReset):
                out.append(Reset(event.stream_id, int(event.error_code or 0)))
            elif isinstance(event, h2.events.ConnectionTerminated):
                out.append(GoneAway(int(event.error_code or 0), event.last_stream_id))
                code = error_name(int(event.error_code or 0))
                self.peer_goaway = f"GOAWAY {code}, last_stream_id={event.last_stream_id}"
        return out

    def _block(self, headers: list[tuple[bytes | str, bytes | str]]) -> list[tuple[str, str]]:
        """:meth:`_fields` of a request's header block; the same block again (a client sends
        the same one again and again) gives the same list, which no one changes."""
        key = tuple(headers)
        fields = self._blocks.get(key)
        if fields is None:
            fields = self._fields(headers)
            if len(self._blocks) >= _BLOCKS_KEPT:  # blocks seen once (ids) must not pile up
                self._blocks.clear()
            self._blocks[key] = fields
        return fields

    def _fields(self, headers: Iterable[tuple[bytes | str, bytes | str]]) -> list[tuple[str, str]]:
        """Fields as text: h2 hands bytes over (header_encoding=None), decoded here (bytes that
        are not UTF-8 kept as U+FFFD). A field seen lately is decoded once: the same ones
        come again and again on a connection."""
        texts = self._texts
        out = []
        for field in headers:
            text = texts.get(field)
            if text is None:
                text = (_text(field[0]), _text(field[1]))
                if len(texts) >= _TEXTS_KEPT:  # values seen once (ids) must not pile up
                    texts.clear()
                texts[field] = text
            out.append(text)
        return out

    # -- sending -----------------------------------------------------------------------------

    def new_stream_id(self) -> int:
        with self._lock:
            if self.peer_goaway is not None:
                raise StreamGone(f"no new stream after the peer's {self.peer_goaway}")
            return int(self._conn.get_next_available_stream_id())

    def send_headers(
        self, stream_id: int, fields: Sequence[tuple[str, str]], *, end_stream: bool = False
    ) -> None:
        """Fields as given (encoded UTF-8): one HEADERS frame, CONTINUATION ones if need be.
        With ``end_stream`` the stream's side is whole: it leaves at once, also corked."""
        with self._lock:
            try:
                if not self._conn.send_headers_fast(stream_id, fields, end_stream):
                    self._conn.send_headers(stream_id, fields, end_stream=end_stream)
            except h2.exceptions.H2Error as exc:
                raise StreamGone(str(exc)) from exc
            self._flush(stream_ended=end_stream)

    def send_answer_now(
        self, stream_id: int, fields: Sequence[tuple[str, str]], data: bytes
    ) -> bool:
        """A whole answer, HEADERS then ``data`` with END_STREAM, if the peer's windows take
        all of it now on a stream whose request came whole (the common exchange); whether it
        went (else nothing did). It leaves at once, also corked."""
        with self._lock:
            if not self._conn.send_answer_fast(stream_id, fields, data):
                return False
            self._flush(stream_ended=True)
        return True

    def send_data(
        self,
        stream_id: int,
        data: bytes,
        *,
        end_stream: bool = False,
        stopping: threading.Event | None = None,
        deadline: float | None = None,
    ) -> None:
        """Send ``data`` as the peer's flow-control window allows, waiting for credit (until
        ``deadline``, a ``time.monotonic()`` value: then :class:`WindowShut`)."""
        view = memoryview(data)
        while True:
            with self._lock:
                if self.closed:
                    raise StreamGone(
                        f"the HTTP/2 connection closed before stream {stream_id} ended"
                    )
                try:
                    window = min(
                        self._conn.local_flow_control_window(stream_id),
                        self._conn.max_outbound_frame_size,
                    )
                    if window <= 0 and view:
                        if stopping is not None and stopping.is_set():
                            raise StreamGone("the endpoint shut down")
                        if deadline is not None and time.monotonic() > deadline:
                            raise WindowShut(
                                f"stream {stream_id}: the peer's flow-control window stayed "
                                f"shut with {len(view)} bytes left to send"
                            )
                        self._window_waiters += 1
                        try:
                            self._window_opened.wait(0.2)
                        finally:
                            self._window_waiters -= 1
                        continue
                    piece, view = view[:window], view[window:]
                    self._conn.send_data(
                        stream_id, bytes(piece), end_stream=end_stream and not view
                    )
                except h2.exceptions.H2Error as exc:
                    raise StreamGone(f"stream {stream_id}: {exc}") from exc
                self._flush()
            if not view:
                return

    def send_data_now(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> int:
        """Send as much of ``data`` as the peer's flow-control window takes now, without
        waiting; how many bytes went (``end_stream`` only if all of them did, and then they
        leave at once, also corked)."""
        view, sent = memoryview(data), 0
        with self._lock:
            if self.closed:
                raise StreamGone(f"the HTTP/2 connection closed before stream {stream_id} ended")
            try:
                while view:
                    window = min(
                        self._conn.local_flow_control_window(stream_id),
                        self._conn.max_outbound_frame_size,
                    )
                    if window <= 0:
                        break
                    piece, view = view[:window], view[window:]
                    self._conn.send_data(
                        stream_id, bytes(piece), end_stream=end_stream and not view
                    )
                    sent += len(piece)
            except h2.exceptions.H2Error as exc:
                raise StreamGone(f"stream {stream_id}: {exc}") from exc
            self._flush(stream_ended=end_stream and not view)
        return sent

    def send_trailers(self, stream_id: int, fields: Sequence[tuple[str, str]]) -> None:
        self.send_headers(stream_id, fields, end_stream=True)

    def reset(self, stream_id: int, code: int = CANCEL) -> None:
        self._do(lambda: self._conn.reset_stream(stream_id, code))

    def goaway(self, code: int = NO_ERROR, last_stream_id: int | None = None) -> None:
        self._said_goaway = True
        self._do(lambda: self._conn.close_connection(code, last_stream_id=last_stream_id))

    def ping(self, data: bytes = b"deproxy!") -> None:
        self._do(lambda: self._conn.ping(data))

    def update_settings(self, settings: dict[int, int]) -> None:
        self._do(lambda: self._conn.update_settings(settings))

    def write_raw(self, data: bytes) -> None:
        """Bytes as given, outside h2's state machine (faults): logged as they go, after
        whatever h2 made before them (also while corked)."""
        with self._lock:
            data = self._conn.data_to_send() + data
            self._out_log.feed(data)
            self._stream.write(data)

    def corked(self) -> H2Wire:
        """Hold what h2 makes on this thread in its buffer, and write it in one piece when a
        stream's side ends (END_STREAM sent) or when the ``with`` block ends: an answer's
        frames, and the acks a read asked for before it, cost one write, not one a frame.
        Another thread's writes go at once, taking what waits along: h2's buffer is first
        in, first out, so order is kept either way. Nothing inside may wait for the peer.
        (The wire is its own context manager: the connection's thread corks it once a read.)"""
        return self

    def __enter__(self) -> None:
        self._corked_by = threading.get_ident()

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._corked_by = None
            self._flush()

    def _do(self, action: Callable[[], object]) -> None:
        with self._lock:
            try:
                action()
            except h2.exceptions.H2Error as exc:
                raise StreamGone(str(exc)) from exc
            self._flush()

    def _wake_window_waiters(self) -> None:
        if self._window_waiters:
            self._window_opened.notify_all()

    def _flush(self, *, stream_ended: bool = False) -> None:
        """Write what h2 holds, unless this thread corks the wire and no stream's side
        ended (an END_STREAM leaves at once: see :meth:`corked`)."""
        if (
            not stream_ended
            and self._corked_by is not None
            and self._corked_by == threading.get_ident()
        ):
            return
        self._send_waiting()

    def _send_waiting(self) -> None:
        data = self._conn.data_to_send()
        if data:
            self._out_log.feed(data)
            try:
                self._stream.write(data)
            except NetworkError:
                self.closed = True
                raise

    def _close(self) -> None:
        with self._lock:
            self.closed = True
            self._wake_window_waiters()


# -- client-side faults: frames h2 makes, sent in a shape h2 would not choose ------------------


def send_headers_continued(
    wire: H2Wire,
    stream_id: int,
    fields: list[tuple[str, str]],
    continuations: int,
    *,
    end_stream: bool = False,
) -> None:
    """Open ``stream_id`` with ``fields`` as HEADERS and ``continuations`` CONTINUATION frames
    (a CONTINUATION flood): h2 encodes the block, so its HPACK state stays the peer's."""
    encoded = [(name.encode(), value.encode()) for name, value in fields]
    with wire._lock:
        wire._flush()
        try:
            wire._conn.send_headers(stream_id, encoded, end_stream=end_stream)
        except h2.exceptions.H2Error as exc:
            raise StreamGone(str(exc)) from exc
        data = split_header_block(wire._conn.data_to_send(), continuations)
        wire._out_log.feed(data)
        try:
            wire._stream.write(data)
        except NetworkError:
            wire.closed = True
            raise


def rapid_reset(
    wire: H2Wire, fields: list[tuple[str, str]], count: int, code: int = CANCEL
) -> list[int]:
    """Open ``count`` streams, each a whole request (HEADERS with END_STREAM) reset at once
    (RST_STREAM ``code``), all in one write: the shape of CVE-2023-44487. The stream ids."""
    encoded = [(name.encode(), value.encode()) for name, value in fields]
    opened: list[int] = []
    with wire._lock:
        wire._flush()
        try:
            for _ in range(count):
                stream_id = int(wire._conn.get_next_available_stream_id())
                wire._conn.send_headers(stream_id, encoded, end_stream=True)
                wire._conn.reset_stream(stream_id, code)
                opened.append(stream_id)
        except h2.exceptions.H2Error as exc:
            raise StreamGone(f"after {len(opened)} reset streams: {exc}") from exc
        finally:
            wire._flush()
    return opened
