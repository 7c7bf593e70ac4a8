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
pseudo-headers included, no normalising. A GOAWAY received ends the opening of streams, not
the streams up to its last_stream_id (RFC 9113 §6.8), which still complete.

A header block in one frame (HEADERS with END_HEADERS, no padding, no priority) is read and
written here rather than through h2's frame objects, on h2's own HPACK contexts and through
its connection and stream state machines, with h2's checks: it makes the same events, errors
and bytes as h2 would (every other frame, and any stream h2 would answer otherwise, goes to
h2). Our HPACK encoder keeps its table still where it can: the tracking header, new in every
message, goes as a literal without indexing, and a field already in the table is encoded once
per table state.
"""

from __future__ import annotations

import contextlib
import select
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.stream
from h2.connection import AllowedStreamIDs, ConnectionInputs
from hyperframe import frame as hf

from .connections import FrameEvent
from .errors import DeproxyTimeout, NetworkError
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
    decode_table_neutral,
    error_name,
    literal_without_indexing,
    request_fields,
    split_header_block,
)
from .models import TRACKING_HEADER

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
_HEADER_EVENTS: dict[type, str] = {
    h2.events.RequestReceived: "request",
    h2.events.ResponseReceived: "response",
    h2.events.InformationalResponseReceived: "interim",
    h2.events.TrailersReceived: "trailers",
}


_END_STREAM, _END_HEADERS = 0x1, 0x4
_TRACKING = TRACKING_HEADER.lower()
# The h2 internals the fast path drives (h2 4.x): without them, every frame goes through h2.
_FAST = all(
    hasattr(h2.connection.H2Connection, name)
    for name in ("_get_or_create_stream", "_prepare_for_sending", "_terminate_connection")
) and hasattr(h2.connection, "_decode_headers")


class _Connection(h2.connection.H2Connection):
    """h2's connection, except that a GOAWAY received leaves it open for the streams the peer
    still completes (RFC 9113 §6.8). h2 closes at once (python-hyper/h2#1181) and refuses
    what follows: the answer nginx sends just after its GOAWAY at ``keepalive_requests``."""

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config)
        self._client = bool(config.client_side)  # read once: h2's config options are properties
        self._peer_ids = AllowedStreamIDs(not self._client)
        self._own_ids = AllowedStreamIDs(self._client)

    def _receive_goaway_frame(
        self, frame: hf.GoAwayFrame
    ) -> tuple[list[hf.Frame], list[h2.events.Event]]:
        state = self.state_machine.state
        result = super()._receive_goaway_frame(frame)
        self.state_machine.state = state  # H2Wire.new_stream_id opens no stream after it
        return result

    # -- the fast path: a whole header block, without h2's frame objects ---------------------
    # Most of h2's time per stream goes to what surrounds its state machine: a hyperframe
    # object per frame, parsed and serialised, and (received) the frame's repr for a debug
    # log that is off. A header block in one frame (END_HEADERS, no padding, no priority) is
    # read and written here instead, on the same HPACK contexts, through the same stream and
    # connection state machines, with h2's own checks: what h2 would refuse, it still refuses
    # (a frame in any other shape, or on a stream h2 would answer otherwise, goes to h2).

    def receive_fast(self, data: bytes) -> list[h2.events.Event]:
        """What ``receive_data(data)`` returns, taking whole header blocks the fast way."""
        buffer = self.incoming_buffer
        if not _FAST or buffer._data or buffer._preamble_len or buffer._headers_buffer:
            return self.receive_data(data)
        events: list[h2.events.Event] = []
        start = offset = 0
        end, limit = len(data), self.max_inbound_frame_size
        while offset + 9 <= end:
            length = int.from_bytes(data[offset : offset + 3], "big")
            after = offset + 9 + length
            if after > end:
                break
            if data[offset + 3] == 0x1 and length <= limit:
                flags = data[offset + 4]
                stream_id = int.from_bytes(data[offset + 5 : offset + 9], "big") & 0x7FFFFFFF
                if flags & _END_HEADERS and not flags & ~(_END_STREAM | _END_HEADERS):
                    if start < offset:  # the frames before it, in order, by h2
                        events += self.receive_data(data[start:offset])
                        start = offset
                        if buffer._data or buffer._headers_buffer:
                            break  # mid header block: h2 sees the rest
                    if self._takes_headers(stream_id):
                        block = data[offset + 9 : after]
                        events += self._receive_block(stream_id, block, bool(flags & _END_STREAM))
                        start = after
            offset = after
        if start < end:
            events += self.receive_data(data[start:])
        return events

    def _takes_headers(self, stream_id: int) -> bool:
        """A header block on an open stream, or one the peer may open now."""
        stream = self.streams.get(stream_id)
        if stream is not None:
            return not stream.closed
        if self._client:
            return False
        return stream_id % 2 == 1 and stream_id > self.highest_inbound_stream_id

    def _receive_block(
        self, stream_id: int, block: bytes, end_stream: bool
    ) -> list[h2.events.Event]:
        """h2's ``_receive_headers_frame`` for a frame ``_takes_headers`` took, with what its
        ``_receive_frame`` does when a stream turns out closed, and its ``receive_data`` when
        the frame breaks the protocol: GOAWAY prepared, the error raised. (A stream id too
        low, h2's other case there, is not taken.)"""
        try:
            if stream_id not in self.streams:
                max_open = self.local_settings.max_concurrent_streams
                value = self.open_inbound_streams
                if value + 1 > max_open:
                    raise h2.exceptions.TooManyStreamsError(
                        f"Max inbound streams is {max_open}, {value} open"
                    )
            headers = decode_table_neutral(self, block) or h2.connection._decode_headers(
                self.decoder, block
            )
            events = self.state_machine.process_input(ConnectionInputs.RECV_HEADERS)
            stream = self._get_or_create_stream(stream_id, self._peer_ids)
            frames, stream_events = stream.receive_headers(
                headers, end_stream, self.config.header_encoding
            )
        except h2.exceptions.StreamClosedError as exc:  # as h2's _receive_frame: a stream
            if not self._stream_is_closed_by_reset(exc.stream_id):  # error if it reset it
                self._terminate_connection(exc.error_code)
                raise
            reset = hf.RstStreamFrame(exc.stream_id)
            reset.error_code = exc.error_code
            self._prepare_for_sending([reset])
            return list(exc._events)
        except h2.exceptions.ProtocolError as exc:
            self._terminate_connection(exc.error_code)
            raise
        self._prepare_for_sending(frames)
        return events + stream_events

    # What a field encoded to while it left the HPACK encoder's table as it was (the field
    # found in it) is kept with the table's state: while the table stays so, the same field
    # encodes the same way. The tracking header, new in every request, is sent as a literal
    # "without indexing": it would only churn both tables and spoil what is kept.
    _ENCODED_KEPT = 256
    _encoded_state: tuple[object, int, int] | None = None
    _encoded: dict[tuple[str, str], bytes]

    def _table_state(self) -> tuple[object, int, int] | None:
        """The encoder's table as it is now (its newest entry, held, so compared by identity,
        its length and size limit); ``None`` while a size change waits to be sent."""
        table = self.encoder.header_table
        if table.resized:
            return None
        entries = table.dynamic_entries
        return (entries[0] if entries else None, len(entries), table.maxsize)

    def _same_table(self, state: tuple[object, int, int] | None) -> bool:
        kept = self._encoded_state
        return (
            state is not None
            and kept is not None
            and state[0] is kept[0]
            and state[1] == kept[1]
            and state[2] == kept[2]
        )

    def _encode(self, fields: list[tuple[str, str]]) -> bytes:
        if not self._same_table(self._table_state()):
            self._encoded, self._encoded_state = {}, self._table_state()
        parts = []
        for field in fields:
            part = self._encoded.get(field)
            if part is None:
                name, value = field
                if name == _TRACKING:
                    part = literal_without_indexing(name.encode(), value.encode())
                    parts.append(part)
                    continue
                part = self.encoder.encode([(name.encode(), value.encode())])
                if not self._same_table(self._table_state()):  # it moved: begin again
                    self._encoded, self._encoded_state = {}, self._table_state()
                elif len(self._encoded) < self._ENCODED_KEPT:
                    self._encoded[field] = part
            parts.append(part)
        return b"".join(parts)

    def send_headers_fast(
        self, stream_id: int, fields: list[tuple[str, str]], end_stream: bool
    ) -> bool:
        """``send_headers``, written here as one HEADERS frame (and CONTINUATION frames when
        the block is larger than a frame); ``False`` (nothing done) for an interim response,
        which h2 sends."""
        if not _FAST:
            return False
        client = self._client
        method = authority = None
        leading = True  # what h2 looks up: :status among the leading pseudo-headers, the
        for name, value in fields:  # first :method and :authority anywhere
            if name[:1] != ":":
                leading = False
            elif name == ":status":
                if leading and value[:1] == "1" and not client:
                    return False  # an interim response: h2's
                leading = False
            elif name == ":method" and method is None:
                method = value.encode()
            elif name == ":authority" and authority is None:
                authority = value.encode()
        if stream_id not in self.streams:
            max_open = self.remote_settings.max_concurrent_streams
            count = self.open_outbound_streams
            if count + 1 > max_open:
                raise h2.exceptions.TooManyStreamsError(
                    f"Max outbound streams is {max_open}, {count} open"
                )
        self.state_machine.process_input(ConnectionInputs.SEND_HEADERS)
        stream = self._get_or_create_stream(stream_id, self._own_ids)
        machine = stream.state_machine
        machine.process_input(h2.stream.StreamInputs.SEND_HEADERS)
        block = self._encode(fields)
        if end_stream:
            machine.process_input(h2.stream.StreamInputs.SEND_END_STREAM)
        elif machine.trailers_sent:
            raise h2.exceptions.ProtocolError("Trailers must have END_STREAM set.")
        if client and stream._authority is None:
            stream._authority = authority
        stream.request_method = method
        size, sid = self.max_outbound_frame_size, stream_id.to_bytes(4, "big")
        first = _END_STREAM if end_stream else 0
        if len(block) <= size:  # the common case: one HEADERS frame
            head = bytes((0x1, first | _END_HEADERS))
            self._data_to_send += len(block).to_bytes(3, "big") + head + sid + block
            return True
        pieces = [block[at : at + size] for at in range(0, len(block), size)]
        last = len(pieces) - 1
        for number, piece in enumerate(pieces):  # HEADERS, then CONTINUATION frames
            flags = (_END_HEADERS if number == last else 0) | (first if number == 0 else 0)
            head = bytes((0x1 if number == 0 else 0x9, flags))
            self._data_to_send += len(piece).to_bytes(3, "big") + head + sid + piece
        return True


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
        self._conn = _Connection(config)
        self.peer_goaway: str | None = None  # the GOAWAY received, as a sentence
        if settings:
            self._conn.local_settings.update(settings)
        self._stream = stream
        self._lock = threading.Lock()
        self._window_opened = threading.Condition(self._lock)
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
                self._window_opened.notify_all()
                return [Violation(f"{type(exc).__name__}: {exc}")]
            translated = self._translate(events)
            self._flush()
            self._window_opened.notify_all()
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
        for event in events:
            kind = _HEADER_EVENTS.get(type(event))
            if kind is not None:
                fields = self._fields(event.headers)  # type: ignore[attr-defined]
                out.append(HeadersIn(event.stream_id, kind, fields, kind == "trailers"))  # type: ignore[attr-defined]
            elif type(event) is h2.events.StreamEnded:
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
        self, stream_id: int, fields: list[tuple[str, str]], *, end_stream: bool = False
    ) -> None:
        """Fields as given (encoded UTF-8): one HEADERS frame, CONTINUATION ones if need be."""
        with self._lock:
            try:
                if not self._conn.send_headers_fast(stream_id, fields, end_stream):
                    self._conn.send_headers(stream_id, fields, end_stream=end_stream)
            except h2.exceptions.H2Error as exc:
                raise StreamGone(str(exc)) from exc
            self._flush()

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
                        self._window_opened.wait(0.2)
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
        waiting; how many bytes went (``end_stream`` only if all of them did)."""
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
            self._flush()
        return sent

    def send_trailers(self, stream_id: int, fields: list[tuple[str, str]]) -> None:
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

    @contextlib.contextmanager
    def corked(self) -> Iterator[None]:
        """Hold what h2 makes on this thread in its buffer, and write it in one piece when the
        block ends: a batch of streams answered at once costs one write, not one a frame.
        Another thread's writes go at once, taking what waits along: h2's buffer is first in,
        first out, so order is kept either way. Nothing inside may wait for the peer."""
        self._corked_by = threading.get_ident()
        try:
            yield
        finally:
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

    def _flush(self) -> None:
        if self._corked_by is not None and self._corked_by == threading.get_ident():
            return
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
            self._window_opened.notify_all()

    def stream_open(self, stream_id: int) -> bool:
        with self._lock:
            stream = self._conn.streams.get(stream_id)
            return stream is not None and not stream.closed


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
