"""The HTTP/2 fast path (h2wire): whole header blocks read and written without h2's frame
objects, on h2's HPACK contexts and state machines. It must answer what h2 answers: the
same events and the same bytes for every shape of input, the refusals included."""

from __future__ import annotations

import re
import socket
import subprocess
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack
import pytest
from hyperframe import frame as hf

from pytest_deproxy import Deproxy, Request, Response
from pytest_deproxy.h2conn import H2Connection
from pytest_deproxy.h2frames import PREFACE, frame

from .conftest import answered

CONFIG: dict[str, Any] = {
    "header_encoding": None,
    "validate_outbound_headers": False,
    "normalize_outbound_headers": False,
    "validate_inbound_headers": False,
    "normalize_inbound_headers": False,
}
REQUEST = [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/")]


def _headers(stream_id: int, block: bytes, flags: int = 0x5) -> bytes:
    return frame(0x1, flags, stream_id, block)


class _Peer:
    """A client's HPACK context, to make header blocks by hand."""

    def __init__(self) -> None:
        self.encoder = hpack.Encoder()

    def block(self, fields: list[tuple[str, str]]) -> bytes:
        return self.encoder.encode(fields)


def _outcome(conn: H2Connection, chunks: list[bytes], fast: bool) -> list[object]:
    """What a connection made of ``chunks``: its events (as plain values), the error that
    ended it, and every byte it had to send."""
    seen: list[object] = []
    for chunk in chunks:
        try:
            events = conn.receive_fast(chunk) if fast else conn.receive_data(chunk)
        except h2.exceptions.ProtocolError as exc:
            seen.append(("error", type(exc).__name__, re.sub("0x[0-9a-f]+", "0x", str(exc))))
            seen.append(("sent", bytes(conn.data_to_send())))
            break
        for event in events:
            values = {
                k: v
                for k, v in vars(event).items()
                if k not in ("stream_ended", "priority_updated")
            }
            seen.append((type(event).__name__, sorted(values.items(), key=str)))
        seen.append(("sent", bytes(conn.data_to_send())))
    return seen


def _server(max_streams: int | None = None, case: str = "") -> H2Connection:
    """Our subclass of h2's connection: receive_data is h2's, receive_fast the fast path."""
    conn = H2Connection(h2.config.H2Configuration(client_side=False, **CONFIG))
    if case == "a list over the size limit":  # its list is 294 B
        conn.decoder.max_header_list_size = 250
    if max_streams is not None:
        conn.local_settings.max_concurrent_streams = max_streams
        conn.local_settings.acknowledge()
    conn.initiate_connection()
    conn.data_to_send()
    return conn


def _huffman(value: bytes) -> bytes:
    from hpack.huffman import HuffmanEncoder
    from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

    coded = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH).encode(value)
    return bytes((0x80 | len(coded),)) + coded


def _plain(name: bytes, value: bytes) -> bytes:
    """A literal without indexing, plain text (lengths under 127 in one byte, else more)."""
    from pytest_deproxy.h2frames import literal_without_indexing

    return literal_without_indexing(name, value)


