"""The h11-free reader of ordinary heads: what it takes, what it leaves to h11, and that the
two always agree. No sockets."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_deproxy.heads import read_request_head, read_response_head
from pytest_deproxy.request_reader import CutShort, RequestReader, RequestRefused, with_body
from pytest_deproxy.wire import MessageError, MessageReader, PeerClosed

from .conftest import MemoryStream

LIMIT = 64 * 1024


# -- what it takes, and what it leaves ------------------------------------------------------


def test_an_ordinary_request_is_read_with_its_body_and_what_follows() -> None:
    data = (
        b"POST /a?b=c HTTP/1.1\r\nHost: h\r\nX-Spaced:  two  words \t\r\nContent-Length: 3\r\n\r\n"
    )
    head = read_request_head(data + b"abcGET", LIMIT)
    assert head is not None
    assert head.start == ("POST", "/a?b=c", "1.1")
    assert head.items == [("Host", "h"), ("X-Spaced", "two  words"), ("Content-Length", "3")]
    assert head.keys == ["host", "x-spaced", "content-length"]
    assert (head.content_length, head.size) == (3, len(data))


def test_an_ordinary_response_is_read() -> None:
    head = read_response_head(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n", LIMIT, "GET")
    assert head is not None and head.start == ("1.0", "404", "Not Found")


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: h\r\n",  # not all there yet
        b"GET / HTTP/1.1\nHost: h\r\n\r\n",  # a bare LF
        b"GET / HTTP/1.1\r\nHost: h\rX: 1\r\n\r\n",  # a bare CR
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nBad Name: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # no Host
        b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",  # allowed without Host, but rare: h11 reads it
        b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
        b"G@T / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \xb2\r\n\r\n",  # a digit, not ASCII
        b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * LIMIT + b"\r\n\r\n",
    ],
)
def test_anything_unusual_in_a_request_is_left_to_h11(data: bytes) -> None:
    assert read_request_head(data, LIMIT) is None


@pytest.mark.parametrize(
    ("data", "method"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", "HEAD"),
        (b"HTTP/1.1 200 Connection established\r\nContent-Length: 0\r\n\r\n", "CONNECT"),
        (b"HTTP/1.1 100 Continue\r\n\r\n", "GET"),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", "GET"),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", "GET"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET"),
        (b"HTTP/1.0 200 OK\r\n\r\nuntil the close", "GET"),
        (b"HTTP/1.1 200OK\r\nContent-Length: 0\r\n\r\n", "GET"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "GET"),
    ],
)
def test_anything_unusual_in_a_response_is_left_to_h11(data: bytes, method: str) -> None:
    assert read_response_head(data, LIMIT, method) is None


# -- the two readers agree -------------------------------------------------------------------

# Mostly ordinary heads, some with one or two things h11 refuses or reads its own way.
FIELD_TEXT = st.text(alphabet="ab \t\x01\x7f\xe9", max_size=6)
LENGTHS = st.sampled_from(["0", "3", "03", "12"])
ORDINARY_FIELDS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["X-A", "x-a", "Accept", "Connection"]), FIELD_TEXT),
        st.tuples(st.just("Content-Length"), LENGTHS),
    ),
    max_size=4,
)
ODD_FIELDS = st.sampled_from(
    [
        "Transfer-Encoding: chunked",
        "Expect: 100-continue",
        "Host: again",
        " folded",
        "Bad Name: x",
        "Content-Length: 1,1",
        "Content-Length: -1",
        "NoColon",
    ]
)


@st.composite
def request_lines(draw: st.DrawFn) -> list[str]:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "OPTIONS", "CONNECT"]))
    target = draw(st.sampled_from(["/", "/a?b=c", "*", "http://h/x", "/%7e"]))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0"]))
    fields = [f"{name}:{value}" for name, value in draw(ORDINARY_FIELDS)]
    fields.insert(draw(st.integers(0, len(fields))), "Host: h")
    return [f"{method} {target} {version}", *fields]


@st.composite
def status_lines(draw: st.DrawFn) -> list[str]:
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0"]))
    status = draw(st.sampled_from(["200", "404", "500", "200", "204", "101", "304"]))
    reason = draw(st.sampled_from([" OK", "", " ", "  Two spaces", " \x7f\xe9"]))
    fields = [f"{name}:{value}" for name, value in draw(ORDINARY_FIELDS)]
    fields.insert(draw(st.integers(0, len(fields))), f"Content-Length: {draw(LENGTHS)}")
    return [f"{version} {status}{reason}", *fields]


@st.composite
def mutated(draw: st.DrawFn, lines: list[str]) -> list[str]:
    """``lines`` with one thing made odd."""
    where = draw(st.integers(0, len(lines) - 1))
    kind = draw(st.sampled_from(["field", "byte", "start", "drop"]))
    if kind == "field":
        return [*lines[: where + 1], draw(ODD_FIELDS), *lines[where + 1 :]]
    if kind == "byte":
        line = lines[where]
        at = draw(st.integers(0, len(line)))
        odd = draw(st.sampled_from(["\x00", "\x0b", "\x0c", "\r", "\n"]))
        return [*lines[:where], line[:at] + odd + line[at:], *lines[where + 1 :]]
    if kind == "start":
        odd = draw(
            st.sampled_from(
                [
                    "G@T / HTTP/1.1",
                    "GET /a b HTTP/1.1",
                    "GET / HTTP/2.0",
                    "HTTP/1.1 20 OK",
                    "GET /\xe9 HTTP/1.1",
                    "get / http/1.1",
                ]
            )
        )
        return [odd, *lines[1:]]
    return [line for line in lines if line != "Host: h"] if where else lines


@st.composite
def heads(draw: st.DrawFn, lines: st.SearchStrategy[list[str]]) -> bytes:
    drawn = draw(lines)
    for _ in range(draw(st.integers(0, 2))):
        drawn = draw(mutated(drawn))
    ends = [draw(st.sampled_from(["\r\n"] * 9 + ["\n"])) for _ in range(len(drawn) + 1)]
    text = "".join(line + end for line, end in zip(drawn, ends[:-1], strict=True)) + ends[-1]
    return text.encode("iso-8859-1") + draw(st.binary(max_size=8))


def outcomes(data: bytes, piece: int | None, read: str, *args: str) -> list[object]:
    """Everything a reader makes of ``data``: each message, then how reading ended."""
    stream = MemoryStream(data, piece or len(data) or 1)
    reader = MessageReader(stream)
    seen: list[object] = []
    try:
        while True:
            message = getattr(reader, read)(*args)
            if message is None:
                return [*seen, "closed"]
            seen.append((message.headers.items(), message.raw_body, vars(message), stream.written))
    except MessageError as error:
        return [*seen, ("malformed", error.status_hint)]
    except PeerClosed as closed:
        partial = closed.partial and (closed.partial.headers.items(), closed.partial.raw_body)
        return [*seen, ("peer closed", str(closed), partial)]


def request_outcomes(data: bytes, piece: int | None) -> list[object]:
    """Everything an endpoint's reader makes of ``data``: each request, then how it ended."""
    reader = RequestReader(MemoryStream(data, piece or len(data) or 1))
    seen: list[object] = []
    try:
        while (arrival := reader.read_head()) is not None:
            body = reader.read_body(arrival)
            request = with_body(arrival, body)
            seen.append((request.headers.items(), vars(request), arrival.raw_head, body.framed))
        return [*seen, "closed"]
    except RequestRefused as refused:
        return [*seen, ("refused", refused.status_hint)]
    except CutShort as cut:
        return [*seen, ("cut short", str(cut), cut.partial.headers.items(), cut.raw)]


