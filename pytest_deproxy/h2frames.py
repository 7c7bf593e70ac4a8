"""HTTP/2 as bytes and fields, without a connection to drive: with :mod:`~pytest_deproxy.h2wire`,
the modules of the package that import ``h2`` (and its ``hyperframe``); none other does.

Rules kept here: pure. The frame log reads one direction's bytes as frames and reports every
connection-level frame (SETTINGS, WINDOW_UPDATE, PING, RST_STREAM, GOAWAY) as a
:class:`~pytest_deproxy.connections.FrameEvent`, malformed ones included, holding only those
frames' payloads; the event types here are what the rest of the package sees of h2's; raw
frames are made by hand for faults h2 would not make; the fields helpers turn an HTTP/1-style
message into the fields HTTP/2 carries, as RFC 9113 8.2.2 asks, and a received header block
into the request it asks for and the text the record keeps of it. A header block that changes
no HPACK table is decoded here off the connection decoder's tables, which it leaves as they
were; any other goes to the decoder.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import h2.connection
import h2.errors
import h2.settings
from hyperframe import frame as hf

from .connections import FrameEvent
from .models import Headers, Request

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, REFUSED_STREAM, CANCEL = 0x0, 0x1, 0x2, 0x7, 0x8
ENHANCE_YOUR_CALM = 0xB
# What HTTP/2 forbids (RFC 9113 8.2.2): the fields an intermediary must drop when it turns
# an HTTP/1 message into HTTP/2.
CONNECTION_SPECIFIC = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)
_LOGGED = {
    hf.SettingsFrame: "SETTINGS",
    hf.WindowUpdateFrame: "WINDOW_UPDATE",
    hf.PingFrame: "PING",
    hf.RstStreamFrame: "RST_STREAM",
    hf.GoAwayFrame: "GOAWAY",
}
_TYPES = {0x4: hf.SettingsFrame, 0x8: hf.WindowUpdateFrame, 0x6: hf.PingFrame}
_TYPES |= {0x3: hf.RstStreamFrame, 0x7: hf.GoAwayFrame}


def error_name(code: int) -> str:
    """``0x8`` -> ``"CANCEL"``; an unknown code is shown as its number."""
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return f"0x{code:x}"


def setting_name(code: int) -> str:
    try:
        return h2.settings.SettingCodes(code).name
    except ValueError:
        return f"0x{code:x}"


class FrameLog:
    """Reads one direction's bytes as frames and reports the connection-level ones. Only
    those frames' payloads are kept while they arrive: DATA and HEADERS are counted, not held."""

    def __init__(self, direction: str, on_event: Callable[[FrameEvent], None], *, preface: bool):
        self.direction = direction
        self._on_event = on_event
        self._skip_preface = len(PREFACE) if preface else 0
        self._buffer = b""
        self._skipping = 0  # bytes left of a frame not logged

    def feed(self, data: bytes) -> None:
        """Take the next bytes of this direction: frames are walked by offset, each byte looked
        at once, and only a connection-level frame not yet whole is held."""
        if self._skip_preface:
            taken = min(self._skip_preface, len(data))
            self._skip_preface -= taken
            data = data[taken:]
        if self._skipping:
            taken = min(self._skipping, len(data))
            self._skipping -= taken
            data = data[taken:]
        if not data:
            return
        buffer = self._buffer + data if self._buffer else data
        at, end = 0, len(buffer)
        while end - at >= 9:
            after = at + 9 + int.from_bytes(buffer[at : at + 3], "big")
            if buffer[at + 3] not in _TYPES:  # not logged: skipped, also what is still to come
                if after > end:
                    self._skipping = after - end
                    at = end
                    break
            elif after > end:
                break
            else:
                self._report(buffer[at:after])
            at = after
        self._buffer = buffer[at:]

    def _report(self, raw: bytes) -> None:
        try:
            frame, length = hf.Frame.parse_frame_header(memoryview(raw[:9]))
            frame.parse_body(memoryview(raw[9 : 9 + length]))
        except Exception:  # a malformed frame: recorded as its type, with its bytes
            names = {0x4: "SETTINGS", 0x8: "WINDOW_UPDATE", 0x6: "PING", 0x3: "RST_STREAM"}
            kind = names.get(raw[3], "GOAWAY")
            sid = int.from_bytes(raw[5:9], "big") & 0x7FFFFFFF
            self._on_event(FrameEvent(self.direction, kind, sid, ("MALFORMED",), data=raw[9:]))
            return
        event = FrameEvent(
            self.direction,
            _LOGGED[type(frame)],
            frame.stream_id,
            tuple(sorted(frame.flags)),
            values=_values(frame),
            code=getattr(frame, "error_code", None),
            error=None if not hasattr(frame, "error_code") else error_name(frame.error_code),
            last_stream_id=getattr(frame, "last_stream_id", None),
            data=bytes(
                getattr(frame, "opaque_data", b"") or getattr(frame, "additional_data", b"")
            ),
        )
        self._on_event(event)


