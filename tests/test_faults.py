"""Faults at the endpoint: each one does what it says on the wire, and the Handling says it."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest

from pytest_deproxy import (
    Deproxy,
    DeproxyTimeout,
    Endpoint,
    NetworkError,
    ProtocolError,
    Response,
    handlers,
)

from .conftest import send_raw, working_threads

EndpointFactory = Callable[..., Endpoint]
BODY = Response(200, headers={"Content-Type": "text/plain"}, body="0123456789")


def only_handling(endpoint: Endpoint) -> object:
    [handling] = endpoint.handlings
    return handling


def test_close(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint(handler=handlers.close)
    chain = deproxy.make_request(server.url)
    assert chain.received_response is None
    assert "without answering" in str(chain.error)
    [handling] = chain.handlings
    assert (handling.response, handling.action) == (None, "closed the connection without answering")


def test_reset(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint(handler=handlers.reset)
    chain = deproxy.make_request(server.url)
    assert chain.received_response is None
    assert isinstance(chain.error, NetworkError)
    assert "reset" in str(chain.error) or "without answering" in str(chain.error)
    assert chain.handlings[0].action == "reset the connection (RST) without answering"


def test_raw_sends_any_bytes(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint(handler=handlers.raw(b"SSH-2.0-OpenSSH_9.0\r\n"))
    chain = deproxy.make_request(server.url)
    assert chain.received_response is None
    assert "closed the connection in the middle of the response" in str(chain.error)
    assert chain.handlings[0].action == "sent 21 raw bytes, then closed"
    valid = endpoint(handler=handlers.raw(b"HTTP/1.1 299 Odd\r\nContent-Length: 2\r\n\r\nok"))
    response = deproxy.make_request(valid.url).received_response
    assert response is not None and (response.code, response.message, response.body) == (
        "299",
        "Odd",
        "ok",
    )


def test_hang_until_the_client_gives_up(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint(handler=handlers.hang)
    chain = deproxy.make_request(server.url, timeout=0.3)
    assert isinstance(chain.error, DeproxyTimeout)
    assert chain.handlings[0].action == "hung without answering"


def test_headers_then_hang(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint(handler=handlers.headers_then_hang(BODY))
    chain = deproxy.make_request(server.url, timeout=0.3)
    assert isinstance(chain.error, DeproxyTimeout)
    [handling] = chain.handlings
    assert handling.action == "sent the headers, then hung"
    assert handling.response is not None and handling.response.headers["Content-Length"] == "10"


def test_truncate(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint(handler=handlers.truncate(BODY, 4))
    raw = send_raw(server.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert raw.endswith(b"Content-Length: 10\r\n\r\n0123")
    chain = deproxy.make_request(server.url)
    assert chain.received_response is None
    assert "in the middle of the response" in str(chain.error)
    assert chain.handlings[0].action == "sent the headers and 4 of 10 body bytes, then closed"
    with pytest.raises(ValueError, match="below the body's 10 bytes"):
        handlers.truncate(BODY, 10)


@pytest.mark.parametrize("chunked", [False, True])
def test_dribble_delivers_everything_slowly_and_keeps_the_connection(
    deproxy: Deproxy, endpoint: EndpointFactory, chunked: bool
) -> None:
    server = endpoint(handler=handlers.dribble(BODY, pieces=4, seconds=0.05, chunked=chunked))
    started = time.monotonic()
    with deproxy.connect(server.url) as connection:
        first = deproxy.make_request(server.url, connection=connection)
        second = deproxy.make_request(server.url, connection=connection)
    assert time.monotonic() - started >= 0.3  # 3 pauses per response: a lower bound only
    for chain in (first, second):
        assert chain.received_response is not None and chain.received_response.body == "0123456789"
    assert first.handlings[0].connection == second.handlings[0].connection
    assert ("Transfer-Encoding" in first.received_response.headers) is chunked  # type: ignore[union-attr]


def test_bad_chunk(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint(handler=handlers.bad_chunk(BODY))
    chain = deproxy.make_request(server.url)
    assert isinstance(chain.error, ProtocolError)
    [handling] = chain.handlings
    assert (
        handling.response is not None
        and handling.response.headers["Transfer-Encoding"] == "chunked"
    )


def test_faults_apply_per_request(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint()
    assert (
        deproxy.make_request(server.url, default_handler=handlers.close).received_response is None
    )
    assert deproxy.make_request(server.url).received_response is not None


def test_shutdown_ends_hanging_handlers_quickly() -> None:
    deproxy = Deproxy()
    server = deproxy.add_endpoint(default_handler=handlers.hang)
    sockets = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
    for sock in sockets:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    deadline = time.monotonic() + 10
    while len(server.handlings) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    deproxy.shutdown()
    assert time.monotonic() - started < 5  # "not for ever": hang waits on the shutdown event
    assert not working_threads()
    for sock in sockets:
        sock.close()


def test_raw_refuses_text() -> None:
    with pytest.raises(TypeError, match="encode str first"):
        handlers.raw("text")  # type: ignore[arg-type]