@settings(max_examples=400, deadline=None)
@given(data=heads(request_lines()))
def test_requests_read_whole_are_read_as_the_lenient_reader_reads_them_in_pieces(
    data: bytes,
) -> None:
    # Read in 5-byte pieces, no head is ever whole at once, so the lenient reader (framing.py)
    # reads every one of them; whole, the fast reader (heads.py) takes the ordinary ones.
    assert request_outcomes(data, None) == request_outcomes(data, 5)


@settings(max_examples=300, deadline=None)
@given(data=heads(status_lines()), method=st.sampled_from(["GET", "HEAD", "POST"]))
def test_responses_read_whole_are_read_as_h11_reads_them_in_pieces(
    data: bytes, method: str
) -> None:
    whole = outcomes(data, None, "read_response", method)
    assert whole == outcomes(data, 5, "read_response", method)


@settings(max_examples=300, deadline=None)
@given(data=heads(request_lines()))
def test_every_request_head_it_takes_h11_takes_the_same(data: bytes) -> None:
    head = read_request_head(data, LIMIT)
    if head is None:
        return
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(data)
    event = connection.next_event()
    assert isinstance(event, h11.Request)
    method, target, version = head.start
    assert (event.method, event.target, event.http_version) == (
        method.encode(),
        target.encode("iso-8859-1"),
        version.encode(),
    )
    wire_items = [
        (n.decode("iso-8859-1"), v.decode("iso-8859-1")) for n, v in event.headers.raw_items()
    ]
    assert wire_items == head.items
    body = b""
    while isinstance(event := connection.next_event(), h11.Data):
        body += event.data
    if len(data) >= head.size + head.content_length:
        assert event == h11.EndOfMessage()
        assert body == data[head.size : head.size + head.content_length]
