"""What an endpoint sends for a handler's response, worked out without a socket."""

from __future__ import annotations

from pytest_deproxy import TRACKING_HEADER, Request, Response
from pytest_deproxy.responding import SERVER_NAME, as_sent, refusal, wire_parts
from pytest_deproxy.wire import MessageReader

from .conftest import MemoryStream


def test_defaults_are_added_to_a_copy_and_the_canned_response_is_left_alone() -> None:
    canned = Response(200, body="hi")
    request = Request("GET", "/", {"Host": "h", TRACKING_HEADER: "id-1"})
    sent = as_sent(canned, request)
    assert sent.headers.items() == [
        ("Server", SERVER_NAME),
        ("Date", sent.headers["Date"]),
        ("Content-Length", "2"),
        (TRACKING_HEADER, "id-1"),
    ]
    assert canned.headers.items() == []


def test_without_defaults_only_the_tracking_id_is_added() -> None:
    request = Request("GET", "/", {"Host": "h", TRACKING_HEADER: "id-2"})
    sent = as_sent(Response(200, headers={"X": "1"}), request, defaults=False)
    assert sent.headers.items() == [("X", "1"), (TRACKING_HEADER, "id-2")]


def test_chunked_framing_and_an_http10_keep_alive() -> None:
    request = Request("GET", "/", {"Connection": "keep-alive"}, http_version="1.0")
    sent = as_sent(Response(200, body="abc"), request, chunked=True)
    assert sent.headers["Transfer-Encoding"] == "chunked"
    assert sent.headers["Connection"] == "keep-alive"
    assert wire_parts(sent, request)[1] == b"3\r\nabc\r\n0\r\n\r\n"


def test_no_body_goes_out_for_head_even_with_a_length() -> None:
    request = Request("HEAD", "/", {"Host": "h"})
    head, body = wire_parts(as_sent(Response(200, body="abc"), request), request)
    assert b"Content-Length: 3\r\n" in head and body == b""


def test_a_refusal_says_why_and_closes() -> None:
    answer = MessageReader(MemoryStream(refusal(431, "head too large"))).read_response()
    assert (answer.code, answer.body) == ("431", "head too large\n")
    assert answer.headers["Connection"] == "close"
