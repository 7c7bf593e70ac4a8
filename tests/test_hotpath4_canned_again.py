"""The poll thread's canned answer, asked first without a call (the last answer made, from
the canned Response unchanged, to an untracked GET/1.1 whose headers are unread), gives what
``respond_again`` gives: a canned Response changed between requests is answered as it is
now, and a tracked request, one that asks to close, a HEAD and an HTTP/1.0 request each get
their own answer. With no call in flight, untracked requests are not handed to the record
(they belong to no chain), and are still kept by their endpoint and their connection.
Through sockets; counts, no timings."""

from __future__ import annotations

import socket

import pytest

from pytest_deproxy import Deproxy, Response
from pytest_deproxy.registry import ChainRegistry

from .conftest import bodiless_answers, counting


def _answer(sock: socket.socket, request: bytes, ends: bytes) -> bytes:
    sock.sendall(request)
    got = b""
    while not got.endswith(ends):
        chunk = sock.recv(65536)
        assert chunk, got
        got += chunk
    return got


def test_a_canned_response_changed_between_requests_is_answered_as_it_is_now() -> None:
    canned = Response(200, headers={"X-V": "1"}, body="one")
    get = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=canned)
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
            for _ in range(3):  # made, then the same again
                assert b"X-V: 1\r\n" in _answer(sock, get, b"one")
            canned.headers["X-V"] = "2"
            assert b"X-V: 2\r\n" in _answer(sock, get, b"one")
            canned.body, canned.raw_body = "two", b"two"
            assert _answer(sock, get, b"two").endswith(b"Content-Length: 3\r\n\r\ntwo")
            tracked = b"GET / HTTP/1.1\r\nHost: h\r\nDeproxy-Request-ID: abc\r\n\r\n"
            assert b"Deproxy-Request-ID: abc\r\n" in _answer(sock, tracked, b"two")
            head = _answer(sock, b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 3" in head
            assert b"X-V: 2\r\n" in _answer(sock, get, b"two")
            closing = _answer(
                sock, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", b"two"
            )
            assert b"Connection: close\r\n" in closing
            assert sock.recv(65536) == b""  # and the endpoint closed
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
            old = _answer(sock, b"GET / HTTP/1.0\r\nHost: h\r\n\r\n", b"two")
            assert old.startswith(b"HTTP/1.1 200 OK") and b"X-V: 2\r\n" in old
        bodies = [h.response.raw_body for h in endpoint.handlings]  # type: ignore[union-attr]
        assert bodies == [b"one"] * 4 + [b"two"] * 6
        versions = [h.response.headers["X-V"] for h in endpoint.handlings]  # type: ignore[union-attr]
        assert versions == ["1"] * 3 + ["2"] * 7


def test_untracked_requests_with_no_call_in_flight_are_kept_without_a_record_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(ChainRegistry, "record", counting(calls, "record", ChainRegistry.record))
    get = b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n"
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=Response(204))
        bodiless_answers(endpoint.port, b"".join(get % n for n in range(4)), 4)
        assert calls == []  # in no chain: nothing to file
        assert [h.request.path for h in endpoint.handlings] == [f"/{n}" for n in range(4)]
        (connection,) = endpoint.connections
        assert [h.request.path for h in connection.handlings] == [f"/{n}" for n in range(4)]
        # A tracked one is handed to the record, and filed in its chain.
        chain = deproxy.make_request(endpoint.url + "/tracked")
        assert calls == ["record"]
        assert [h.request.path for h in chain.handlings] == ["/tracked"]
        assert chain.handlings[0].response.code == "204"  # type: ignore[union-attr]
