"""The poll thread's path, cut to fewer calls, keeps the record it kept: a canned answer made
again costs the owner one call (no routing looked up with no call in flight, no ``settled``
after a handling filed done); a request read whole there and handed to a thread carries on
as it arrived, byte for byte; an answer the client is slow to take is in the transcript once,
whole; and an answer is made again only in the second its ``Date`` says. Through sockets;
counts, no timings."""

from __future__ import annotations

import socket
import time

import pytest

from pytest_deproxy import Deproxy, Response, handlers, responding
from pytest_deproxy.models import Request
from pytest_deproxy.registry import ChainRegistry

from .conftest import counting

GET = b"GET /%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def test_a_canned_answer_made_again_costs_the_owner_one_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    for name in ("record", "settled", "routing_for_request"):
        monkeypatch.setattr(
            ChainRegistry, name, counting(calls, name, getattr(ChainRegistry, name))
        )
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=handlers.simple)
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
            for number in range(5):
                sock.sendall(GET % number)
                got = b""
                while not got.endswith(b"\r\n\r\n"):
                    chunk = sock.recv(65536)
                    assert chunk
                    got += chunk
        handlings = endpoint.handlings
        assert [h.request.path for h in handlings] == [f"/{n}" for n in range(5)]
        assert all(h.done and h.response is not None for h in handlings)
        # The first is made (arrived, then settled); the rest are the same answer again.
        assert calls.count("routing_for_request") == 0  # no call was in flight
        # Untracked (their headers unread) with no call in flight: in no chain, so not
        # handed to the record at all (hotpath4; one call each before that).
        assert calls.count("record") == 0
        assert calls.count("settled") <= 1


def test_a_request_read_whole_and_handed_to_a_thread_carries_on_as_it_arrived() -> None:
    seen: list[tuple[str, bytes]] = []

    def blocking(request: Request) -> Response:  # not marked non_blocking: a thread runs it
        seen.append((request.path, request.raw_body))
        return Response(200, body="ok")

    posted = b"POST /p HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello"
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=blocking)
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
            sock.sendall(posted + GET % 1)  # pipelined: the second follows on the thread
            got = b""
            while got.count(b"ok") < 2:
                chunk = sock.recv(65536)
                assert chunk, got
                got += chunk
        assert seen == [("/p", b"hello"), ("/1", b"")]
        first, second = endpoint.handlings
        assert first.raw == posted and second.raw == GET % 1
        assert first.request.headers["Content-Length"] == "5"
        assert first.received_at <= second.received_at
        record = endpoint.connections[0]
        assert record.received == posted + GET % 1
        assert record.sent == got


def test_an_answer_the_client_is_slow_to_take_is_in_the_transcript_once() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB: more than the socket takes at once
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=Response(200, body=body))
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.sendall(GET % 0 + GET % 1)
            time.sleep(0.2)  # the endpoint writes what it can, and a thread waits for the rest
            got = b""
            while b"\r\n\r\n" not in got or len(got) < 2 * (got.index(b"\r\n\r\n") + 4):
                chunk = sock.recv(1 << 20)
                assert chunk, len(got)
                got += chunk
            whole = 2 * (got.index(b"\r\n\r\n") + 4 + len(body))  # two heads alike, two bodies
            while len(got) < whole:
                chunk = sock.recv(1 << 20)
                assert chunk, len(got)
                got += chunk
        record = endpoint.connections[0]
        assert record.sent == got  # every byte once, in order, none twice
        assert record.outgoing.dropped == 0
        assert [h.response.raw_body for h in endpoint.handlings] == [body, body]  # type: ignore[union-attr]


def test_an_answer_is_made_again_only_in_the_second_its_date_says() -> None:
    canned = Response(200, headers={"X-Again": "1"})
    request = Request("GET", "/")
    for _ in range(3):  # made in one second (a second may turn meanwhile: made again then)
        responding.respond(canned, request)
        made = responding._last_made
        assert made is not None
        if responding.respond_again(canned, request, made.second + 0.5) is not None:
            break
    else:
        raise AssertionError("respond_again never gave the answer made before")
    assert responding.respond_again(canned, request, made.second + 0.0) is not None
    assert responding.respond_again(canned, request, made.second + 0.999) is not None
    assert responding.respond_again(canned, request, made.second + 1.0) is None
    assert responding.respond_again(canned, request, made.second - 0.001) is None
