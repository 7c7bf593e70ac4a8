"""Shutdown and slow peers (issue 11): shutdown wakes every thread at once, whatever it waits
on, and reports one that will not stop; a stalled TLS request gets its 408 inside TLS; a
request body over the endpoint's limit is answered 413 without being held in memory."""

from __future__ import annotations

import os
import socket
import ssl
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_deproxy import CertificateAuthority, Deproxy, DeproxyError, Response, handlers, serving
from pytest_deproxy.handlers import HandlerContext
from pytest_deproxy.models import Request

from .conftest import eventually

N_STALLED = 200
MiB = 1024 * 1024


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def threads_of(deproxy: Deproxy) -> list[threading.Thread]:
    prefixes = tuple(f"deproxy-{endpoint.name}-" for endpoint in deproxy.endpoints)
    return [t for t in threading.enumerate() if t.name.startswith(prefixes)]


def connection_threads(deproxy: Deproxy) -> list[threading.Thread]:
    return [t for t in threads_of(deproxy) if "-conn-" in t.name]


@pytest.fixture
def fresh(deproxy_ca: CertificateAuthority) -> Iterator[Deproxy]:
    """A Deproxy the test shuts down itself (and then checks); shut down again at the end."""
    deproxy = Deproxy(ca=deproxy_ca)
    yield deproxy
    deproxy.shutdown()


@pytest.fixture
def clients() -> Iterator[list[socket.socket]]:
    """Client sockets the test opens; closed at the end."""
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def assert_stopped_cleanly(deproxy: Deproxy) -> None:
    """Every thread gone when shutdown() returned, and no wait for one gave up."""
    assert threads_of(deproxy) == []
    assert [e for e in deproxy.errors if "did not stop" in str(e)] == []


# -- 1. a stalled TLS handshake, and every other wait, is woken by shutdown ---------------

HALF_A_CLIENT_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(20)


@pytest.mark.parametrize("sent", [b"", HALF_A_CLIENT_HELLO], ids=["silent", "half-hello"])
def test_shutdown_wakes_every_stalled_tls_handshake(
    fresh: Deproxy,
    clients: list[socket.socket],
    monkeypatch: pytest.MonkeyPatch,
    sent: bytes,
) -> None:
    # Far longer than the test may run: only shutdown can end these handshakes.
    monkeypatch.setattr(serving, "TLS_HANDSHAKE_TIMEOUT", 600.0)
    before = open_fds()
    server = fresh.add_endpoint(tls=True, name="stalled-tls")
    for _ in range(N_STALLED):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(sent)
        clients.append(sock)
    # The handshakes wait on the poll thread (a thread each, before it ran them there).
    eventually(lambda: len(server.connections) == N_STALLED, seconds=30)

    fresh.shutdown()

    assert_stopped_cleanly(fresh)
    for sock in clients:
        sock.close()
    assert open_fds() <= before


