"""The stock answer's fast path stays faithful: an answer made again (same canned Response, same
second) is recorded as the Response it was, made when first read; a canned Response changed
between requests is answered as it is now; answers to pipelined requests written together
arrive whole and in order, also when a later request needs a thread.

No timings are asserted here (``benchmarks/endpoint_cost.py`` measures them)."""

from __future__ import annotations

import gc
import socket
import threading

from pytest_deproxy import Deproxy, Request, Response, handlers
from pytest_deproxy.record import Handling
from pytest_deproxy.responding import SERVER_NAME, respond, respond_again

from .conftest import send_raw

GET = b"GET /%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _answers(data: bytes) -> list[bytes]:
    """The heads of bodiless answers, in order."""
    return [head + b"\r\n\r\n" for head in data.split(b"\r\n\r\n")[:-1]]


def _live_responses() -> int:
    return sum(isinstance(o, Response) for o in gc.get_objects())


def test_stock_answers_are_recorded_as_sent_and_their_responses_made_when_read() -> None:
    count = 300
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=handlers.simple)
        before = _live_responses()
        answer = send_raw(endpoint.port, b"".join(GET % n for n in range(count)))
        handlings = endpoint.handlings
        made = _live_responses() - before  # before any handling's response is read
        answers = _answers(answer)
        assert len(answers) == len(handlings) == count
        for number, (handling, sent) in enumerate(zip(handlings, answers, strict=True)):
            assert handling.request.path == f"/{number}" and handling.done
            assert handling.responded_at is not None and handling.action is None
            response = handling.response
            assert response is not None and response is handling.response  # made once
            date = sent.split(b"Date: ")[1].split(b"\r\n")[0].decode()
            assert (response.code, response.message, response.raw_body) == ("200", "OK", b"")
            assert response.headers.items() == [
                ("Server", SERVER_NAME),
                ("Date", date),
                ("Content-Length", "0"),
            ]
            assert sent.startswith(b"HTTP/1.1 200 OK\r\n")
    # One Response made in full per second the answers took (a few), not one per request.
    assert made < 10, f"{made} Responses made for {count} stock answers nobody read yet"


def test_a_handlings_response_made_when_read_can_be_replaced() -> None:
    canned = Response(200)
    request = Request("GET", "/", {"Host": "h"})
    respond(canned, request)
    again = respond_again(canned, request)
    assert again is not None
    handling = Handling(None, request, "conn-1")  # type: ignore[arg-type]
    handling.finish_as(again[0])
    replaced = Response(503)
    handling.response = replaced
    assert handling.response is replaced
    handling.finish(None, "dropped")
    assert handling.response is None and handling.action == "dropped"


def test_the_same_answer_made_again_is_read_by_many_threads_as_one_response() -> None:
    canned = Response(200)
    request = Request("GET", "/", {"Host": "h"})
    respond(canned, request)
    again = respond_again(canned, request)
    assert again is not None
    handling = Handling(None, request, "conn-1")  # type: ignore[arg-type]
    handling.finish_as(again[0])
    seen: list[Response | None] = []
    threads = [threading.Thread(target=lambda: seen.append(handling.response)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(seen) == 8 and all(response is seen[0] for response in seen)


def test_a_canned_response_changed_between_requests_is_answered_as_it_is_now() -> None:
    canned = Response(200, headers={"X-Version": "1"}, body="one")
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=canned)
        first = send_raw(endpoint.port, GET % 1 + GET % 2)
        canned.headers["X-Version"] = "2"
        canned.code, canned.message = "202", "Accepted"
        second = send_raw(endpoint.port, GET % 3)
        handlings = endpoint.handlings
    assert first.count(b"HTTP/1.1 200 OK\r\n") == 2 and first.count(b"X-Version: 1\r\n") == 2
    assert second.startswith(b"HTTP/1.1 202 Accepted\r\n") and b"X-Version: 2\r\n" in second
    assert [h.response.headers["X-Version"] for h in handlings if h.response] == ["1", "1", "2"]
    assert [h.response.code for h in handlings if h.response] == ["200", "200", "202"]
    assert canned.headers.items() == [("X-Version", "2")]  # the canned one never gains defaults


def test_answers_written_together_go_before_a_request_still_arriving() -> None:
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=handlers.echo)
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
            post = b"POST /3 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 6\r\n\r\nabc"
            sock.sendall(GET % 1 + GET % 2 + post)  # the third request is not whole yet
            received = b""
            while received.count(b"HTTP/1.1 200 OK") < 2:
                chunk = sock.recv(65536)
                assert chunk, f"closed after {received!r}"
                received += chunk
            sock.sendall(b"def")
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                received += chunk
        handlings = endpoint.handlings
    assert received.count(b"HTTP/1.1 200 OK") == 3 and received.endswith(b"abcdef")
    assert [h.request.path for h in handlings] == ["/1", "/2", "/3"]
    assert endpoint.connections[0].sent == received


def _visited_by_the_collector(root: object) -> int:
    """How many references the garbage collector follows from ``root`` (itself included)
    through the containers it tracks that belong to it (not its class, nor modules)."""
    seen: set[int] = set()
    stack, visits = [root], 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or not gc.is_tracked(obj) or isinstance(obj, type):
            continue
        seen.add(id(obj))
        referents = gc.get_referents(obj)
        visits += len(referents)
        stack.extend(referents)
    return visits


def test_a_long_keep_alive_runs_transcript_costs_the_collector_nothing_per_chunk() -> None:
    with Deproxy() as deproxy:
        endpoint = deproxy.add_endpoint(default_handler=handlers.simple)
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as sock:
            received = b""
            for number in range(400):  # one request at a time: a chunk each way each time
                sock.sendall(GET % number)
                while received.count(b"\r\n\r\n") <= number:
                    chunk = sock.recv(65536)
                    assert chunk
                    received += chunk
        record = endpoint.connections[0]
        assert record.sent == received and record.received.count(b"GET /") == 400
        visits = _visited_by_the_collector(record.incoming) + _visited_by_the_collector(
            record.outgoing
        )
    assert visits < 40, f"the collector follows {visits} references in two transcripts"
