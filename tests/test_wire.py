"""HTTP framing over bytes in memory, the client's side: no sockets. (Endpoints read requests
with pytest_deproxy.request_reader: tests/test_request_reader.py.)"""

from __future__ import annotations

import pytest

from pytest_deproxy import Request, Response
from pytest_deproxy.wire import (
    MessageError,
    MessageReader,
    PeerClosed,
    request_keeps_alive,
    response_keeps_alive,
    serialize_request,
    serialize_response,
)

from .conftest import MemoryStream


def reader_of(data: bytes) -> MessageReader:
    return MessageReader(MemoryStream(data))


def test_response_to_head_has_no_body_even_with_a_length() -> None:
    reader = reader_of(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    )
    assert reader.read_response("HEAD").body == ""
    assert reader.read_response("GET").code == "204"


def test_response_without_length_ends_at_close_and_informational_is_skipped() -> None:
    response = reader_of(
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close"
    ).read_response()
    assert (response.code, response.http_version, response.body) == ("200", "1.0", "until close")


def test_garbage_instead_of_a_response_is_a_protocol_error() -> None:
    with pytest.raises(MessageError, match="malformed response"):
        reader_of(b"SSH-2.0-OpenSSH\r\n\r\n").read_response()


def test_nothing_at_all_is_peer_closed() -> None:
    with pytest.raises(PeerClosed, match="without answering"):
        reader_of(b"").read_response()


def test_requests_are_written_exactly_as_given() -> None:
    request = Request("GET", "/odd path?x=%zz", [("X-B", "1"), ("x-b", "2")], "body")
    assert (
        serialize_request(request)
        == b"GET /odd path?x=%zz HTTP/1.1\r\nX-B: 1\r\nx-b: 2\r\n\r\nbody"
    )
    assert serialize_request(Request("POST", "/", None, "hello"), chunked=True).endswith(
        b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )


def test_responses_with_and_without_body_and_reason() -> None:
    assert serialize_response(
        Response(606, "Spoiler", body="x"), chunked=False, send_body=True
    ) == (b"HTTP/1.1 606 Spoiler\r\n\r\nx")
    assert (
        serialize_response(Response(606), chunked=False, send_body=False)
        == b"HTTP/1.1 606 \r\n\r\n"
    )


@pytest.mark.parametrize(
    ("version", "connection", "keeps"),
    [
        ("1.1", None, True),
        ("1.1", "close", False),
        ("1.0", None, False),
        ("1.0", "keep-alive", True),
    ],
)
def test_request_keep_alive_rules(version: str, connection: str | None, keeps: bool) -> None:
    headers = {"Connection": connection} if connection else None
    assert request_keeps_alive(Request("GET", "/", headers, http_version=version)) is keeps


def test_a_response_without_length_closes_the_connection() -> None:
    request = Request("GET", "/")
    assert not response_keeps_alive(Response(200, headers={}), request)
    assert response_keeps_alive(Response(200, headers={"Content-Length": "0"}), request)
    assert response_keeps_alive(Response(204), request)
