"""h2's connection state, with fast paths for whole header blocks and the common exchange:
with :mod:`~pytest_deproxy.h2wire` and :mod:`~pytest_deproxy.h2frames`, the modules that
import ``h2``.

A header block in one frame (HEADERS with END_HEADERS, no padding, no priority) is read and
written here rather than through h2's frame objects, on h2's own HPACK contexts and through
its connection and stream state machines, with h2's checks: it makes the same events, errors
and bytes as h2 would (every other frame, and any stream h2 would answer otherwise, goes to
h2). Our HPACK encoder keeps its table still where it can: the tracking header, new in every
message, goes as a literal without indexing, and a field already in the table is encoded once
per table state (and the whole block of fields given as one tuple, the same answer again).

The common exchange, a server's new stream whose request is whole in that one block and
whose answer goes whole (HEADERS, and DATA when the windows take all of it at once), is kept
as an exchange rather than as h2's stream: no stream object, no stream state machine. h2
reaches its streams only through ``streams``; the moment it does, every exchange becomes the
stream h2 would hold for it, in the same state, and an exchange answered is let go where h2
lets a closed stream go.

Rule kept here: nothing leaves h2's state machines out of step. The fast path drives h2's own
connection and stream machines, HPACK contexts and checks, or keeps exactly what h2 would
have made of them (an exchange), and falls back to h2 for anything else; without the h2
internals it needs (h2 4.x), every frame goes through h2.
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Sequence

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.stream
import h2.utilities
from h2.connection import AllowedStreamIDs, ConnectionInputs, ConnectionState
from h2.stream import H2Stream, StreamClosedBy, StreamInputs
from hyperframe import frame as hf

from .h2frames import decode_table_neutral, literal_without_indexing
from .models import TRACKING_KEY

_END_STREAM, _END_HEADERS = 0x1, 0x4
_ANSWER_HEAD = bytes((0x1, _END_STREAM | _END_HEADERS))  # HEADERS that end the stream
# The h2 internals the fast path drives (h2 4.x): without them, every frame goes through h2.
_FAST = all(
    hasattr(h2.connection.H2Connection, name)
    for name in ("_get_or_create_stream", "_prepare_for_sending", "_terminate_connection")
) and hasattr(h2.connection, "_decode_headers")
_SERVER_OPEN = ConnectionState.SERVER_OPEN
_UNTAKEN = (b"content-length", b":status")  # fields that make h2 do more with a request


class _Exchange:
    """A stream h2 does not hold yet: a request whole in one header block (HEADERS with
    END_STREAM), and, once answered whole, the answer. What h2 would hold for it is made
    from this when h2 is to see the stream (:meth:`H2Connection._hand_over`)."""

    __slots__ = ("answered", "data", "headers", "inbound", "outbound", "stream_id")

    def __init__(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], inbound: int, outbound: int
    ) -> None:
        self.stream_id = stream_id
        self.headers = headers
        self.inbound = inbound  # the windows h2 would have given the stream
        self.outbound = outbound
        self.answered = False  # HEADERS sent with END_STREAM, or HEADERS and one DATA with it
        self.data: int | None = None  # the length of that DATA frame


class H2Connection(h2.connection.H2Connection):
    """h2's connection, except that a GOAWAY received leaves it open for the streams the peer
    still completes (RFC 9113 §6.8). h2 closes at once (python-hyper/h2#1181) and refuses
    what follows: the answer nginx sends just after its GOAWAY at ``keepalive_requests``."""

    def __init__(self, config: h2.config.H2Configuration) -> None:
        self._exchanges: dict[int, _Exchange] = {}
        self._answered = 0  # how many of them are answered
        self._held: dict[int, H2Stream] = {}
        super().__init__(config)
        self._client = bool(config.client_side)  # read once: h2's config options are properties
        self._peer_ids = AllowedStreamIDs(not self._client)
        self._own_ids = AllowedStreamIDs(self._client)
        # h2 keeps its last closed streams in an ordered dict that trims itself at every
        # entry: the exchanges let go together are entered as a plain ordered dict's, and it
        # is trimmed once after them.
        trimmed = type(self._closed_streams) is h2.utilities.SizeLimitDict and hasattr(
            self._closed_streams, "_check_size_limit"
        )
        self._remember_closed = OrderedDict.__setitem__ if trimmed else operator.setitem
        self._plain_in = not (  # requests' headers as decoded: h2's own checks are off
            config.validate_inbound_headers
            or config.normalize_inbound_headers
            or config.header_encoding
        )

    # -- exchanges: streams h2 has not seen yet ----------------------------------------------
    # The common exchange, a request whole in one header block answered whole (HEADERS, and
    # DATA if the windows take it at once), is kept as an _Exchange rather than as h2's
    # stream and its state machine. h2 reaches its streams only through ``streams``: the
    # moment it does, every exchange is handed over, made into the stream h2 would hold
    # (the same state, windows and closing), so h2 carries on as if it had held them all
    # along. An exchange answered whole is let go where h2 would have let its stream go: at
    # the next stream the peer opens, into ``_closed_streams``, in the same order.

    @property
    def streams(self) -> dict[int, H2Stream]:
        if self._exchanges:
            self._hand_over()
        return self._held

    @streams.setter
    def streams(self, value: dict[int, H2Stream]) -> None:
        self._held = value

    def _hand_over(self) -> None:
        """Make every exchange into the stream h2 would hold for it (oldest first)."""
        exchanges, self._exchanges = self._exchanges, {}
        self._answered = 0
        held, config = self._held, self.config
        for stream_id, exchange in exchanges.items():
            stream = H2Stream(
                stream_id,
                config=config,
                inbound_window_size=exchange.inbound,
                outbound_window_size=exchange.outbound,
            )
            stream.max_outbound_frame_size = self.max_outbound_frame_size
            stream.receive_headers(exchange.headers, True, config.header_encoding)
            if exchange.answered:
                machine = stream.state_machine
                machine.process_input(StreamInputs.SEND_HEADERS)
                stream.request_method = None
                if exchange.data is not None:
                    machine.process_input(StreamInputs.SEND_DATA)
                    machine.process_input(StreamInputs.SEND_END_STREAM)
                    stream.outbound_flow_control_window -= exchange.data
                else:
                    machine.process_input(StreamInputs.SEND_END_STREAM)
            held[stream_id] = stream

    def _open_inbound(self) -> int:
        """h2's ``open_inbound_streams`` with the exchanges counted, and let go as h2 lets
        closed streams go (the held ones first: they are the older)."""
        count, closed = 0, []
        if self._held:
            for stream_id, stream in self._held.items():
                if stream.open and stream_id % 2 == 1:
                    count += 1
                elif stream.closed:
                    closed.append(stream_id)
            for stream_id in closed:
                self._closed_streams[stream_id] = self._held.pop(stream_id).closed_by
        if self._answered:  # (in a batch of new streams, the first lets the answered go)
            done = [e.stream_id for e in self._exchanges.values() if e.answered]
            closed_streams, remember = self._closed_streams, self._remember_closed
            for stream_id in done:
                del self._exchanges[stream_id]
                remember(closed_streams, stream_id, StreamClosedBy.SEND_END_STREAM)
            if remember is not operator.setitem:  # (trimmed once a batch: see __init__)
                closed_streams._check_size_limit()  # type: ignore[attr-defined]
            self._answered = 0
        return count + len(self._exchanges)

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
        self._settings_read = None  # what h2 did before may have changed them
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
                        self._settings_read = None
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
        self._settings_read = None
        return events

    # The settings a new stream reads (the most streams we take, the initial windows both
    # ways), read once per batch of whole header blocks: they change only as h2 takes a
    # frame (SETTINGS, its ACK), or as ours are updated, neither of which happens between
    # the blocks that receive_fast takes itself.
    _settings_read: tuple[int, int, int] | None = None

    def _settings(self) -> tuple[int, int, int]:
        read = self._settings_read
        if read is None:
            local = self.local_settings
            read = self._settings_read = (
                local.max_concurrent_streams,
                local.initial_window_size,
                self.remote_settings.initial_window_size,
            )
        return read

    def _takes_headers(self, stream_id: int) -> bool:
        """A header block on an open stream h2 holds, or on one the peer may open now."""
        stream = self._held.get(stream_id)
        if stream is not None:
            return not stream.closed
        if self._client or stream_id in self._exchanges:
            return False
        return stream_id % 2 == 1 and stream_id > self.highest_inbound_stream_id

    def _receive_block(
        self, stream_id: int, block: bytes, end_stream: bool
    ) -> list[h2.events.Event]:
        """h2's ``_receive_headers_frame`` for a frame ``_takes_headers`` took, with what its
        ``_receive_frame`` does when a stream turns out closed, and its ``receive_data`` when
        the frame breaks the protocol: GOAWAY prepared, the error raised. (A stream id too
        low, h2's other case there, is not taken.) A request whole in this block, on a new
        stream, is kept as an exchange (h2's checks made, its events given)."""
        try:
            new = stream_id not in self._held
            if new:
                settings = self._settings()
                max_open = settings[0]
                value = self._open_inbound()
                if value + 1 > max_open:
                    raise h2.exceptions.TooManyStreamsError(
                        f"Max inbound streams is {max_open}, {value} open"
                    )
            kept = self._decoded_before(block)
            headers, takeable = kept if kept is not None else self._decode(block)
            if (
                takeable
                and new
                and end_stream
                and self._plain_in
                and self.state_machine.state is _SERVER_OPEN
            ):
                return self._exchange(stream_id, list(headers), settings)
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

    # A client sends the same header block again and again (every field indexed): what a
    # block that leaves the decoder's table as it was decodes to is kept with the table's
    # state (its newest entry, held, so compared by identity, its length and the decoder's
    # limits): while they stay so, the same block decodes the same way.
    _DECODED_KEPT = 64
    _decoded_state: tuple[object, int, int, int, int] | None = None
    _decoded: dict[bytes, tuple[list[tuple[bytes, bytes]], bool]]

    def _decoder_state(self) -> tuple[object, int, int, int, int]:
        decoder = self.decoder
        table = decoder.header_table
        entries = table.dynamic_entries
        return (
            entries[0] if entries else None,
            len(entries),
            table.maxsize,
            decoder.max_allowed_table_size,
            decoder.max_header_list_size,
        )

    def _decoded_before(self, block: bytes) -> tuple[list[tuple[bytes, bytes]], bool] | None:
        """What ``block`` decoded to before, if the decoder is as it was then."""
        kept = self._decoded_state
        if kept is None:
            return None
        decoder = self.decoder  # _decoder_state() == kept, asked without making the state
        table = decoder.header_table
        entries = table.dynamic_entries
        if (
            (entries[0] if entries else None) is not kept[0]
            or len(entries) != kept[1]
            or table.maxsize != kept[2]
            or decoder.max_allowed_table_size != kept[3]
            or decoder.max_header_list_size != kept[4]
        ):
            self._decoded_state = None
            return None
        return self._decoded.get(block)

    def _decode(self, block: bytes) -> tuple[list[tuple[bytes, bytes]], bool]:
        """A header block decoded (h2's refusals raised), and whether a request in it may be
        an exchange: none of the fields h2 does more with (a length, a status)."""
        neutral = decode_table_neutral(self, block)
        headers = neutral or h2.connection._decode_headers(self.decoder, block)
        takeable = not any(name in _UNTAKEN for name, _ in headers)
        if neutral is not None:
            if self._decoded_state is None or len(self._decoded) >= self._DECODED_KEPT:
                self._decoded, self._decoded_state = {}, self._decoder_state()
            self._decoded[block] = (neutral, takeable)
        return list(headers), takeable

    def _exchange(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], settings: tuple[int, int, int]
    ) -> list[h2.events.Event]:
        """What h2 does with a new stream's whole request (its state machines move, from a
        connection already open, with no frame to send), kept as an exchange (``settings``:
        those ``_settings`` read)."""
        self.highest_inbound_stream_id = stream_id
        _, inbound, outbound = settings
        self._exchanges[stream_id] = _Exchange(stream_id, headers, inbound, outbound)
        ended = h2.events.StreamEnded(stream_id=stream_id)
        request = h2.events.RequestReceived(
            stream_id=stream_id, headers=headers, stream_ended=ended
        )
        return [request, ended]

    # What a field encoded to while it left the HPACK encoder's table as it was (the field
    # found in it) is kept with the table's state: while the table stays so, the same field
    # encodes the same way. The tracking header, new in every request, is sent as a literal
    # "without indexing": it would only churn both tables and spoil what is kept.
    _ENCODED_KEPT = 256
    _encoded_state: tuple[object, int, int] | None = None
    _encoded: dict[tuple[str, str], bytes]

    def _table_kept(self) -> bool:
        """Whether the encoder's table is as ``_encoded_state`` says (asked without making
        the state): what is kept encodes the same way."""
        kept = self._encoded_state
        if kept is None:
            return False
        table = self.encoder.header_table
        if table.resized:
            return False
        entries = table.dynamic_entries
        return (
            (entries[0] if entries else None) is kept[0]
            and len(entries) == kept[1]
            and table.maxsize == kept[2]
        )

    def _table_state(self) -> tuple[object, int, int] | None:
        """The encoder's table as it is now (its newest entry, held, so compared by identity,
        its length and size limit); ``None`` while a size change waits to be sent."""
        table = self.encoder.header_table
        if table.resized:
            return None
        entries = table.dynamic_entries
        return (entries[0] if entries else None, len(entries), table.maxsize)

    # A whole block is kept too, for fields given as a tuple (immutable, so the same object
    # is the same fields): the same answer again is encoded once per table state.
    _block_of: Sequence[tuple[str, str]] | None = None
    _block = b""

    def _encode(self, fields: Sequence[tuple[str, str]]) -> bytes:
        if not self._table_kept():
            self._encoded, self._encoded_state = {}, self._table_state()
            self._block_of = None
        elif fields is self._block_of:
            return self._block
        parts = []
        moved = False
        for field in fields:
            part = self._encoded.get(field)
            if part is None:
                name, value = field
                if name == TRACKING_KEY:
                    part = literal_without_indexing(name.encode(), value.encode())
                    parts.append(part)
                    continue
                part = self.encoder.encode([(name.encode(), value.encode())])
                if not self._table_kept():  # it moved: begin again
                    self._encoded, self._encoded_state = {}, self._table_state()
                    self._block_of, moved = None, True
                elif len(self._encoded) < self._ENCODED_KEPT:
                    self._encoded[field] = part
            parts.append(part)
        block = b"".join(parts)
        if type(fields) is tuple and not moved:  # the same fields encode so while it stays
            self._block_of, self._block = fields, block
        return block

    # The last fields (a tuple) that answered an exchange: the same again is known to be a
    # final answer with no :method, so the checks below were made of it already.
    _answer_fields: Sequence[tuple[str, str]] | None = None

    def send_headers_fast(
        self, stream_id: int, fields: Sequence[tuple[str, str]], end_stream: bool
    ) -> bool:
        """``send_headers``, written here as one HEADERS frame (and CONTINUATION frames when
        the block is larger than a frame); ``False`` (nothing done) for an interim response,
        which h2 sends."""
        if not _FAST:
            return False
        if fields is self._answer_fields and end_stream:
            exchange = self._exchanges.get(stream_id)
            if (
                exchange is not None
                and not exchange.answered
                and self.state_machine.state is _SERVER_OPEN
            ):  # (_answers(exchange, None), and _write_block's common case, written out)
                block = self._encode(fields)
                if len(block) <= self.max_outbound_frame_size:
                    head = len(block).to_bytes(3, "big") + _ANSWER_HEAD
                    self._data_to_send += head + stream_id.to_bytes(4, "big") + block
                else:
                    self._write_block(stream_id, block, end_stream)
                exchange.answered = True
                self._answered += 1
                return True
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
        exchange = self._exchanges.get(stream_id)
        if exchange is not None:
            if end_stream and self._answers(exchange, method):
                self._write_block(stream_id, self._encode(fields), end_stream)
                exchange.answered = True
                self._answered += 1
                if type(fields) is tuple:
                    self._answer_fields = fields
                return True
            self._hand_over()
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
        self._write_block(stream_id, block, end_stream)
        return True

    def _answers(self, exchange: _Exchange, method: bytes | None) -> bool:
        """Whether an answer to ``exchange`` may be sent as such: once, on a connection h2
        holds open, with no ``:method`` among its fields (h2 would keep it on the stream)."""
        return not exchange.answered and method is None and self.state_machine.state is _SERVER_OPEN

    def send_answer_fast(
        self, stream_id: int, fields: Sequence[tuple[str, str]], data: bytes
    ) -> bool:
        """A whole answer to an exchange: HEADERS, then ``data`` in one DATA frame with
        END_STREAM, when the windows and the frame size take it at once (h2's ``send_headers``
        then ``send_data``); ``False`` (nothing done) for anything else."""
        exchange = self._exchanges.get(stream_id)
        if (
            exchange is None
            or not data
            or len(data)
            > min(
                self.outbound_flow_control_window, exchange.outbound, self.max_outbound_frame_size
            )
            or (fields[:1] and fields[0][0] == ":status" and fields[0][1][:1] == "1")
            or any(name == ":method" for name, _ in fields)
            or not self._answers(exchange, None)
        ):
            return False
        self._write_block(stream_id, self._encode(fields), False)
        size = len(data)
        self._data_to_send += (
            size.to_bytes(3, "big") + b"\x00\x01" + stream_id.to_bytes(4, "big") + data
        )
        self.outbound_flow_control_window -= size
        exchange.answered, exchange.data = True, size
        self._answered += 1
        return True

    def _write_block(self, stream_id: int, block: bytes, end_stream: bool) -> None:
        """A header block as one HEADERS frame, or HEADERS and CONTINUATION frames."""
        size, sid = self.max_outbound_frame_size, stream_id.to_bytes(4, "big")
        first = _END_STREAM if end_stream else 0
        if len(block) <= size:  # the common case: one HEADERS frame
            head = bytes((0x1, first | _END_HEADERS))
            self._data_to_send += len(block).to_bytes(3, "big") + head + sid + block
            return
        pieces = [block[at : at + size] for at in range(0, len(block), size)]
        last = len(pieces) - 1
        for number, piece in enumerate(pieces):  # HEADERS, then CONTINUATION frames
            flags = (_END_HEADERS if number == last else 0) | (first if number == 0 else 0)
            head = bytes((0x1 if number == 0 else 0x9, flags))
            self._data_to_send += len(piece).to_bytes(3, "big") + head + sid + piece