def _values(frame: hf.Frame) -> dict[str, int]:
    if isinstance(frame, hf.SettingsFrame):
        return {setting_name(code): value for code, value in frame.settings.items()}
    if isinstance(frame, hf.WindowUpdateFrame):
        return {"increment": frame.window_increment}
    return {}


# -- events, as the rest of the package sees them ------------------------------------------


# The events of every stream (HeadersIn, DataIn, Ended) are slotted, not frozen: a frozen
# dataclass is made three times slower, and one is made per frame. Nothing changes them.
@dataclass(slots=True)
class HeadersIn:
    """A header block: ``kind`` is ``"request"``, ``"response"``, ``"interim"`` or
    ``"trailers"``; ``fields`` as received, pseudo-headers first as they came (a request's
    are the same list for the same block again: never to be changed); ``end_stream``: the
    block ended its stream (no body follows). A request's block that ended its stream is
    followed by no :class:`Ended`: its ``end_stream`` says so."""

    stream_id: int
    kind: str
    fields: list[tuple[str, str]]
    end_stream: bool


@dataclass(slots=True)
class DataIn:
    stream_id: int
    data: bytes


@dataclass(slots=True)
class Ended:
    stream_id: int


@dataclass(frozen=True)
class Reset:
    stream_id: int
    code: int


@dataclass(frozen=True)
class GoneAway:
    code: int
    last_stream_id: int | None


@dataclass(frozen=True)
class Violation:
    """The peer broke the protocol: h2 sent GOAWAY (``message`` says why)."""

    message: str


Event = HeadersIn | DataIn | Ended | Reset | GoneAway | Violation


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    """One raw frame: for faults h2 would not let us make."""
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream_id & 0x7FFFFFFF)
        + payload
    )


def goaway_frame(code: int, last_stream_id: int) -> bytes:
    return frame(0x7, 0, 0, struct.pack(">II", last_stream_id, code))


def rst_stream_frame(stream_id: int, code: int) -> bytes:
    return frame(0x3, 0, stream_id, struct.pack(">I", code))


