"""A user's non-blocking handler of the request alone, answered on the poll thread for little
more than a canned answer costs, keeps every guarantee of a handler: it sees the request
the record holds, its handling is on the record (in its chain, or an orphan of the calls in
flight) before it runs and finished before its answer is written, an answer equal to the
last one is recorded as what crossed the wire without a new head, and what it raises or
returns wrongly is reported and answered 500. ``Response(200)`` made again shares its code
and reason phrase with every other, so that the same answer is known by identity. Through
sockets; counts, no timings."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

from pytest_deproxy import Deproxy, Response, handlers, responding
from pytest_deproxy.errors import HandlerError
from pytest_deproxy.h1polled import PolledAnswers
from pytest_deproxy.models import Request

from .conftest import bodiless_answers, counting, deproxy_checking_its_own_errors

GET = b"GET /%d HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Seq: %d\r\n\r\n"


def _heads(answers: bytes, count: int) -> list[list[str]]:
    return [head.decode("iso-8859-1").split("\r\n") for head in answers.split(b"\r\n\r\n")[:count]]


def test_a_plain_handler_giving_the_last_answer_again_is_recorded_without_a_new_head(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(responding, "respond", counting(calls, "respond", responding.respond))
    monkeypatch.setattr(
        PolledAnswers,
        "context",
        counting(calls, "context", PolledAnswers.context),
    )
    seen: list[tuple[Request, bool, bool]] = []
    with Deproxy() as deproxy:

        @handlers.non_blocking
        def custom(request: Request) -> Response:
            # Its own handling is on the record as it runs, not finished yet.
            last = endpoint.handlings[-1]
            seen.append((request, last.request is request, last.done))
            return Response(200)

        endpoint = deproxy.add_endpoint(default_handler=custom)
        requests = 10
        answers = bodiless_answers(
            endpoint.port, b"".join(GET % (n, n) for n in range(requests)), requests
        )
        handlings = endpoint.handlings
        assert [h.request.path for h in handlings] == [f"/{n}" for n in range(requests)]
        # The handler saw the very Request the record holds, filed before it ran.
        assert [request for request, _, _ in seen] == [h.request for h in handlings]
        assert all(request is h.request for (request, _, _), h in zip(seen, handlings, strict=True))
        assert all(filed and not done for _, filed, done in seen)
        for number, (head, handling) in enumerate(
            zip(_heads(answers, requests), handlings, strict=True)
        ):
            assert handling.done and handling.raw == GET % (number, number)
            assert handling.request.headers["X-Seq"] == str(number)
            response = handling.response
            assert response is not None and handling.response is response  # made once
            assert head[0] == "HTTP/1.1 200 OK"
            # The bytes of the answer are its response as recorded, head for head.
            assert [tuple(line.split(": ", 1)) for line in head[1:]] == response.headers.items()
            assert handling.received_at <= handling.responded_at  # type: ignore[operator]
    # No context made for a handler that takes none; the head made at most once a second
    # (the Date's), where every request made one.
    assert calls.count("context") == 0
    assert calls.count("respond") <= 2, calls


def test_a_plain_handler_whose_answers_differ_has_each_recorded_as_sent() -> None:
    @handlers.non_blocking
    def by_path(request: Request) -> Response:
        return Response(200, headers={"X-Path": request.path}, body=request.path)

    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=by_path)
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
            got = b""
            for number in range(3):
                sock.sendall(GET % (number, number))
                want = f"/{number}".encode()
                while not got.endswith(want):
                    chunk = sock.recv(65536)
                    assert chunk, got
                    got += chunk
        for number, handling in enumerate(endpoint.handlings):
            response = handling.response
            assert response is not None
            assert response.headers["X-Path"] == response.body == f"/{number}"
            assert response.headers["Content-Length"] == str(len(f"/{number}"))
            head = "\r\n".join(
                [
                    "HTTP/1.1 200 OK",
                    *(f"{name}: {value}" for name, value in response.headers.items()),
                ]
            )
            assert (head + f"\r\n\r\n/{number}").encode() in got


def test_a_plain_handler_that_raises_or_answers_nonsense_is_reported_and_answered_500() -> None:
    @handlers.non_blocking
    def fragile(request: Request) -> Any:
        if request.path == "/boom":
            raise RuntimeError("the database is on fire")
        if request.path == "/nonsense":
            return 42
        return Response(200)

    with deproxy_checking_its_own_errors() as own:
        endpoint = own.add_endpoint(default_handler=fragile)
        for path in ("/ok", "/boom", "/ok", "/nonsense", "/ok"):
            answer = bodiless_answers(
                endpoint.port, f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode(), 1
            )
            assert answer.startswith(b"HTTP/1.1 500" if path != "/ok" else b"HTTP/1.1 200")
        codes = [(h.request.path, h.response.code) for h in endpoint.handlings]  # type: ignore[union-attr]
        assert codes == [
            ("/ok", "200"),
            ("/boom", "500"),
            ("/ok", "200"),
            ("/nonsense", "500"),
            ("/ok", "200"),
        ]
        errors = own.errors
    assert [type(error.__cause__) for error in errors] == [RuntimeError, TypeError]
    assert "the database is on fire" in str(errors[0])
    assert "must return a Response" in str(errors[1])
    # Leaving ``with Deproxy()`` raises what the handler raised.
    deproxy = Deproxy()
    endpoint = deproxy.add_endpoint(default_handler=fragile)
    bodiless_answers(endpoint.port, b"GET /boom HTTP/1.1\r\nHost: h\r\n\r\n", 1)
    with pytest.raises(HandlerError, match="the database is on fire"):
        deproxy.__exit__(None, None, None)


def test_a_plain_handler_request_is_filed_in_its_chain_or_as_an_orphan_on_arrival() -> None:
    with Deproxy() as deproxy:
        seen_ids: list[str | None] = []

        @handlers.non_blocking
        def plain(request: Request) -> Response:
            seen_ids.append(request.headers.get("Deproxy-Request-ID"))
            return Response(200)

        backend = deproxy.add_endpoint(name="backend", default_handler=plain)
        # Tracked: in its chain, finished when the call returns.
        chain = deproxy.make_request(backend.url + "/tracked")
        assert [h.request.path for h in chain.handlings] == ["/tracked"]
        assert chain.handlings[0].done and chain.handlings[0].response is not None
        assert chain.handlings[0].response.headers["Deproxy-Request-ID"] == chain.request_id
        assert seen_ids == [chain.request_id]

        # Untracked, while a call is in flight: an orphan of that call, waited for by it.
        def front_handler(request: Request) -> Response:
            bodiless_answers(backend.port, b"".join(GET % (n, n) for n in range(3)), 3)
            return Response(200)

        front = deproxy.add_endpoint(name="front", default_handler=front_handler)
        outer = deproxy.make_request(front.url + "/call").wait(orphaned_handlings=3)
        orphans = outer.orphaned_handlings
        assert [h.request.path for h in orphans] == ["/0", "/1", "/2"]
        assert orphans == list(backend.handlings)[1:]
        assert all(h.done and h.response.code == "200" for h in orphans)  # type: ignore[union-attr]
        # Untracked with no call in flight: kept by the endpoint, in no chain.
        bodiless_answers(backend.port, GET % (9, 9), 1)
        assert backend.handlings[-1].request.path == "/9" and backend.handlings[-1].done
        assert all(backend.handlings[-1] not in c.orphaned_handlings for c in deproxy.chains)


def test_a_plain_handler_returning_a_fault_has_it_carried_out_on_the_record() -> None:
    @handlers.non_blocking
    def closing(request: Request) -> Any:
        return handlers.close if request.path == "/close" else Response(200)

    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=closing)
        bodiless_answers(endpoint.port, GET % (1, 1), 1)
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
            sock.sendall(b"GET /close HTTP/1.1\r\nHost: h\r\n\r\n")
            assert sock.recv(65536) == b""  # closed, unanswered
        closed = endpoint.handlings[-1]
        deadline = threading.Event()
        for _ in range(100):  # the thread that carries it out finishes it
            if closed.done:
                break
            deadline.wait(0.05)
        assert closed.request.path == "/close" and closed.done
        assert closed.response is None and closed.action is not None


def test_a_response_of_an_int_status_shares_its_code_and_reason() -> None:
    first, second = Response(200), Response(200)
    assert first.code is second.code and first.message is second.message
    assert (first.code, first.message, first.body, first.raw_body) == ("200", "OK", "", b"")
    assert first.headers is not second.headers  # each its own, to change
    first.headers["X-A"] = "1"
    assert "X-A" not in second.headers
    assert Response(404).message == "Not Found" and Response(599).message == ""
    assert Response(" 204 ").code == "204" and Response("200", "Fine").message == "Fine"
    assert Response(201, body="x").raw_body == b"x"
    for wrong in (2000, 99, True, -200, "20x"):
        with pytest.raises(ValueError, match="three digits"):
            Response(wrong)
