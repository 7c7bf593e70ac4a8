"""How an endpoint serves its connections: on its poll thread while every request is whole on
arrival and its handler never blocks, in a thread of its own from the first one that is not."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from pytest_deproxy import Deproxy, Endpoint, Request, Response, faults, handlers

EndpointFactory = Callable[..., Endpoint]


def connection_threads(server: Endpoint) -> list[str]:
    prefix = f"deproxy-{server.name}-conn-"
    return [thread.name for thread in threading.enumerate() if thread.name.startswith(prefix)]


@contextmanager
def connected(server: Endpoint) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        yield sock


def read_response(sock: socket.socket, pending: bytearray) -> bytes:
    """One response with a Content-Length body, read off ``sock`` (leftovers stay pending)."""
    while b"\r\n\r\n" not in pending:
        pending += sock.recv(65536) or b"!"  # "!" makes a closed socket fail the check below
        assert not pending.endswith(b"!"), f"the connection closed after {bytes(pending)!r}"
    head, _, _ = pending.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    end = len(head) + 4 + length
    while len(pending) < end:
        pending += sock.recv(65536)
    response = bytes(pending[:end])
    del pending[:end]
    return response


def request(path: str, body: bytes = b"", extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: h\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


@pytest.mark.parametrize(
    ("handler", "never"),
    [
        (Response(201), True),
        (handlers.simple, True),
        (handlers.echo, True),
        (handlers.not_found, True),
        (lambda request: Response(200), False),
        (handlers.delay(0), False),
        (handlers.by_path({"/": handlers.simple}), False),
        (faults.close_fault(), False),
    ],
)
def test_only_canned_responses_and_computing_stock_handlers_never_block(
    handler: object, never: bool
) -> None:
    assert handlers.never_blocks(handler) is never


def test_stock_handlers_answer_many_connections_without_a_thread_each(
    endpoint: EndpointFactory,
) -> None:
    server = endpoint(handler=handlers.echo)
    with connected(server) as first, connected(server) as second:
        for sock in (first, second, first, second):
            pending = bytearray()
            sock.sendall(request("/", b"ping"))
            assert read_response(sock, pending).endswith(b"\r\n\r\nping")
        assert connection_threads(server) == []
    handlings = server.handlings
    assert len(handlings) == 4
    assert handlings[0].connection == handlings[2].connection != handlings[1].connection


def test_pipelined_requests_are_answered_in_order(endpoint: EndpointFactory) -> None:
    server = endpoint(handler=handlers.echo)
    with connected(server) as sock:
        sock.sendall(b"".join(request(f"/{n}", str(n).encode()) for n in range(5)))
        pending = bytearray()
        bodies = [read_response(sock, pending).rpartition(b"\r\n\r\n")[2] for _ in range(5)]
    assert bodies == [b"0", b"1", b"2", b"3", b"4"]
    assert [h.request.path for h in server.handlings] == [f"/{n}" for n in range(5)]


def test_a_handler_that_may_block_gets_the_connection_a_thread_and_others_go_on(
    endpoint: EndpointFactory,
) -> None:
    release = threading.Event()

    def held(request: Request) -> Response:
        release.wait(10)
        return Response(200, body="held")

    server = endpoint(handler=handlers.by_path({"/held": held, "/": handlers.simple}))
    plain = endpoint()
    with connected(server) as waiting, connected(plain) as other:
        waiting.sendall(request("/held"))
        for _ in range(3):  # the poll thread is not waiting with the held request
            other.sendall(request("/"))
            assert read_response(other, bytearray()).startswith(b"HTTP/1.1 200")
        release.set()
        assert read_response(waiting, bytearray()).endswith(b"held")
        held_connection = server.handlings[0].connection
        assert connection_threads(server) == [f"deproxy-{server.name}-{held_connection}"]
    assert connection_threads(plain) == []


def test_a_request_still_arriving_is_read_by_a_thread(endpoint: EndpointFactory) -> None:
    server = endpoint(handler=handlers.echo)
    body = b"x" * 300_000  # more than one read takes in
    with connected(server) as sock:
        sock.sendall(request("/", body[:10]))  # the head says 10 bytes: then the rest, later
        first = read_response(sock, bytearray())
        sock.sendall(request("/big", body))
        assert read_response(sock, bytearray()).endswith(body)
    assert first.endswith(b"x" * 10)
    assert [len(h.request.raw_body) for h in server.handlings] == [10, len(body)]


def test_a_client_slow_to_read_holds_up_only_its_own_connection(
    endpoint: EndpointFactory,
) -> None:
    body = b"z" * 1_000_000
    server = endpoint(handler=Response(200, body=body))
    count = 30  # 30 MB of answers to small requests: more than the socket buffers hold
    with connected(server) as slow, connected(server) as brisk:
        slow.sendall(b"".join(request(f"/{n}") for n in range(count)))
        for _ in range(3):  # while `slow` reads nothing, `brisk` is answered
            brisk.sendall(request("/brisk"))
            assert read_response(brisk, bytearray()).endswith(body)
        pending = bytearray()
        answers = [read_response(slow, pending) for _ in range(count)]
    assert all(answer.endswith(b"\r\n\r\n" + body) for answer in answers)
    paths = [h.request.path for h in server.handlings if h.request.path != "/brisk"]
    assert paths == [f"/{n}" for n in range(count)]


def test_a_closing_request_is_answered_then_closed(endpoint: EndpointFactory) -> None:
    server = endpoint()
    with connected(server) as sock:
        sock.sendall(request("/", extra="Connection: close\r\n"))
        assert read_response(sock, bytearray()).startswith(b"HTTP/1.1 200")
        assert sock.recv(1) == b""


def test_shutdown_closes_idle_polled_connections(deproxy: Deproxy) -> None:
    server = deproxy.add_endpoint()
    with connected(server) as sock:
        sock.sendall(request("/"))
        read_response(sock, bytearray())
        server.shutdown()
        assert sock.recv(1) == b""
    assert not any(t.name.startswith(f"deproxy-{server.name}") for t in threading.enumerate())


def test_a_polled_connection_reset_by_its_client_is_dropped_and_serving_goes_on(
    deproxy: Deproxy,
) -> None:
    server = deproxy.add_endpoint()
    with connected(server) as sock:
        sock.sendall(request("/"))
        read_response(sock, bytearray())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # The reset reached the poll thread, or it is still on its way: either way it is not a bug.
    chain = deproxy.make_request(server.url)
    assert chain.received_response is not None and chain.received_response.code == "200"
    assert connection_threads(server) == []
    assert deproxy.errors == []
