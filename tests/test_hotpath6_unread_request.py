"""The commonest request under load (an untracked GET/1.1, alone in its read, its head only
glanced at, answered as the last answer was) is recorded with no Request made: its handling
makes the Request from the bytes that came when first read, once, whichever thread reads
first, the same Request the ordinary path makes. What the record says of it is unchanged:
the bytes, the headers, the answer as sent, the handler that answered, the chains of calls in
flight. Through sockets; counts, no timings."""

from __future__ import annotations

import socket
import threading

import pytest

from pytest_deproxy import Deproxy, Request, Response, responding
from pytest_deproxy.record import Handling

from .conftest import bodiless_answers

PLAIN = b"GET /plain?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: load\r\n\r\n"
KEEP_ALIVE = b"GET /kept HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: keep-alive\r\n\r\n"


def _one_by_one(sock: socket.socket, requests: list[bytes]) -> list[bytes]:
    return [bodiless_answers(0, request, 1, sock) for request in requests]


def _counting_unread(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every Request made by ``Request.unread`` from here on, as the head it was made from."""
    made: list[bytes] = []
    unread = Request.unread.__func__  # type: ignore[attr-defined]

    def counted(cls: type[Request], method: str, path: str, raw: bytes, version: str) -> Request:
        made.append(raw)
        return unread(cls, method, path, raw, version)  # type: ignore[no-any-return]

    monkeypatch.setattr(Request, "unread", classmethod(counted))
    return made


def test_the_request_is_made_when_first_read_and_is_what_came(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent = [PLAIN, KEEP_ALIVE] * 20
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint()
        made = _counting_unread(monkeypatch)
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
            answers = _one_by_one(sock, sent)
        handlings = endpoint.handlings
        assert made == []  # nothing was read yet: no Request made
        for handling, raw, answer in zip(handlings, sent, answers, strict=True):
            request = handling.request
            method, target, _ = raw.split(b"\r\n", 1)[0].decode().split(" ")
            assert (request.method, request.path, request.http_version) == (method, target, "1.1")
            fields = [line.split(": ", 1) for line in raw.decode().split("\r\n")[1:-2]]
            assert [list(item) for item in request.headers.items()] == fields
            assert request.raw_body == b"" and request.body == ""
            assert handling.raw == raw
            assert handling.request is request  # made once, then kept
            response = handling.response
            assert response is not None and response.code == "200"
            assert f"Date: {response.headers['Date']}\r\n".encode() in answer
        # The first came the ordinary way (and any whose second had a new Date); the rest
        # were made as they were read.
        assert len(sent) - 3 <= len(made) <= len(sent) - 1
        assert set(made) == {PLAIN, KEEP_ALIVE}
        count = len(made)
        for handling in handlings:  # read again: nothing more made
            assert handling.request.path in ("/plain?x=1", "/kept")
        assert len(made) == count


def test_one_request_is_made_whichever_threads_read_it_first() -> None:
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint()
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
            _one_by_one(sock, [PLAIN] * 30)
        handling = endpoint.handlings[-1]
        seen: list[Request] = []
        start = threading.Barrier(8)

        def read() -> None:
            start.wait()
            seen.append(handling.request)

        threads = [threading.Thread(target=read) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(seen) == 8 and all(request is seen[0] for request in seen)
        assert seen[0].path == "/plain?x=1"


def test_made_later_or_at_once_the_handling_is_the_same() -> None:
    glance = ("GET", "/kept", "1.1", len(KEEP_ALIVE))
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint()
        responding.respond(Response(200, headers={"X-A": "1"}), Request("GET", "/kept"))
        assert responding._last_made is not None
        sent, _, _ = responding._last_made.again_get
        request = Request.unread("GET", "/kept", KEEP_ALIVE, "1.1")
        at_once = Handling.answered(endpoint, request, "c-1", 1.5, KEEP_ALIVE, None, sent)
        later = Handling.answered(endpoint, None, "c-1", 1.5, KEEP_ALIVE, None, sent, glance)
        for handling in (at_once, later):
            assert handling.done and handling.action is None and handling.stream_id is None
            assert handling.endpoint is endpoint and handling.connection == "c-1"
            assert handling.received_at == 1.5 and handling.raw == KEEP_ALIVE
            assert handling.request_id is None
        assert later.request.method == at_once.request.method == "GET"
        assert later.request.path == at_once.request.path == "/kept"
        assert list(later.request.headers.items()) == list(at_once.request.headers.items())
        assert later.request.raw_body == at_once.request.raw_body == b""
        assert later.response is not None and at_once.response is not None
        assert later.response.headers.items() == at_once.response.headers.items()
        assert repr(later) == repr(at_once).replace(
            f"responded_at={at_once.responded_at!r}", f"responded_at={later.responded_at!r}"
        )


def test_a_call_in_flight_claims_none_of_them_and_has_each_as_an_orphan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call's handlers answer its own requests: an untracked one that comes meanwhile is
    answered by the endpoint's own, and is in the call's chain as an orphan."""
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint()
        outside = socket.create_connection(("127.0.0.1", endpoint.port), timeout=5)
        with outside:
            _one_by_one(outside, [PLAIN, PLAIN])  # the canned answer is made, then made again
            made = _counting_unread(monkeypatch)
            answers: list[bytes] = []

            def call_handler(request: Request) -> Response:
                answers.extend(_one_by_one(outside, [KEEP_ALIVE, KEEP_ALIVE]))
                return Response(201)

            chain = deproxy.make_request(
                endpoint.url + "/tracked", handlers={endpoint: call_handler}
            )
        assert chain.received_response is not None
        assert chain.received_response.code == "201"
        assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 2
        orphans = chain.orphaned_handlings
        assert [h.raw for h in orphans] == [KEEP_ALIVE, KEEP_ALIVE]
        assert [h.request.path for h in orphans] == ["/kept", "/kept"]
        assert all(h.response is not None and h.response.code == "200" for h in orphans)
        assert made.count(KEEP_ALIVE) <= 2  # made for the record as it was read, if at all


def test_a_new_default_handler_answers_the_next_request_at_once() -> None:
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint()
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
            before = _one_by_one(sock, [PLAIN] * 3)
            endpoint.default_handler = Response(404)
            after = _one_by_one(sock, [PLAIN] * 3)
            deproxy.default_handler = Response(410)
            endpoint.default_handler = None
            last = _one_by_one(sock, [PLAIN] * 2)
        lines = [answer.split(b"\r\n", 1)[0] for answer in before + after + last]
        assert (
            lines
            == [b"HTTP/1.1 200 OK"] * 3
            + [b"HTTP/1.1 404 Not Found"] * 3
            + [b"HTTP/1.1 410 Gone"] * 2
        )
        codes = [h.response.code for h in endpoint.handlings if h.response is not None]
        assert codes == ["200"] * 3 + ["404"] * 3 + ["410"] * 2


def test_an_http_1_0_request_is_answered_as_its_version_asks() -> None:
    """An HTTP/1.0 request without keep-alive is answered, and its connection closed after."""
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint()
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
            _one_by_one(sock, [PLAIN] * 3)  # the canned answer made, then made again
            sock.sendall(b"GET /old HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            got = b""
            while chunk := sock.recv(65536):  # until the endpoint closes
                got += chunk
        assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b"\r\n\r\n")
        last = endpoint.handlings[-1]
        assert (last.request.path, last.request.http_version) == ("/old", "1.0")
        assert endpoint.connections[0].closed_by == "endpoint"
