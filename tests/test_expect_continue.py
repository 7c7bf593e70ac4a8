"""``Expect: 100-continue`` on the endpoint side: ``100 Continue`` by default, before the body
is read, and ``context.send_continue = False`` for a handler that refuses the body instead.
The record shows what crossed the wire: a refused body is not on it."""

from __future__ import annotations

import socket
import threading

from pytest_deproxy import Deproxy, HandlerContext, Request, Response

HEAD = b"PUT /upload HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"


def read_until_closed(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def test_a_handler_that_refuses_the_body_answers_at_once_and_closes(deproxy: Deproxy) -> None:
    def no_uploads(request: Request, context: HandlerContext) -> Response:
        context.send_continue = False
        return Response(417, body="no uploads here")

    server = deproxy.add_endpoint(default_handler=no_uploads)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(HEAD)
        answer = read_until_closed(sock)  # the endpoint closes: no body is ever sent
    assert answer.startswith(b"HTTP/1.1 417 ")
    assert b"100 Continue" not in answer
    assert b"\r\nConnection: close\r\n" in answer
    (handling,) = server.handlings
    assert handling.request.body == ""  # the body never crossed the wire
    assert handling.interim_responses == []
    assert handling.response is not None and handling.response.code == "417"
    (connection,) = server.connections
    assert connection.closed_by == "endpoint"


def test_make_request_sees_the_refusal_as_a_withheld_body(deproxy: Deproxy) -> None:
    def no_uploads(request: Request, context: HandlerContext) -> Response:
        context.send_continue = False
        return Response(413)

    server = deproxy.add_endpoint(default_handler=no_uploads)
    chain = deproxy.make_request(server.url, "POST", request_body="hello", expect_continue=True)
    assert chain.received_response is not None and chain.received_response.code == "413"
    assert chain.body_withheld is True
    assert chain.interim_responses == []
    (handling,) = chain.handlings
    assert handling.request.body == ""


def test_a_handler_that_reads_the_body_gets_it_after_100(deproxy: Deproxy) -> None:
    seen: list[str | bytes] = []

    def upload(request: Request, context: HandlerContext) -> Response:
        seen.append(request.body)
        return Response(201, body=request.body)

    server = deproxy.add_endpoint(default_handler=upload)
    chain = deproxy.make_request(server.url, "PUT", request_body="data", expect_continue=True)
    assert chain.received_response is not None and chain.received_response.code == "201"
    assert chain.received_response.body == "data"
    assert [interim.code for interim in chain.interim_responses] == ["100"]
    assert seen == ["data"]
    (handling,) = chain.handlings
    assert handling.request.body == "data"
    assert [interim.code for interim in handling.interim_responses] == ["100"]


def test_100_goes_out_before_a_handler_waits(deproxy: Deproxy) -> None:
    released = threading.Event()

    def slow(request: Request, context: HandlerContext) -> Response:
        while not released.is_set():  # waits through context.sleep, as handlers do
            context.sleep(0.01)
        return Response(200, body=request.body)

    server = deproxy.add_endpoint(default_handler=slow)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(HEAD)
        # The handler is still waiting: only the 100 it sent before waiting can come.
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"data")
        released.set()
        answer = b""
        while not answer.endswith(b"data"):
            chunk = sock.recv(65536)
            assert chunk, f"closed before the answer ended: {answer!r}"
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK")
    (handling,) = server.handlings
    assert handling.request.body == "data"


def test_a_handler_may_read_a_body_it_did_not_ask_for(deproxy: Deproxy) -> None:
    """send_continue = False, then the body read anyway: it comes when the client stops
    waiting for a 100 (as curl does after a second); no 100 is sent."""

    def quiet(request: Request, context: HandlerContext) -> Response:
        context.send_continue = False
        return Response(200, body=request.body)

    server = deproxy.add_endpoint(default_handler=quiet)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(HEAD + b"data")
        answer = b""
        while not answer.endswith(b"data"):
            chunk = sock.recv(65536)
            assert chunk, f"closed before the answer ended: {answer!r}"
            answer += chunk
        # The body was read: the connection carries another request.
        sock.sendall(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert b"100 Continue" not in answer
    first, second = server.handlings
    assert first.request.body == "data" and first.interim_responses == []
    assert second.request.path == "/next"


def test_a_body_cut_short_while_awaited_is_recorded_as_cut_short(deproxy: Deproxy) -> None:
    answered: list[Response] = []

    def upload(request: Request, context: HandlerContext) -> Response:
        body = request.body  # the client closes instead of sending it
        answered.append(Response(200, body=body))
        return answered[-1]

    server = deproxy.add_endpoint(default_handler=upload)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(HEAD)
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"da")
        sock.shutdown(socket.SHUT_WR)
        rest = read_until_closed(sock)
    assert rest == b""  # the handler's answer to a half request is not sent
    (handling,) = server.handlings
    assert handling.response is None
    assert handling.request.raw_body == b"da"
    assert handling.action is not None and "closed" in handling.action
    assert [interim.code for interim in handling.interim_responses] == ["100"]


def test_a_one_argument_handler_gets_100_before_it_runs(deproxy: Deproxy) -> None:
    """A handler of the request alone cannot refuse a body: 100 goes out as the head
    arrives, as it always did, and it runs with the body read."""
    server = deproxy.add_endpoint(default_handler=lambda request: Response(200, body=request.body))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(HEAD)
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"data")
        answer = b""
        while not answer.endswith(b"data"):
            chunk = sock.recv(65536)
            assert chunk
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK")
