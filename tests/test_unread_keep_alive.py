"""A request whose only Connection header is ``keep-alive`` (python-requests and browsers send
it on every request) takes the endpoint's fast path as one without: its headers are not read
to answer it, and the record still holds them as they arrived. Any other Connection is read."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pytest_deproxy import Deproxy, Endpoint, handlers, heads
from pytest_deproxy.heads import Head, glance_request_head
from pytest_deproxy.models import Headers

from .conftest import bodiless_answers, counting

LIMIT = 64 * 1024


@contextmanager
def stock_endpoint_connection() -> Iterator[tuple[Endpoint, socket.socket]]:
    """An endpoint with the stock handler, and a connection to it."""
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=handlers.simple)
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
            yield endpoint, sock


@pytest.mark.parametrize(
    "line", [b"Connection: keep-alive", b"connection:Keep-Alive", b"CONNECTION: \tKEEP-ALIVE \t"]
)
def test_a_head_with_connection_keep_alive_is_glanced_at(line: bytes) -> None:
    data = b"GET /a HTTP/1.1\r\nHost: h\r\n" + line + b"\r\nAccept: */*\r\n\r\n"
    assert glance_request_head(data, LIMIT) == ("GET", "/a", "1.1", len(data))


@pytest.mark.parametrize(
    "lines",
    [
        [b"Connection: close"],
        [b"Connection: keep-alive, Upgrade", b"Upgrade: websocket"],
        [b"Connection: keep-alive", b"Connection: close"],
        [b"Connection: keep-alive", b"Connection: keep-alive"],
        [b"Connection: keep-alivex"],
        [b"X-Connection: keep-alive", b"Connection: close"],
    ],
)
def test_any_other_connection_header_is_read_whole(lines: list[bytes]) -> None:
    data = b"GET / HTTP/1.1\r\nHost: h\r\n" + b"\r\n".join(lines) + b"\r\n\r\n"
    head = glance_request_head(data, LIMIT)
    assert isinstance(head, Head) and "connection" in head.keys


def test_keep_alive_requests_are_answered_without_reading_their_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[str] = []  # the fields read, as the head arrives or from its bytes later
    monkeypatch.setattr(heads, "_read_fields", counting(reads, "read", heads._read_fields))
    monkeypatch.setattr(Headers, "from_head", counting(reads, "later", Headers.from_head))
    head = b"GET /k HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nUser-Agent: r\r\n\r\n"
    with stock_endpoint_connection() as (endpoint, sock):
        answers = bodiless_answers(endpoint.port, head * 5, 5, sock)
        assert answers.count(b"HTTP/1.1 200 OK\r\n") == 5
        assert b"Connection: close" not in answers
        assert bodiless_answers(endpoint.port, head, 1, sock).startswith(b"HTTP/1.1 200")
        assert reads == []  # answered, recorded, and no header read
    handlings = endpoint.handlings
    assert len(handlings) == 6 and len({h.connection for h in handlings}) == 1
    assert handlings[0].request.headers.items() == [
        ("Host", "h"),
        ("Connection", "keep-alive"),
        ("User-Agent", "r"),
    ]
    assert handlings[0].raw == head


def test_a_close_after_keep_alives_is_still_answered_with_a_close() -> None:
    keep = b"GET /k HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n"
    close = b"GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    with stock_endpoint_connection() as (endpoint, sock):
        answers = bodiless_answers(endpoint.port, keep * 2 + close, 3, sock)
        assert sock.recv(1) == b""  # the endpoint closed after the third
    *kept, closing = answers.split(b"HTTP/1.1 ")[1:]
    assert all(b"Connection:" not in answer for answer in kept)
    assert b"Connection: close\r\n" in closing
    [record] = endpoint.connections
    assert record.closed_by == "endpoint"


def test_an_http_1_0_keep_alive_is_told_it_is_kept() -> None:
    head = b"GET / HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n"
    with stock_endpoint_connection() as (endpoint, sock):
        answers = bodiless_answers(endpoint.port, head * 2, 2, sock)
    assert answers.count(b"Connection: keep-alive\r\n") == 2
    assert len(endpoint.handlings) == 2
