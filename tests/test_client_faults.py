"""Raw requests and misbehaving clients: what a proxy must cope with on its left."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from pytest_deproxy import TRACKING_HEADER, Deproxy, Endpoint, handlers

from .conftest import eventually

EndpointFactory = Callable[..., Endpoint]


def test_raw_request_with_the_tracking_id_filled_in(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint(handler=handlers.echo)
    chain = deproxy.make_raw_request(
        server.url,
        b"POST /raw HTTP/1.1\r\nHost: h\r\nDeproxy-Request-ID: {request_id}\r\n"
        b"Content-Length: 4\r\n\r\nbody",
    )
    assert chain.sent_bytes is not None and chain.request_id.encode() in chain.sent_bytes
    assert (chain.sent_request.method, chain.sent_request.path) == ("POST", "/raw")
    [handling] = chain.handlings
    assert handling.request.headers[TRACKING_HEADER] == chain.request_id
    assert chain.received_response is not None and chain.received_response.body == "body"


def test_ambiguous_framing_content_length_and_chunked(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    """The classic request-smuggling probe: a server must let chunked win (RFC 9112 6.3)."""
    server = endpoint(handler=handlers.echo)
    chain = deproxy.make_raw_request(
        server.url,
        b"POST / HTTP/1.1\r\nHost: h\r\nDeproxy-Request-ID: {request_id}\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    [handling] = chain.handlings
    assert handling.request.body == "hello"


def test_a_raw_request_without_a_tracking_id_is_an_orphan(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint()
    chain = deproxy.make_raw_request(server.url, b"GET /anonymous HTTP/1.1\r\nHost: h\r\n\r\n")
    assert chain.handlings == []
    assert [h.request.path for h in chain.orphaned_handlings] == ["/anonymous"]


def test_garbage_gets_a_400_and_the_chain_has_it(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint()
    chain = deproxy.make_raw_request(server.url, b"\x16\x03\x01 not http at all\r\n\r\n")
    assert chain.received_response is not None and chain.received_response.code == "400"


def test_disconnect_after_the_headers(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint()
    chain = deproxy.make_request(
        server.url, "POST", request_body="x" * 100, disconnect="after_headers"
    )
    assert chain.received_response is None
    assert str(chain.error) == "disconnected after sending the headers, as asked"
    eventually(lambda: [h for h in server.handlings if h.done])
    [handling] = server.handlings
    assert handling.response is None
    assert handling.action == "the client closed the connection after 0 body bytes"
    assert handling.request.headers[TRACKING_HEADER] == chain.request_id


def test_disconnect_mid_body(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint()
    chain = deproxy.make_request(server.url, "PUT", request_body="y" * 100, disconnect="mid_body")
    assert str(chain.error) == "disconnected after sending 50 of 100 body bytes, as asked"
    eventually(lambda: [h for h in server.handlings if h.done])
    assert server.handlings[0].request.raw_body == b"y" * 50


def test_a_slow_body_arrives_whole(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint(handler=handlers.echo)
    started = time.monotonic()
    chain = deproxy.make_request(
        server.url, "POST", request_body="slowly but surely", dribble=(4, 0.05)
    )
    assert time.monotonic() - started >= 0.15  # lower bound: three pauses
    assert (
        chain.received_response is not None and chain.received_response.body == "slowly but surely"
    )


def test_bad_client_fault_arguments(deproxy: Deproxy) -> None:
    with pytest.raises(ValueError, match="after_headers"):
        deproxy.make_request("http://127.0.0.1:1/", disconnect="sometime")
    with pytest.raises(TypeError, match="bytes"):
        deproxy.make_raw_request("http://127.0.0.1:1/", "text")  # type: ignore[arg-type]