def _cases() -> dict[str, tuple[list[bytes], int | None]]:
    p = _Peer()
    settings = frame(0x4, 0, 0, b"")
    a = p.block(REQUEST)
    b = p.block([*REQUEST, ("x-id", "2")])
    c = p.block([*REQUEST, ("x-id", "3")])
    trailers = p.block([("x-checksum", "abc")])
    start = PREFACE + settings
    q = _Peer()
    one, two = q.block(REQUEST), q.block(REQUEST[:3])
    r = _Peer()
    first, again = r.block(REQUEST), r.block(REQUEST)
    assert all(byte & 0x80 for byte in again)  # indexed only: static and dynamic entries
    cases = {
        "indexed fields only": ([start + _headers(1, first) + _headers(3, again)], None),
        "index 0": ([start + _headers(1, b"\x82\x80")], None),
        "an index the table does not hold": ([start + _headers(1, b"\x82\xfe")], None),
        "a list over the size limit": ([start + _headers(1, b"\x82\x86\x84" + b"\x82" * 5)], None),
        "literals without indexing": (
            [
                start
                + _headers(1, b"\x82\x86\x84\x01\x01x" + _plain(b"x-id", b"1"))
                + _headers(3, b"\x82\x86\x84\x01\x01x" + _plain(b"x-long", b"v" * 300))
                + _headers(5, b"\x82\x86\x01\x01x\x04" + _huffman(b"/abc"))  # not plain
                + _headers(7, b"\x82\x86\x84\x01\x01x\x00\x05x-id")  # cut short
            ],
            None,
        ),
        "requests in one read": ([start + _headers(1, a) + _headers(3, b) + _headers(5, c)], None),
        "split across reads": (
            [start + _headers(1, a)[:7], _headers(1, a)[7:] + _headers(3, b)],
            None,
        ),
        "preface in two reads": ([PREFACE[:5], PREFACE[5:] + settings + _headers(1, a)], None),
        "body and trailers": (
            [
                start
                + _headers(1, a, 0x4)
                + frame(0x0, 0, 1, b"data")
                + _headers(1, trailers, 0x5)
                + _headers(3, b)
            ],
            None,
        ),
        "trailers without END_STREAM": (
            [start + _headers(1, a, 0x4) + _headers(1, trailers, 0x4)],
            None,
        ),
        "HEADERS again after END_STREAM": ([start + _headers(1, a) + _headers(1, b)], None),
        "stream id going down": ([start + _headers(3, a) + _headers(1, b)], None),
        "even stream id": ([start + _headers(2, a)], None),
        "too many streams": ([start + _headers(1, a, 0x4) + _headers(3, b, 0x4)], 1),
        "garbage HPACK": ([start + _headers(1, b"\xff\xff\xff\xff")], None),
        "a CONTINUATION then a whole HEADERS": (
            [start + _headers(1, one, 0x0) + _headers(3, two)],
            None,
        ),
        "a block in HEADERS and CONTINUATION": (
            [start + _headers(1, one[:2], 0x1) + frame(0x9, 0x4, 1, one[2:]) + _headers(3, two)],
            None,
        ),
        "padded and prioritised": (
            [
                start
                + _headers(1, b"\x02" + a + b"\x00\x00", 0xD)
                + _headers(3, b"\x00\x00\x00\x01\x10" + b, 0x25)
            ],
            None,
        ),
        "after GOAWAY from the peer": ([start + frame(0x7, 0, 0, bytes(8)) + _headers(1, a)], None),
    }
    # The preface in a read of its own, as clients send it: h2 takes the read it is in.
    return {
        name: ([start, chunks[0][len(start) :], *chunks[1:]], limit)
        if chunks[0].startswith(start) and len(chunks[0]) > len(start)
        else (chunks, limit)
        for name, (chunks, limit) in cases.items()
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_the_fast_path_receives_as_h2_does(case: str) -> None:
    """The same bytes in, to h2's connection and to ours: the same events, errors and bytes
    out, whatever the frames' shape (the ones the fast path leaves to h2 included)."""
    chunks, max_streams = _cases()[case]
    expected = _outcome(_server(max_streams, case), chunks, fast=False)
    assert _outcome(_server(max_streams, case), chunks, fast=True) == expected


FAST = {  # the streams whose header blocks the fast path reads, in these cases
    "indexed fields only": [1, 3],
    "literals without indexing": [1, 3, 5, 7],  # 5 and 7 then decoded by hpack
    "a list over the size limit": [1],
    "requests in one read": [1, 3, 5],
    "split across reads": [],  # h2 holds part of a frame: the read is h2's
    "body and trailers": [1, 1, 3],
    "HEADERS again after END_STREAM": [1, 1],
    "a CONTINUATION then a whole HEADERS": [],
    "a block in HEADERS and CONTINUATION": [3],  # the block before it went to h2 whole
    "padded and prioritised": [],
    "stream id going down": [3],
}


@pytest.mark.parametrize("case", list(FAST))
def test_the_fast_path_takes_whole_blocks_only(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[int] = []
    receive_block = H2Connection._receive_block

    def noting(self: H2Connection, stream_id: int, block: bytes, end_stream: bool) -> object:
        taken.append(stream_id)
        return receive_block(self, stream_id, block, end_stream)

    monkeypatch.setattr(H2Connection, "_receive_block", noting)
    chunks, limit = _cases()[case]
    _outcome(_server(limit, case), chunks, fast=True)
    assert taken == FAST[case]


def test_the_fast_path_sends_as_h2_does() -> None:
    """Answers, a large header block (HEADERS and CONTINUATION), trailers and an interim
    response: the same bytes as h2's send_headers, and the same refusals."""
    peer_chunks = [PREFACE + frame(0x4, 0, 0, b"")]
    p = _Peer()
    for sid in (1, 3, 5, 7, 9, 11, 13, 15):
        peer_chunks.append(_headers(sid, p.block(REQUEST), 0x4 if sid == 5 else 0x5))
    plain, fast = _server(), _server()
    for chunk in peer_chunks:
        plain.receive_data(chunk)
        fast.receive_fast(chunk)
    assert plain.data_to_send() == fast.data_to_send()
    big = [(":status", "200"), ("x-big", "v" * 40_000), ("server", "deproxy")]
    steps: list[tuple[int, list[tuple[str, str]], bool]] = [
        (1, [(":status", "200"), ("content-length", "0")], True),
        (3, big, True),
        (5, [(":status", "103"), ("link", "</a>")], False),
        (5, [(":status", "200")], False),
        (5, [("x-trailer", "t")], True),
        (7, [(":status", "200")], False),
        (7, [("x-trailer", "t")], False),  # trailers must end the stream: refused
        (1, [(":status", "200")], True),  # the stream is closed: refused
        # The same answer again: the first adds "x-same" to the table, the next two find
        # everything in it (the kept block); an interim response h2 sends in between adds
        # "link" (the table moved: the kept block is not given again).
        (9, [(":status", "200"), ("x-same", "1")], True),
        (11, [(":status", "200"), ("x-same", "1")], True),
        (13, [(":status", "103"), ("link", "</b>")], False),
        (13, [(":status", "200"), ("x-same", "1")], True),
        (15, [(":status", "200"), ("x-same", "1")], True),
    ]
    for sid, fields, end in steps:
        outcomes: list[object] = []
        for conn in (plain, fast):
            try:
                if conn is plain or not conn.send_headers_fast(sid, fields, end):
                    conn.send_headers(sid, fields, end_stream=end)
                outcomes.append(bytes(conn.data_to_send()))
            except h2.exceptions.H2Error as exc:
                outcomes.append((type(exc).__name__, str(exc), bytes(conn.data_to_send())))
        assert outcomes[0] == outcomes[1], (sid, fields[:1])
    frames = [f for f in _frames(_server_bytes(big)) if f[1] == 3]
    assert [kind for kind, _ in frames] == [0x1, 0x9, 0x9]


def _server_bytes(fields: list[tuple[str, str]]) -> bytes:
    conn = _server()
    conn.receive_fast(PREFACE + frame(0x4, 0, 0, b"") + _headers(3, _Peer().block(REQUEST)))
    conn.data_to_send()
    assert conn.send_headers_fast(3, fields, True)
    return bytes(conn.data_to_send())


def _frames(data: bytes) -> list[tuple[int, int]]:
    """(type, stream id) of each frame in ``data``."""
    out, offset = [], 0
    while offset + 9 <= len(data):
        length = int.from_bytes(data[offset : offset + 3], "big")
        sid = int.from_bytes(data[offset + 5 : offset + 9], "big") & 0x7FFFFFFF
        out.append((data[offset + 3], sid))
        offset += 9 + length
    return out


# -- through the public surface ----------------------------------------------------------------


def test_requests_and_answers_make_no_frame_objects(
    deproxy: Deproxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """make_request over h2c to an h2c endpoint: neither side builds a HEADERS frame object
    (h2 builds one per block, both ways, and its repr for a log that is off)."""
    built: list[int] = []
    init = hf.HeadersFrame.__init__

    def counting(self: hf.HeadersFrame, *args: object, **kwargs: object) -> None:
        built.append(1)
        init(self, *args, **kwargs)  # type: ignore[arg-type]

    endpoint = deproxy.add_endpoint(http2="h2c")
    with deproxy.connect(endpoint.url, http2="h2c") as connection:
        deproxy.make_request(endpoint.url, connection=connection)  # settings exchanged
        monkeypatch.setattr(hf.HeadersFrame, "__init__", counting)
        chains = [deproxy.make_request(endpoint.url, connection=connection) for _ in range(5)]
    assert [answered(chain).code for chain in chains] == ["200"] * 5
    assert [len(chain.handlings) for chain in chains] == [1] * 5
    assert built == []


def test_a_header_block_larger_than_a_frame_both_ways(deproxy: Deproxy) -> None:
    """A 40 KB field in a request and in its answer: HEADERS and CONTINUATION frames, read
    whole by the endpoint, by make_request and by curl."""

    def answer(request: Request) -> Response:
        return Response(200, headers={"x-big": request.headers["x-big"]}, body="ok")

    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=answer)
    big = "b" * 40_000
    chain = deproxy.make_request(endpoint.url, http2="h2c", headers={"X-Big": big})
    assert answered(chain).headers["x-big"] == big
    assert chain.handlings[0].request.headers["x-big"] == big
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-i",
            "--max-time",
            "10",
            "--http2-prior-knowledge",
            "-H",
            f"x-big: {big}",
            endpoint.url + "/",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert f"x-big: {big}" in out.stdout and out.stdout.startswith("HTTP/2 200")


def test_a_client_that_sends_headers_twice_gets_h2s_refusal(deproxy: Deproxy) -> None:
    """HEADERS again on a stream the client ended, in the same read as the first: refused
    as h2 refuses it (RST_STREAM STREAM_CLOSED), on the wire and on the record; the
    connection goes on serving."""
    endpoint = deproxy.add_endpoint(http2="h2c")
    peer = _Peer()
    with socket.create_connection(endpoint.address, timeout=10) as sock:
        first, again, third = peer.block(REQUEST), peer.block(REQUEST), peer.block(REQUEST)
        sock.sendall(PREFACE + frame(0x4, 0, 0, b""))
        received = _read_until(sock, b"", (0x4, 0))  # the preface read apart, as clients send it
        sock.sendall(_headers(1, first) + _headers(1, again))
        received = _read_until(sock, received, (0x3, 1))
        sock.sendall(_headers(3, third))
        received = _read_until(sock, received, (0x1, 3))
    assert (0x3, 1) in _frames(received)
    resets = [e for e in endpoint.connections[0].events if e.type == "RST_STREAM"]
    assert [(e.direction, e.stream_id, e.error) for e in resets] == [("sent", 1, "STREAM_CLOSED")]
    assert [h.stream_id for h in endpoint.handlings] == [1, 3]


def _read_until(sock: socket.socket, received: bytes, wanted: tuple[int, int]) -> bytes:
    while wanted not in _frames(received):
        data = sock.recv(65536)
        assert data, f"the endpoint closed before {wanted}: {_frames(received)}"
        received += data
    return received


def test_the_tracking_header_is_sent_without_indexing(deproxy: Deproxy) -> None:
    """The tracking header, new in every request (and echoed in every answer), is an HPACK
    literal without indexing both ways: neither side's table grows by one entry a request,
    and what else a request carries is found in the table; the peers read it as sent."""
    seen: list[bytes] = []

    def answer(request: Request) -> Response:
        return Response(200, headers={"deproxy-request-id": request.headers["deproxy-request-id"]})

    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=answer)
    with deproxy.connect(endpoint.url, http2="h2c") as connection:
        wire = connection._wire
        chains = [deproxy.make_request(endpoint.url, connection=connection) for _ in range(20)]
        entries = len(wire._conn.encoder.header_table.dynamic_entries)
        decoded = len(wire._conn.decoder.header_table.dynamic_entries)
    for chain in chains:
        sent = chain.sent_request
        assert sent is not None
        tracking = sent.headers["deproxy-request-id"]
        assert answered(chain).headers["deproxy-request-id"] == tracking
        assert chain.handlings[0].request.headers["deproxy-request-id"] == tracking
        seen.append(tracking.encode())
    assert len(set(seen)) == 20
    assert entries < 5 and decoded < 5  # before: one entry more a request, to the table's limit