def request_fields(
    method: str, scheme: str, authority: str, path: str, headers: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
    """An HTTP/1-style request as HTTP/2 fields: pseudo-headers first, names lower-cased,
    ``Host`` folded into ``:authority`` and connection-specific fields dropped (as RFC 9113
    8.2.2 asks; send them with ``raw fields`` to test a peer's refusal)."""
    fields = [(":method", method), (":scheme", scheme), (":authority", authority)]
    if method != "CONNECT":
        fields.append((":path", path))
    else:
        fields = [(":method", method), (":authority", authority)]
    for name, value in headers:
        lower = name.lower()
        if lower == "host" or lower in CONNECTION_SPECIFIC:
            continue
        if lower == "te" and value.strip().lower() != "trailers":
            continue
        fields.append((lower, value))
    return fields


def response_fields(code: str, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """A response head as HTTP/2 fields: ``:status`` first, names lower-cased, and neither
    connection-specific fields nor pseudo-headers (an echoed request's) carried over."""
    fields = [(":status", code)]
    for name, value in headers:
        lower = name.lower()
        if lower in CONNECTION_SPECIFIC or lower.startswith(":"):
            continue
        fields.append((lower, value))
    return fields


def split_header_block(data: bytes, continuations: int) -> bytes:
    """The HEADERS frame (and any CONTINUATION after it) in ``data``, as made by h2, sent as
    one HEADERS without END_HEADERS and ``continuations`` CONTINUATION frames, the last
    with END_HEADERS: the header block is cut into that many pieces (empty ones when the
    block is shorter than the frames asked for). Other frames in ``data`` go first."""
    block, flags, stream_id, rest, offset = b"", 0, 0, b"", 0
    while offset + 9 <= len(data):
        length = int.from_bytes(data[offset : offset + 3], "big")
        kind, frame_flags = data[offset + 3], data[offset + 4]
        payload = data[offset + 9 : offset + 9 + length]
        if kind == 0x1:  # HEADERS: take off padding and priority, keep END_STREAM
            stream_id = int.from_bytes(data[offset + 5 : offset + 9], "big") & 0x7FFFFFFF
            flags = frame_flags & 0x1
            start, end = 0, len(payload)
            if frame_flags & 0x8:
                start, end = 1, len(payload) - payload[0]
            if frame_flags & 0x20:
                start += 5
            block += payload[start:end]
        elif kind == 0x9:
            block += payload
        else:
            rest += data[offset : offset + 9 + length]
        offset += 9 + length
    pieces = continuations + 1
    size, extra = divmod(len(block), pieces)
    cuts, at = [], 0
    for number in range(pieces):
        step = size + (1 if number < extra else 0)
        cuts.append(block[at : at + step])
        at += step
    frames = [frame(0x1, flags, stream_id, cuts[0])]
    frames += [frame(0x9, 0, stream_id, piece) for piece in cuts[1:-1]]
    frames.append(frame(0x9, 0x4, stream_id, cuts[-1]))
    return rest + b"".join(frames)


def decode_table_neutral(
    connection: h2.connection.H2Connection, block: bytes
) -> list[tuple[bytes, bytes]] | None:
    """A header block that changes no HPACK table (indexed fields, and literals "without
    indexing" in plain text), as the connection's decoder decodes it (``raw=True``) but
    without its cost; the decoder is left as it was, as it would be. ``None`` for any other
    block, and for one the decoder would refuse (an index it does not hold, a list over its
    size limit, a table size update it still waits for): the decoder is to decode it, and
    say so."""
    decoder = connection.decoder
    if not block or decoder.header_table_size > decoder.max_allowed_table_size:
        return None
    static = decoder.header_table.STATIC_TABLE
    dynamic = decoder.header_table.dynamic_entries
    in_static, in_table = len(static), len(static) + len(dynamic)
    headers: list[tuple[bytes, bytes]] = []
    size, at, end = 0, 0, len(block)
    while at < end:
        byte = block[at]
        if byte & 0x80:  # indexed, its index in one byte (1 to 126)
            index = byte - 0x81
            if index < 0 or byte == 0xFF or index >= in_table:
                return None
            header = static[index] if index < in_static else dynamic[index - in_static]
            at += 1
        elif byte & 0xF0 == 0:  # a literal without indexing (RFC 7541 6.2.2)
            index = byte - 1
            at += 1
            if index == 0xE or index >= in_table:
                return None
            if index >= 0:  # its name indexed (1 to 14)
                name = (static[index] if index < in_static else dynamic[index - in_static])[0]
            else:
                taken = _plain_string(block, at)
                if taken is None:
                    return None
                name, at = taken
            taken = _plain_string(block, at)
            if taken is None:
                return None
            value, at = taken
            header = (name, value)
        else:
            return None
        size += 32 + len(header[0]) + len(header[1])  # RFC 7541 4.1, as hpack counts
        headers.append(header)
    if size > decoder.max_header_list_size:
        return None
    return headers


def _plain_string(block: bytes, at: int) -> tuple[bytes, int] | None:
    """A string literal not Huffman-coded at ``at``, and where it ends; ``None`` for any
    other (Huffman-coded, cut short)."""
    if at >= len(block) or block[at] & 0x80:
        return None
    length, at = block[at], at + 1
    if length == 0x7F:  # a longer length, in more bytes (RFC 7541 5.1)
        shift = 0
        while True:
            if at >= len(block) or shift > 28:
                return None
            byte, at = block[at], at + 1
            length += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
    if at + length > len(block):
        return None
    return block[at : at + length], at + length


def literal_without_indexing(name: bytes, value: bytes) -> bytes:
    """A field as an HPACK literal "without indexing", name and value in plain text (RFC 7541
    6.2.2): for a value no later block repeats, which would only churn the peer's table."""
    return b"\x00" + _length(name) + name + _length(value) + value


def _length(data: bytes) -> bytes:
    """A string's length as an HPACK integer with a 7-bit prefix (RFC 7541 5.1), H bit off."""
    length = len(data)
    if length < 0x7F:
        return bytes((length,))
    out, length = bytearray((0x7F,)), length - 0x7F
    while length >= 0x80:
        out.append(length & 0x7F | 0x80)
        length >>= 7
    out.append(length)
    return bytes(out)


def fields_text(fields: list[tuple[str, str]]) -> bytes:
    """A header block as the record keeps it (``Handling.raw_head``): one ``name: value``
    line per field, in wire order, as HPACK decoded it."""
    return "".join([f"{name}: {value}\r\n" for name, value in fields]).encode("utf-8", "replace")


def request_of(fields: list[tuple[str, str]], body: bytes = b"") -> Request:
    """The request a header block asks for: ``:method`` and ``:path`` (``:authority`` for
    CONNECT); every field, pseudo-headers included, stays in ``headers`` in wire order."""
    headers = Headers.from_wire(list(fields))
    method = headers.get(":method") or "(no :method)"
    path = headers.get(":path") or headers.get(":authority") or "(no :path)"
    return Request.received(method, path, headers, body, "2")
