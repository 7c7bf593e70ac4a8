"""h2's connection state, with fast paths for whole header blocks: with
:mod:`~pytest_deproxy.h2wire` and :mod:`~pytest_deproxy.h2frames`, the modules that import
``h2``.

A header block in one frame (HEADERS with END_HEADERS, no padding, no priority) is read and
written here rather than through h2's frame objects, on h2's own HPACK contexts and through
its connection and stream state machines, with h2's checks: it makes the same events, errors
and bytes as h2 would (every other frame, and any stream h2 would answer otherwise, goes to
h2). Our HPACK encoder keeps its table still where it can: the tracking header, new in every
message, goes as a literal without indexing, and a field already in the table is encoded once
per table state.

Rule kept here: nothing leaves h2's state machines out of step. The fast path drives h2's own
connection and stream machines, HPACK contexts and checks, and falls back to h2 for anything
else; without the h2 internals it needs (h2 4.x), every frame goes through h2.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.stream
from h2.connection import AllowedStreamIDs, ConnectionInputs
from hyperframe import frame as hf

from .h2frames import decode_table_neutral, literal_without_indexing
from .models import TRACKING_HEADER

_END_STREAM, _END_HEADERS = 0x1, 0x4
_TRACKING = TRACKING_HEADER.lower()
# The h2 internals the fast path drives (h2 4.x): without them, every frame goes through h2.
_FAST = all(
    hasattr(h2.connection.H2Connection, name)
    for name in ("_get_or_create_stream", "_prepare_for_sending", "_terminate_connection")
) and hasattr(h2.connection, "_decode_headers")


class H2Connection(h2.connection.H2Connection):
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
