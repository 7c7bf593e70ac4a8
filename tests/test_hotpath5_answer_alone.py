"""The poll thread's answer to a read that is one whole request and nothing more
(``PolledAnswers.answer_alone``), and its commonest case, an untracked GET/1.1 answered as
the last answer was, with no call but the record's. What it answers is on the record as any
request is: its bytes as they came, its headers as sent, its answer as sent (a Date of the
second it went out in), in the chains of the calls in flight; a read holding more than one
request is every one of them; a tracked request alone in its read, and one with a body, are
answered and recorded whole. Through sockets; counts, no timings."""

from __future__ import annotations

import socket
import time
from email.utils import parsedate_to_datetime

import pytest

from pytest_deproxy import Deproxy, Request, Response, handlers
from pytest_deproxy.h1polled import PolledAnswers

from .conftest import bodiless_answers, counting

PLAIN = b"GET /plain HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: load\r\n\r\n"
KEEP_ALIVE = b"GET /kept HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"


def _one_by_one(sock: socket.socket, requests: list[bytes]) -> list[bytes]:
    """Send each request after the answer to the one before: each is alone in its read."""
    return [bodiless_answers(0, request, 1, sock) for request in requests]


def test_requests_alone_in_their_reads_are_on_the_record_byte_for_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    # (_answer: how a request is answered when it is not the last answer made again)
    monkeypatch.setattr(PolledAnswers, "_answer", counting(calls, "answer", PolledAnswers._answer))
    sent = [PLAIN, KEEP_ALIVE] * 25
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint()
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
            answers = _one_by_one(sock, sent)
        # The first is answered the ordinary way (its answer is made); the rest in one step,
        # unless a second went by meanwhile (a new Date: made again, the ordinary way).
        assert 1 <= len(calls) <= 3
        handlings = endpoint.handlings
        assert [h.raw for h in handlings] == sent
        (connection,) = endpoint.connections
        assert connection.handlings == handlings
        assert connection.received == b"".join(sent)
        assert connection.sent == b"".join(answers)
        for handling, request, answer in zip(handlings, sent, answers, strict=True):
            assert handling.done and handling.connection == connection.id
            assert handling.request.path == request.split(b" ")[1].decode()
            assert handling.request.headers["Host"] == "127.0.0.1"
            kept = "keep-alive" if request is KEEP_ALIVE else None
            assert handling.request.headers.get("Connection") == kept
            assert handling.received_at <= handling.responded_at  # type: ignore[operator]
            response = handling.response
            assert response is not None and response.code == "200"
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            assert f"Date: {response.headers['Date']}\r\n".encode() in answer
            assert response.headers["Content-Length"] == "0"


def test_an_answer_made_again_never_carries_a_date_gone_by() -> None:
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint()
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
            _one_by_one(sock, [PLAIN, PLAIN])  # made, then made again
            time.sleep(1.05 - time.time() % 1)  # into the next second
            before = int(time.time())
            (answer,) = _one_by_one(sock, [PLAIN])
            after = int(time.time())
        date_line = next(line for line in answer.split(b"\r\n") if line.startswith(b"Date: "))
        date = int(parsedate_to_datetime(date_line[6:].decode()).timestamp())
        assert before <= date <= after
        last = endpoint.handlings[-1].response
        assert last is not None and last.headers["Date"] == date_line[6:].decode()


def test_two_requests_in_one_read_are_two_handlings() -> None:
    first = b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
    second = b"GET /two HTTP/1.1\r\nHost: h\r\n\r\n"
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint()
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
            _one_by_one(sock, [first, first])  # the answer is made, and one-step answers begin
            got = bodiless_answers(0, first + second, 2, sock)  # one write: one read, mostly
            # Requests whose fields are read (with bodies) too.
            posts = [
                b"POST /%d HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n#%d" % (n, n)
                for n in (3, 4)
            ]
            got += bodiless_answers(0, b"".join(posts), 2, sock)
        assert got.count(b"HTTP/1.1 200 OK\r\n") == 4
        assert [h.raw for h in endpoint.handlings] == [first, first, first, second, *posts]
        paths = [h.request.path for h in endpoint.handlings][-4:]
        assert paths == ["/one", "/two", "/3", "/4"]
        assert [h.request.body for h in endpoint.handlings][-2:] == ["#3", "#4"]


def test_an_untracked_request_alone_while_a_call_is_in_flight_is_an_orphan_of_the_call() -> None:
    with Deproxy() as deproxy:
        behind = deproxy.add_endpoint(name="behind")
        with socket.create_connection(("127.0.0.1", behind.port), timeout=5) as warm:
            _one_by_one(warm, [PLAIN, PLAIN])  # its answer is made: one-step answers begin
        answers: list[bytes] = []

        def fetch_behind(request: Request) -> Response:
            # A handler with a thread of its own: it may wait for the other endpoint.
            with socket.create_connection(("127.0.0.1", behind.port), timeout=5) as sock:
                answers.extend(_one_by_one(sock, [PLAIN]))
            return handlers.simple(request)

        front = deproxy.add_endpoint(name="front", default_handler=fetch_behind)
        chain = deproxy.make_request(front.url)
        assert chain.received_response is not None
        assert chain.received_response.code == "200"
        assert [h.endpoint for h in chain.handlings] == [front]
        (orphan,) = chain.orphaned_handlings
        assert orphan.endpoint is behind and orphan.raw == PLAIN
        assert orphan.response is not None and orphan.response.code == "200"
        assert answers and answers[0].startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_tracked_request_and_one_with_a_body_alone_in_their_reads_are_recorded_whole() -> None:
    posted = b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=handlers.echo)
        chain = deproxy.make_request(endpoint.url + "/tracked", "PUT", request_body="data")
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
            sock.sendall(posted)
            got = b""
            while not got.endswith(b"hello"):
                chunk = sock.recv(65536)
                assert chunk, got
                got += chunk
        assert chain.received_response is not None and chain.received_response.body == "data"
        (tracked,) = chain.handlings
        assert tracked.request.method == "PUT" and tracked.request.body == "data"
        assert tracked.raw.endswith(b"\r\n\r\ndata")
        last = endpoint.handlings[-1]
        assert last.raw == posted and last.request.body == "hello"
        assert got.startswith(b"HTTP/1.1 200 OK\r\n")
