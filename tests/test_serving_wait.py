"""A caller of make_request serves its Deproxy's endpoints while it waits for its answer
(servingwait): what it serves is served as the poll thread serves it, the poll thread takes
over again when the call returns, a request that stalls meanwhile is still timed out, many
callers at once are all answered, shutdown frees a caller that serves, and a handler that
would make the serving thread wait on itself is refused with a clear error.

Behaviour, never timing."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import pytest

from pytest_deproxy import Deproxy, Endpoint, Request, Response, handlers
from pytest_deproxy.handlers import HandlerContext

from .conftest import answered, deproxy_checking_its_own_errors, eventually

EndpointFactory = Callable[..., Endpoint]


def _thread_name_handler(names: list[str]) -> Callable[[Request], Response]:
    @handlers.non_blocking
    def answer(request: Request) -> Response:
        names.append(threading.current_thread().name)
        return Response(200, body=request.path)

    return answer


def _raw_exchange(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    answer = b""
    while not answer.endswith(path.encode()):
        chunk = sock.recv(65536)
        assert chunk, f"closed before the answer to {path}: {answer!r}"
        answer += chunk
    return answer


def test_the_callers_request_is_served_on_its_thread_and_others_on_the_poll_thread(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    names: list[str] = []
    server = endpoint("seen", _thread_name_handler(names))
    assert answered(deproxy.make_request(server.url + "/mine")).body == "/mine"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        assert _raw_exchange(sock, "/theirs").startswith(b"HTTP/1.1 200 OK\r\n")
    assert names == [threading.current_thread().name, "deproxy-seen-poll"]
    assert [h.request.path for h in server.handlings] == ["/mine", "/theirs"]


def test_a_connection_accepted_while_the_caller_served_is_served_by_the_poll_thread_after(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    names: list[str] = []
    server = endpoint("later", _thread_name_handler(names))
    opened: list[socket.socket] = []

    def connect_meanwhile(request: Request, context: HandlerContext) -> Response:
        # On a thread of its own (not marked): the caller waits, and accepts this connection.
        opened.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
        context.sleep(0.05)
        return Response(200, body="first")

    chain = deproxy.make_request(server.url, default_handler=connect_meanwhile)
    assert answered(chain).body == "first"
    [sock] = opened
    with sock:
        assert _raw_exchange(sock, "/after").startswith(b"HTTP/1.1 200 OK\r\n")
    assert names == ["deproxy-later-poll"]
    first, after = server.handlings
    assert after.request.path == "/after" and after.connection != first.connection


def _stall_meanwhile(
    port: int, stalled: list[socket.socket], sleep: float
) -> Callable[..., Response]:
    def handler(request: Request, context: HandlerContext) -> Response:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: ")  # and no more
        stalled.append(sock)
        context.sleep(sleep)
        return Response(200)

    return handler


def _answer_of(sock: socket.socket) -> bytes:
    answer = b""
    with sock:
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(
    "caller_waits", [2.0, 0.05], ids=["while-the-caller-waits", "after-the-caller-returned"]
)
def test_a_request_that_stalls_while_the_caller_serves_is_still_timed_out(
    deproxy: Deproxy, endpoint: EndpointFactory, caller_waits: float
) -> None:
    server = endpoint("slow", request_timeout=0.3)
    stalled: list[socket.socket] = []
    chain = deproxy.make_request(
        server.url, default_handler=_stall_meanwhile(server.port, stalled, sleep=caller_waits)
    )
    assert answered(chain).code == "200"
    [sock] = stalled
    assert _answer_of(sock).startswith(b"HTTP/1.1 408 ")
    if caller_waits > 0.3:  # answered by the caller's watchdog, before its own answer was sent
        stall = next(h for h in server.handlings if h.response and h.response.code == "408")
        [mine] = chain.handlings
        assert stall.responded_at is not None and mine.responded_at is not None
        assert stall.responded_at < mine.responded_at


def _answering_with(body: str) -> Callable[[Request], Response]:
    def answer(request: Request) -> Response:
        return Response(200, body=body)

    return answer


def test_callers_on_many_threads_are_all_answered_and_recorded(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint("busy")
    failures: list[BaseException] = []

    def call(number: int) -> None:
        try:
            for i in range(20):
                body = f"{number}-{i}"
                chain = deproxy.make_request(
                    server.url,
                    default_handler=handlers.non_blocking(_answering_with(body)),
                )
                assert answered(chain).body == body
                [handling] = chain.handlings
                assert handling.response is not None and handling.response.body == body
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    callers = [threading.Thread(target=call, args=(n,), name=f"caller-{n}") for n in range(8)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(60)
    assert failures == []
    assert not any(caller.is_alive() for caller in callers)
    assert len(server.handlings) == 8 * 20


def test_shutdown_frees_a_caller_that_serves_and_leaves_nothing_running() -> None:
    with deproxy_checking_its_own_errors() as deproxy:
        server = deproxy.add_endpoint(name="stopped")
        arrived = threading.Event()

        def long_wait(request: Request, context: HandlerContext) -> Response:
            arrived.set()
            context.sleep(30)  # woken by shutdown
            return Response(200)

        outcome: list[object] = []
        caller = threading.Thread(
            target=lambda: outcome.append(
                deproxy.make_request(server.url, default_handler=long_wait, timeout=30)
            ),
            name="caller",
        )
        caller.start()
        assert arrived.wait(10)
        deproxy.shutdown()
        caller.join(10)
        assert not caller.is_alive()
        assert len(outcome) == 1
    assert not [t for t in threading.enumerate() if t.name.startswith("deproxy-stopped-")]


@pytest.mark.parametrize("sent_by", ["make_request", "a raw client"])
def test_a_non_blocking_handler_that_makes_a_request_is_refused_clearly(sent_by: str) -> None:
    """Refused whichever thread runs the handler: a waiting caller's (when it serves its
    endpoints) or the poll thread (a raw client's request, or the caller's when the poll
    thread took it first), so that the outcome does not depend on timing."""
    with deproxy_checking_its_own_errors() as deproxy:
        other = deproxy.add_endpoint(name="other")

        @handlers.non_blocking
        def asks_another(request: Request) -> Response:
            deproxy.make_request(other.url)
            return Response(200)

        server = deproxy.add_endpoint(name="asking", default_handler=asks_another)
        if sent_by == "make_request":
            code = answered(deproxy.make_request(server.url)).code
        else:
            with socket.create_connection(server.address, timeout=10) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
                code = sock.recv(65536)[9:12].decode()  # (a 500 closes the connection)
        assert code == "500"
        [error] = deproxy.errors
        assert "marked non_blocking" in str(error.__cause__)
        assert "leave the mark off" in str(error.__cause__)
        assert other.handlings == []
        eventually(lambda: not [h for h in server.handlings if not h.done])