def test_shutdown_wakes_stalled_handshakes_in_mitm_tunnels(
    fresh: Deproxy,
    clients: list[socket.socket],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(serving, "TLS_HANDSHAKE_TIMEOUT", 600.0)
    mitm = fresh.add_mitm_endpoint(scenarios_path=tmp_path, name="stalled-mitm")
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", mitm.port), timeout=10)
        sock.sendall(b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")  # then no ClientHello comes
        clients.append(sock)

    fresh.shutdown()

    assert_stopped_cleanly(fresh)


GET = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"


def test_shutdown_wakes_every_kind_of_wait_at_once(
    fresh: Deproxy, clients: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocked reading a half-sent request, writing to a client that does not read (plain and
    TLS, on the poll thread's hand-over and on a thread of its own), in a handshake, sleeping
    in a handler, and forwarding to an endpoint that hangs."""
    monkeypatch.setattr(serving, "TLS_HANDSHAKE_TIMEOUT", 600.0)
    big = Response(200, body=b"x" * (16 * MiB))

    def big_from_a_thread(request: Request) -> Response:
        return big

    def sleeping(request: Request, context: HandlerContext) -> Response:
        context.sleep(None)
        return Response(200)

    front = fresh.add_endpoint(name="front")  # made first: stopped one by one, it came first
    hanging = fresh.add_endpoint(name="hanging", default_handler=handlers.hang)
    front.default_handler = handlers.route(hanging.url, timeout=600)
    waits: dict[str, tuple[handlers.Handler, bool, bytes]] = {  # name: (handler, TLS, sent)
        "reading": (
            handlers.simple,
            False,
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nabc",
        ),
        "writing-polled": (big, False, GET),
        "writing": (big_from_a_thread, False, GET),
        "sleeping": (sleeping, False, GET),
        "writing-tls": (big_from_a_thread, True, GET),
        "sleeping-tls": (sleeping, True, GET),
        "handshaking": (handlers.simple, False, b""),  # TLS, but the client never starts it
    }
    for name, (handler, tls, data) in waits.items():
        server = fresh.add_endpoint(
            name=name, default_handler=handler, tls=tls or name == "handshaking"
        )
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # takes little of an answer
        if tls:
            sock = fresh.ca.client_context().wrap_socket(sock, server_hostname="127.0.0.1")
        sock.sendall(data)
        clients.append(sock)
    for _ in range(2):
        clients.append(socket.create_connection(("127.0.0.1", front.port), timeout=10))
        clients[-1].sendall(GET)
    eventually(lambda: len(hanging.handlings) == 2)
    # Each wait but "handshaking" (on the poll thread) holds a thread, and so do the 4 routes.
    eventually(lambda: len(connection_threads(fresh)) == len(waits) - 1 + 4)
    eventually(lambda: len(fresh.endpoints[-1].connections) == 1)  # the handshaking one

    fresh.shutdown()

    assert_stopped_cleanly(fresh)
    assert fresh.errors == []


# -- 2. endpoints stop together; a thread that will not stop is reported -----------------


def test_a_route_in_front_of_a_hanging_endpoint_does_not_hold_up_shutdown(
    fresh: Deproxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stopped one by one, each forwarding thread would be waited for this long in turn.
    monkeypatch.setattr(serving, "JOIN_TIMEOUT", 30.0)
    front = fresh.add_endpoint(name="route-front")
    hanging = fresh.add_endpoint(name="route-back", default_handler=handlers.hang)
    front.default_handler = handlers.route(hanging.url, timeout=600)
    callers = [
        threading.Thread(target=fresh.make_request, args=(front.url,), kwargs={"timeout": 60})
        for _ in range(3)
    ]
    for caller in callers:
        caller.start()
    eventually(lambda: len(hanging.handlings) == 3)

    fresh.shutdown()

    assert_stopped_cleanly(fresh)
    for caller in callers:
        caller.join(30)


def test_a_thread_that_does_not_stop_is_reported(
    fresh: Deproxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serving, "JOIN_TIMEOUT", 0.3)
    release, entered = threading.Event(), threading.Event()

    def unwakeable(request: Request) -> Response:
        entered.set()
        release.wait(30)  # not context.sleep(): shutdown cannot wake this
        return Response(200)

    server = fresh.add_endpoint(name="stubborn", default_handler=unwakeable)
    caller = threading.Thread(target=fresh.make_request, args=(server.url,))
    caller.start()
    # the handler running, not its thread merely started: a thread that has not begun when
    # shutdown looks ends as it begins, and rightly goes unreported
    assert entered.wait(30)
    (stuck,) = connection_threads(fresh)

    fresh.shutdown()
    fresh.shutdown()  # reported once, not once a call

    try:
        (error,) = fresh.errors
        assert isinstance(error, DeproxyError)
        assert str(error).startswith(
            f"thread {stuck.name} of endpoint 'stubborn' did not stop within 0.3 s"
        )
        assert "context.sleep()" in str(error)
        assert server.errors == [error]
    finally:
        release.set()
        stuck.join(30)
        caller.join(30)


def test_the_fixture_fails_a_test_whose_thread_does_not_stop(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time
        from pytest_deproxy import Response, serving

        def slow(request):
            time.sleep(1)  # not context.sleep(): shutdown cannot wake this
            return Response(200)

        def test_leaves_a_thread_behind(monkeypatch, deproxy, endpoint):  # patched first, undone last
            monkeypatch.setattr(serving, "JOIN_TIMEOUT", 0.1)
            server = endpoint("sleepy", slow)
            deproxy.make_request(server.url, timeout=0.2)
        """
    )
    result = pytester.runpytest_subprocess()  # the thread left behind dies with it
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*of endpoint 'sleepy' did not stop within 0.1 s*"])


# -- 3. a stalled request on a TLS connection gets its 408 inside TLS ---------------------


def read_all_tls(sock: ssl.SSLSocket) -> bytes:
    answer = b""
    while True:
        try:
            data = sock.recv(65536)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return answer
        if not data:
            return answer
        answer += data


@pytest.mark.parametrize(
    "sent",
    [
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: ",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc",
    ],
    ids=["half-a-head", "half-a-body"],
)
def test_a_stalled_tls_request_gets_a_408_inside_tls(deproxy: Deproxy, sent: bytes) -> None:
    server = deproxy.add_endpoint(tls=True, request_timeout=0.3)
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    with deproxy.ca.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(sent)
        answer = read_all_tls(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert f"Content-Length: {len(body)}".encode() in head
    assert b"no progress for 0.3 s" in body
    eventually(lambda: server.errors)
    assert "answered 408" in str(server.errors[0])
    assert deproxy.make_request(server.url).received_response is not None  # still serving


# -- 4. a body over max_body_size is refused with a 413, not held in memory ---------------


def chunked(piece: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(piece), piece)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_over_the_limit_gets_413_and_costs_no_memory(deproxy: Deproxy, framing: str) -> None:
    size, limit = 64 * MiB, MiB
    server = deproxy.add_endpoint(max_body_size=limit)
    framed = (
        f"Content-Length: {size}" if framing == "content-length" else "Transfer-Encoding: chunked"
    )
    head = f"POST /upload HTTP/1.1\r\nHost: h\r\n{framed}\r\n\r\n".encode()
    piece = b"x" * MiB
    if framing == "chunked":
        piece = chunked(piece)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)

    def send() -> None:
        try:
            sock.sendall(head)
            for _ in range(size // MiB):
                sock.sendall(piece)
            if framing == "chunked":
                sock.sendall(b"0\r\n\r\n")
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the endpoint stopped reading first: the 413 is what is checked
            pass

    tracemalloc.start()
    try:
        sender = threading.Thread(target=send)
        sender.start()
        answer = b""
        while data := sock.recv(65536):
            answer += data
        sender.join(30)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        sock.close()

    assert answer.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n")
    assert b"max_body_size of 1048576 bytes" in answer
    assert b"Connection: close" in answer
    assert peak < size / 8, f"{peak} bytes allocated at the peak for a {size}-byte body"
    (handling,) = server.handlings
    assert handling.request.path == "/upload"
    assert handling.request.raw_body == b""
    assert handling.response is not None and handling.response.code == "413"
    assert handling.action is not None and handling.action.startswith("refused: the request body")
    assert [getattr(e, "status_hint", None) for e in server.errors] == [413]


def test_a_refused_body_is_in_the_chain_and_a_client_reads_the_413(deproxy: Deproxy) -> None:
    server = deproxy.add_endpoint(max_body_size=1000)
    chain = deproxy.make_request(server.url, "POST", request_body=b"y" * (4 * MiB))
    assert chain.received_response is not None, chain.error
    assert chain.received_response.code == "413"
    (handling,) = chain.handlings
    assert handling.response is not None and handling.response.code == "413"
    assert handling.request.headers["Content-Length"] == str(4 * MiB)
    fits = deproxy.make_request(server.url, "POST", request_body=b"y" * 1000)
    assert fits.received_response is not None and fits.received_response.code == "200"


@pytest.mark.parametrize(
    "request_bytes",
    [
        # whole in one packet: the poll thread has it all, and must still refuse it
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789",
        # a client that waits for 100 Continue is refused before sending its body
        b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
        # chunks that add up to more than the limit
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n",
    ],
    ids=["buffered", "expect-100", "chunked"],
)
def test_a_small_limit_is_kept_on_every_path(deproxy: Deproxy, request_bytes: bytes) -> None:
    server = deproxy.add_endpoint(max_body_size=4)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_bytes)
        answer = b""
        while data := sock.recv(65536):
            answer += data
    assert answer.startswith(b"HTTP/1.1 413 ")  # no 100 Continue before it
    assert [h.response.code for h in server.handlings if h.response] == ["413"]


@pytest.mark.parametrize(
    ("value", "error"),
    [("1MiB", TypeError), (1.5, TypeError), (True, TypeError), (-1, ValueError)],
)
def test_a_bad_max_body_size_says_what_it_takes(
    deproxy: Deproxy, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match="max_body_size is a number of bytes"):
        deproxy.add_endpoint(max_body_size=value)  # type: ignore[arg-type]


def test_no_limit_is_kept_when_asked(deproxy: Deproxy) -> None:
    server = deproxy.add_endpoint(max_body_size=None, default_handler=handlers.echo)
    chain = deproxy.make_request(server.url, "POST", request_body=b"z" * (2 * MiB))
    assert chain.received_response is not None
    assert len(chain.received_response.raw_body) == 2 * MiB
