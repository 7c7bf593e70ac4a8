"""Reading requests as an endpoint does, over bytes in memory: no sockets."""

from __future__ import annotations

import pytest

from pytest_deproxy.request_reader import (
    BodyTooLarge,
    CutShort,
    RequestReader,
    RequestRefused,
    with_body,
)

from .conftest import MemoryStream

ReadRequest = tuple[str, str, str | bytes, bytes]  # method, target, body, raw


def read_all(reader: RequestReader) -> list[ReadRequest]:
    read = []
    while (arrival := reader.read_head()) is not None:
        body = reader.read_body(arrival)
        request = with_body(arrival, body)
        framed = body.framed if body.framed is not None else body.payload
        read.append((request.method, request.path, request.body, arrival.raw_head + framed))
    return read


def reader_of(data: bytes, piece: int = 7, **options: int) -> RequestReader:
    return RequestReader(MemoryStream(data, piece), **options)


PIPELINED = (
    b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    b"GET /b?q=1 HTTP/1.1\r\nHost: h\r\n\r\n",
    b"PUT /c HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok",
)


@pytest.mark.parametrize("piece", [1, 7, 1000])
def test_pipelined_requests_are_read_one_after_the_other_with_their_raw_bytes(
    piece: int,
) -> None:
    read = read_all(reader_of(b"".join(PIPELINED), piece))

    assert [(m, t, b) for m, t, b, _ in read] == [
        ("POST", "/a", "abcde"),
        ("GET", "/b?q=1", ""),
        ("PUT", "/c", "ok"),
    ]
    assert [raw for *_, raw in read] == list(PIPELINED)


def test_fields_are_kept_as_received() -> None:
    arrival = reader_of(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\n\r\n").read_head()
    assert arrival is not None
    assert arrival.request.headers.items() == [("Host", "h"), ("X-A", "1"), ("x-a", "2")]


def test_what_a_strict_reader_refuses_but_can_be_framed_is_read() -> None:
    data = (
        b"GET /no-host HTTP/1.1\r\n\r\n"
        b"GET /two-hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
        b"POST /cl-and-te HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nhi\r\n0\r\n\r\n"
    )
    reader = reader_of(data)
    paths = []
    while (arrival := reader.read_head()) is not None:
        reader.read_body(arrival)
        paths.append((arrival.request.path, arrival.must_close))
    assert paths == [("/no-host", False), ("/two-hosts", False), ("/cl-and-te", True)]


def test_expect_100_continue_is_left_to_the_endpoint() -> None:
    stream = MemoryStream(
        b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok"
    )
    arrival = RequestReader(stream).read_head()
    assert arrival is not None and arrival.expects_continue
    assert stream.written == b""  # the endpoint answers 100, and records it


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"G@T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nbad header line\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 70000 + b"\r\n\r\n", 431),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    ],
    ids=["bad-method", "bad-header", "http2", "huge-header", "two-lengths"],
)
def test_a_head_that_cannot_be_framed_is_refused_with_its_bytes(data: bytes, status: int) -> None:
    with pytest.raises(RequestRefused) as caught:
        reader_of(data, 1000).read_head()
    assert caught.value.status_hint == status
    assert data.startswith(caught.value.raw[:100])


def test_an_invalid_chunk_is_refused_with_the_bytes_that_came() -> None:
    data = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    reader = reader_of(data)
    arrival = reader.read_head()
    assert arrival is not None
    with pytest.raises(RequestRefused, match="not a chunk size") as caught:
        reader.read_body(arrival)
    assert caught.value.raw == data


def test_a_close_in_the_middle_of_a_body_is_cut_short_with_what_came() -> None:
    reader = reader_of(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
    arrival = reader.read_head()
    assert arrival is not None
    with pytest.raises(CutShort, match="after 3 body bytes") as caught:
        reader.read_body(arrival)
    assert (caught.value.partial.body, caught.value.reset) == ("abc", False)


def test_a_close_in_the_middle_of_a_head_is_cut_short_too() -> None:
    with pytest.raises(CutShort, match="middle of a request head") as caught:
        reader_of(b"GET /half HTTP/1.1\r\nHo").read_head()
    assert caught.value.raw == b"GET /half HTTP/1.1\r\nHo"
    assert caught.value.partial.path == "/half"


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read() -> None:
    stream = MemoryStream(b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n" + b"x" * 11)
    reader = RequestReader(stream, max_body_size=10)
    arrival = reader.read_head()
    assert arrival is not None
    assert reader.too_large(arrival) is not None
    with pytest.raises(BodyTooLarge):
        reader.read_body(arrival)
