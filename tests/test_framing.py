"""The lenient request reader: what it takes as received, and what it refuses and why."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_deproxy.framing import (
    ChunkedBody,
    Framing,
    RequestHead,
    Unframeable,
    read_request_head,
    request_framing,
)

LIMIT = 64 * 1024


def head_of(data: bytes) -> RequestHead:
    head = read_request_head(data, LIMIT)
    assert head is not None, "the head was not read"
    return head


def framing_of(data: bytes) -> Framing:
    return request_framing(head_of(data))


class TestHeads:
    def test_fields_are_kept_as_received_case_order_and_duplicates(self) -> None:
        head = head_of(
            b"GET /a HTTP/1.1\r\nhOST: x\r\nX-Dup: 1\r\nContent-Length: 0\r\nx-dup:  2 \r\n\r\n"
        )
        assert (head.method, head.target, head.version) == ("GET", "/a", "1.1")
        assert head.fields == [
            ("hOST", "x"),
            ("X-Dup", "1"),
            ("Content-Length", "0"),
            ("x-dup", "2"),
        ]

    def test_what_a_strict_reader_refuses_but_can_be_framed_is_taken(self) -> None:
        no_host = head_of(b"BREW /pot HTTP/1.1\r\n\r\n")
        assert (no_host.method, no_host.fields) == ("BREW", [])
        two_hosts = head_of(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        assert two_hosts.fields == [("Host", "a"), ("Host", "b")]
        folded = head_of(b"GET / HTTP/1.1\r\nX-Fold: a\r\n  folded\r\n\r\n")
        assert folded.fields == [("X-Fold", "a folded")]
        bare_lf = head_of(b"GET / HTTP/1.0\nHost: h\n\n")
        assert (bare_lf.version, bare_lf.fields) == ("1.0", [("Host", "h")])

    def test_empty_lines_before_the_request_line_are_skipped_and_counted(self) -> None:
        data = b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\nNEXT"
        assert head_of(data).size == len(data) - len(b"NEXT")

    def test_an_incomplete_head_is_not_read_yet(self) -> None:
        data = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
        for end in range(len(data)):
            assert read_request_head(data[:end], LIMIT) is None
        assert head_of(data).size == len(data)

    @pytest.mark.parametrize(
        ("data", "status", "reason"),
        [
            (b"GET / HTTP/2.0\r\n\r\n", 505, "only HTTP/1.0 and 1.1"),
            (b"GET / FTP/1.1\r\n\r\n", 400, "not an HTTP version"),
            (b"GET /\r\n\r\n", 400, "request line"),
            (b"G\x01T / HTTP/1.1\r\n\r\n", 400, "not a token"),
            (
                b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
                400,
                "between the field name 'Host' and its colon",
            ),
            (b"GET / HTTP/1.1\r\nNo colon\r\n\r\n", 400, "without a colon"),
            (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400, "CR or NUL"),
            (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400, "CR or NUL"),
            (b"GET / HTTP/1.1\r\n folded-first\r\n\r\n", 400, "before the first header"),
        ],
    )
    def test_a_head_that_cannot_be_read_is_refused_with_its_reason(
        self, data: bytes, status: int, reason: str
    ) -> None:
        with pytest.raises(Unframeable, match=reason) as refused:
            read_request_head(data, LIMIT)
        assert refused.value.status == status

    def test_a_head_over_the_limit_is_431_even_before_it_ends(self) -> None:
        with pytest.raises(Unframeable) as refused:
            read_request_head(b"GET / HTTP/1.1\r\nX: " + b"a" * 200, 100)
        assert refused.value.status == 431


class TestFraming:
    @pytest.mark.parametrize(
        ("fields", "expected"),
        [
            (b"", Framing()),
            (b"Content-Length: 5\r\n", Framing(content_length=5)),
            (b"Content-Length: 5\r\nContent-Length: 5\r\n", Framing(content_length=5)),
            (b"Content-Length: 5, 5\r\n", Framing(content_length=5)),
            (b"Transfer-Encoding: Chunked\r\n", Framing(chunked=True)),
            (b"Transfer-Encoding: gzip, chunked\r\n", Framing(chunked=True)),
            (
                b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
                Framing(chunked=True, must_close=True),
            ),
        ],
    )
    def test_framing(self, fields: bytes, expected: Framing) -> None:
        assert framing_of(b"POST / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n") == expected

    @pytest.mark.parametrize(
        ("fields", "reason"),
        [
            (b"Content-Length: 5\r\nContent-Length: 6\r\n", "conflicting Content-Length"),
            (b"Content-Length: 5, 6\r\n", "conflicting Content-Length"),
            (b"Content-Length: -1\r\n", "not a number"),
            (b"Content-Length: 0x5\r\n", "not a number"),
            (b"Content-Length: \r\n", "not a number"),
            (b"Transfer-Encoding: chunked, gzip\r\n", "does not end in chunked"),
            (b"Transfer-Encoding: xchunked\r\n", "does not end in chunked"),
            (b"Transfer-Encoding: \r\n", "does not end in chunked"),
            (b"Transfer-Encoding: chunked, chunked\r\n", "more than once"),
        ],
    )
    def test_framing_that_cannot_be_known_is_refused(self, fields: bytes, reason: str) -> None:
        with pytest.raises(Unframeable, match=reason):
            framing_of(b"POST / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n")

    def test_transfer_encoding_in_http_1_0_is_refused(self) -> None:
        with pytest.raises(Unframeable, match=r"HTTP/1\.0"):
            framing_of(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n")


class TestChunked:
    def test_a_body_with_extensions_and_trailers(self) -> None:
        body = ChunkedBody()
        wire = b"5;name=value\r\nhello\r\n6 ;x\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        assert body.feed(wire + b"NEXT") == b"NEXT"
        assert (bytes(body.data), body.trailers, body.done, body.size) == (
            b"hello world",
            [("X-Trailer", "t")],
            True,
            len(wire),
        )

    @pytest.mark.parametrize(
        ("wire", "reason"),
        [
            (b"zz\r\n", "not a chunk size"),
            (b"-1\r\n", "not a chunk size"),
            (b"0x5\r\nhello\r\n0\r\n\r\n", "not a chunk size"),
            (b"1" * 17 + b"\r\n", "not a chunk size"),
            (b"5\r\nhelloXX0\r\n\r\n", "not CRLF"),
            (b"5;a\x00b\r\nhello\r\n", "CR or NUL"),
        ],
    )
    def test_an_invalid_chunk_is_refused(self, wire: bytes, reason: str) -> None:
        with pytest.raises(Unframeable, match=reason):
            ChunkedBody().feed(wire)

    @given(
        st.lists(st.binary(min_size=1, max_size=40), max_size=6),
        st.lists(st.integers(1, 20), min_size=1, max_size=30),
        st.booleans(),
    )
    def test_any_split_of_the_bytes_reads_the_same(
        self, chunks: list[bytes], cuts: list[int], bare_lf: bool
    ) -> None:
        end = b"\n" if bare_lf else b"\r\n"
        wire = b"".join(b"%x%s%s%s" % (len(c), end, c, end) for c in chunks) + b"0" + end + end
        body = ChunkedBody()
        remaining, rest = wire + b"NEXT", b""
        for cut in cuts * 50:
            if not remaining:
                break
            piece, remaining = remaining[:cut], remaining[cut:]
            rest += body.feed(piece)
        rest += body.feed(remaining)
        assert (bytes(body.data), rest, body.size) == (b"".join(chunks), b"NEXT", len(wire))


fields = st.lists(
    st.tuples(
        st.sampled_from(["Host", "X-A", "x-a", "Accept", "Via", "Content-Type"]),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=12),
    ),
    max_size=6,
)


@given(
    st.sampled_from(["GET", "POST", "PUT", "M-SEARCH"]),
    st.sampled_from(["/", "/a?b=c", "*", "http://h/x"]),
    fields,
    st.binary(max_size=30),
    st.booleans(),
)
def test_what_h11_reads_is_read_the_same(
    method: str, target: str, headers: list[tuple[str, str]], payload: bytes, chunked: bool
) -> None:
    headers = [("Host", "h"), *[(n, v) for n, v in headers if n.lower() != "host"]]
    framing = (
        [("Transfer-Encoding", "chunked")] if chunked else [("Content-Length", str(len(payload)))]
    )
    head = (
        f"{method} {target} HTTP/1.1\r\n"
        + "".join(f"{n}: {v}\r\n" for n, v in [*headers, *framing])
        + "\r\n"
    )
    body = (
        (b"%x\r\n%s\r\n" % (len(payload), payload) if payload else b"") + b"0\r\n\r\n"
        if chunked
        else payload
    )
    wire = head.encode() + body

    server = h11.Connection(h11.SERVER)
    server.receive_data(wire)
    event = server.next_event()
    assert isinstance(event, h11.Request)
    h11_body = b""
    while not isinstance(next_event := server.next_event(), h11.EndOfMessage):
        assert isinstance(next_event, h11.Data)
        h11_body += next_event.data

    ours = head_of(wire)
    assert (ours.method, ours.target) == (event.method.decode(), event.target.decode())
    assert ours.fields == [(n.decode(), v.decode()) for n, v in event.headers.raw_items()]
    assert request_framing(ours) == Framing(
        content_length=0 if chunked else len(payload), chunked=chunked
    )
    if chunked:
        reader = ChunkedBody()
        assert reader.feed(wire[ours.size :]) == b"" and reader.done
        assert bytes(reader.data) == h11_body
    else:
        assert wire[ours.size :] == h11_body
