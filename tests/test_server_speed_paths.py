"""The server's fast paths: a burst of connects is queued and accepted whole, an endpoint costs
one thread (its poll thread is also its watchdog), and handlers marked ``non_blocking`` are
answered on the poll thread while others keep their own threads.

No timings are asserted here (``benchmarks/server_core.py`` measures them)."""

from __future__ import annotations

import resource
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_deproxy import (
    Deproxy,
    Endpoint,
    Request,
    Response,
    faults,
    handlers,
    responding,
    serving,
    wire,
)
from pytest_deproxy.errors import HandlerError
from pytest_deproxy.handlers import HandlerContext

from .conftest import answered, deproxy_checking_its_own_errors, eventually, write_interaction

EndpointFactory = Callable[..., Endpoint]
BURST = 1000


def _somaxconn() -> int:
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return 0


def _accept_queue(port: int) -> int:
    """How many connections wait in the queue of the IPv4 listener on ``port`` (Linux: a
    listening socket's ``rx_queue`` in /proc/net/tcp is its accept queue)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, queues = fields[1], fields[3], fields[4]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            return int(queues.split(":")[1], 16)
    raise AssertionError(f"no listener on port {port} in /proc/net/tcp")


def _threads_of(endpoint: Endpoint) -> list[str]:
    prefix = f"deproxy-{endpoint.name}-"
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(prefix))


@pytest.mark.skipif(_somaxconn() < BURST, reason="the kernel caps listen queues below 1,000")
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="Linux's /proc/net/tcp is needed")
@pytest.mark.skipif(
    resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 3 * BURST, reason="too few file descriptors"
)
def test_a_thousand_simultaneous_connects_are_queued_then_all_answered() -> None:
    """All 1,000 connects wait in the listen queue before the endpoint accepts any (a queue
    of 128 would leave the rest retrying SYNs a second apart), and once it serves, every one
    of them is answered."""
    with Deproxy() as deproxy:
        endpoint = Endpoint(deproxy, name="burst")  # listening, not yet serving
        selector = selectors.DefaultSelector()
        socks: list[socket.socket] = []
        try:
            for _ in range(BURST):
                sock = socket.socket()
                socks.append(sock)
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", endpoint.port))
                selector.register(sock, selectors.EVENT_WRITE)
            connected = 0
            while connected < BURST:
                ready = selector.select(10)
                assert ready, f"{BURST - connected} of {BURST} connects still waiting in 10 s"
                for key, _ in ready:
                    waiting = key.fileobj
                    assert isinstance(waiting, socket.socket)
                    assert waiting.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                    selector.unregister(waiting)
                    connected += 1
            deadline = time.monotonic() + 10  # the last ACKs may still be on their way in
            while (queued := _accept_queue(endpoint.port)) < BURST:
                assert time.monotonic() < deadline, f"only {queued} connects queued, of {BURST}"
                time.sleep(0.01)
            endpoint.start()
            for sock in socks:
                sock.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                selector.register(sock, selectors.EVENT_READ)
            answered = 0
            while answered < BURST:
                ready = selector.select(10)
                assert ready, f"{BURST - answered} of {BURST} connections unanswered in 10 s"
                for key, _ in ready:
                    answering = key.fileobj
                    assert isinstance(answering, socket.socket)
                    assert answering.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
                    selector.unregister(answering)
                    answered += 1
            assert len(endpoint.handlings) == BURST
        finally:
            for sock in socks:
                sock.close()
            selector.close()
            endpoint.shutdown()


def test_an_endpoint_is_one_thread_and_its_poll_thread_is_the_watchdog(
    endpoint: EndpointFactory,
) -> None:
    """No watchdog thread: the poll thread stops a stalled request itself (408)."""
    server = endpoint("lean", request_timeout=0.2)
    assert _threads_of(server) == ["deproxy-lean-poll"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert [t for t in _threads_of(server) if t.endswith("watchdog")] == []


def test_shutdown_of_an_idle_endpoint_leaves_no_thread(deproxy: Deproxy) -> None:
    server = deproxy.add_endpoint(name="idle")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
        server.shutdown()  # with the client's connection still open, idle on the poll thread
        assert sock.recv(65536) == b""
    assert _threads_of(server) == []
    assert [c.closed_by for c in server.connections] == ["shutdown"]


# -- handlers marked non_blocking are answered on the poll thread ---------------------------


def _thread_names_of_calls() -> tuple[list[str], Callable[[Request], Response]]:
    names: list[str] = []

    def answer(request: Request) -> Response:
        names.append(threading.current_thread().name)
        return Response(200, body=request.path)

    return names, answer


def test_a_handler_marked_non_blocking_runs_on_the_poll_thread(deproxy: Deproxy) -> None:
    names, answer = _thread_names_of_calls()
    server = deproxy.add_endpoint(name="marked", default_handler=handlers.non_blocking(answer))
    assert handlers.never_blocks(server.default_handler)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for path in ("/a", "/b"):
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert sock.recv(65536).endswith(path.encode())
    assert names == ["deproxy-marked-poll", "deproxy-marked-poll"]
    assert [h.response.body for h in server.handlings if h.response] == ["/a", "/b"]
    assert _threads_of(server) == ["deproxy-marked-poll"]  # no thread for the connection


def test_an_unmarked_handler_gets_a_thread_of_its_own(deproxy: Deproxy) -> None:
    names, answer = _thread_names_of_calls()
    server = deproxy.add_endpoint(name="plain", default_handler=answer)
    assert not handlers.never_blocks(answer)
    assert deproxy.make_request(server.url + "/a").received_response is not None
    [name] = names
    assert name.startswith("deproxy-plain-conn-")


def test_a_marked_handler_may_take_a_context_and_send_interim_responses(
    deproxy: Deproxy,
) -> None:
    @handlers.non_blocking
    def hinted(request: Request, context: HandlerContext) -> Response:
        context.send_interim(Response(103, headers={"Link": "</a.css>; rel=preload"}))
        context.send_default_headers = False
        return Response(
            200, headers={"Content-Length": "2"}, body=threading.current_thread().name[-4:]
        )

    server = deproxy.add_endpoint(name="hints", default_handler=hinted)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"\r\n\r\npoll"):
            answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
    assert b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\npoll" in answer
    [handling] = server.handlings
    assert [r.status for r in handling.interim_responses] == [103]


def test_a_marked_handler_that_raises_is_reported_like_any_other() -> None:
    @handlers.non_blocking
    def broken(request: Request) -> Response:
        raise KeyError(threading.current_thread().name)

    with deproxy_checking_its_own_errors() as deproxy:
        server = deproxy.add_endpoint(name="broken", default_handler=broken)
        response = answered(deproxy.make_request(server.url))
        assert response.status == 500
        # Run on no thread of its own: the caller's, which serves its endpoints as it waits.
        caller = threading.current_thread().name
        assert f"raised KeyError: '{caller}'" in str(response.body)
        [error] = deproxy.errors
        assert isinstance(error, HandlerError) and isinstance(error.__cause__, KeyError)


def test_a_marked_handler_may_not_wait() -> None:
    @handlers.non_blocking
    def sleepy(request: Request, context: HandlerContext) -> Response:
        context.sleep(0.01)
        return Response(200)

    with deproxy_checking_its_own_errors() as deproxy:
        server = deproxy.add_endpoint(default_handler=sleepy)
        assert answered(deproxy.make_request(server.url)).status == 500
        [error] = deproxy.errors
        assert "context.sleep() in a handler marked non_blocking" in str(error.__cause__)


def test_a_fault_from_a_marked_handler_is_carried_out_on_a_thread(deproxy: Deproxy) -> None:
    names: list[str] = []

    @handlers.non_blocking
    def slow(request: Request, context: HandlerContext) -> faults.Fault:
        names.append(threading.current_thread().name)
        context.send_interim(Response(103))
        return handlers.dribble(Response(200, body="abcd"), pieces=2, seconds=0.01)

    server = deproxy.add_endpoint(name="faulty", default_handler=slow)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"abcd"):
            answer += sock.recv(65536)
        names.append(next(n for n in _threads_of(server) if "-conn-" in n))
    assert answer.startswith(b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert names[0] == "deproxy-faulty-poll" and names[1].startswith("deproxy-faulty-conn-")
    [handling] = server.handlings
    assert handling.response is not None and handling.response.body == "abcd"
    assert [r.status for r in handling.interim_responses] == [103]


def test_a_fault_from_a_marked_function_of_the_request_alone_is_carried_out(
    deproxy: Deproxy,
) -> None:
    # No context is made for a handler that takes none, until its fault needs one.
    @handlers.non_blocking
    def closing(request: Request) -> faults.Fault:
        return handlers.dribble(Response(200, body=request.path), pieces=2, seconds=0.01)

    server = deproxy.add_endpoint(name="plain", default_handler=closing)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /ab HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"/ab"):
            answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    [handling] = server.handlings
    assert handling.response is not None and handling.response.body == "/ab"


def test_a_method_or_builtin_can_be_marked_and_bad_marks_are_refused(deproxy: Deproxy) -> None:
    class Api:
        def answer(self, request: Request) -> Response:
            return Response(200, body=threading.current_thread().name)

    marked = handlers.non_blocking(Api().answer)
    assert handlers.never_blocks(marked)
    server = deproxy.add_endpoint(name="method", default_handler=marked)
    # On no thread of its own: the caller's, which serves its endpoints as it waits.
    assert answered(deproxy.make_request(server.url)).body == threading.current_thread().name
    with pytest.raises(TypeError, match="a canned Response never blocks already"):
        handlers.non_blocking(Response(200))  # type: ignore[type-var]
    with pytest.raises(TypeError, match="non_blocking marks a handler function, not int"):
        handlers.non_blocking(3)  # type: ignore[type-var]


# -- responding.respond gives the answers of as_sent, wire_parts and response_keeps_alive ----

_RESPONSES = [
    Response(200),
    Response(404, body="missing"),
    Response(204),
    Response(304, headers={"ETag": '"x"'}),
    Response(101, headers={"Upgrade": "x", "Connection": "Upgrade"}),
    Response(200, headers={"Content-Length": "3"}, body="abc"),
    Response(200, headers={"Transfer-Encoding": "chunked"}, body="abc"),
    Response(200, headers={"Connection": "close"}, body="bye"),
    Response(200, headers={"Server": "mine", "Date": "then"}, body="x"),
    Response(200, headers={"X-Name": "caf\u00e9 \u2615"}, body="\u2615"),
    Response(200, headers={"Deproxy-Request-ID": "theirs"}),
    Response(299, "", body="no reason"),
    Response(200, http_version="1.0", body="old"),
]
_REQUESTS = [
    Request("GET", "/"),
    Request("HEAD", "/"),
    Request("CONNECT", "h:443"),
    Request("GET", "/", headers={"Connection": "close"}),
    Request("GET", "/", headers={"Connection": "keep-alive, x"}),
    Request("GET", "/", headers={"Deproxy-Request-ID": "abc"}, http_version="1.1"),
    Request("GET", "/", http_version="1.0"),
    Request("GET", "/", headers={"Connection": "Keep-Alive"}, http_version="1.0"),
]


@pytest.mark.parametrize("response", _RESPONSES, ids=lambda r: f"{r.code}-{len(r.headers)}")
@pytest.mark.parametrize("request_", _REQUESTS, ids=lambda r: f"{r.method}-{r.http_version}")
@pytest.mark.parametrize(("defaults", "chunked"), [(True, False), (False, False), (True, True)])
def test_respond_gives_the_answers_of_the_three_functions_it_stands_for(
    response: Response,
    request_: Request,
    defaults: bool,
    chunked: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(responding, "http_date", lambda: "Thu, 03 Dec 2026 10:00:00 GMT")
    before = (response.headers.items(), response.raw_body)
    sent, data, keeps = responding.respond(response, request_, defaults=defaults, chunked=chunked)
    expected = responding.as_sent(response, request_, defaults=defaults, chunked=chunked)
    assert (sent.code, sent.message, sent.http_version) == (
        expected.code,
        expected.message,
        expected.http_version,
    )
    assert sent.headers.items() == expected.headers.items()
    assert sent.trailers == expected.trailers
    assert (sent.body, sent.raw_body) == (expected.body, expected.raw_body)
    assert data == b"".join(responding.wire_parts(expected, request_))
    assert keeps is wire.response_keeps_alive(expected, request_)
    assert (response.headers.items(), response.raw_body) == before  # the handler's is untouched
    assert sent.headers is not response.headers
    sent.headers.add("X-Later", "1")  # the record's copy is its own
    assert "X-Later" not in response.headers


# -- TLS connections are served on the poll thread too ---------------------------------------


def _tls_client(deproxy: Deproxy, server: Endpoint) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return deproxy.ca.client_context().wrap_socket(sock, server_hostname="127.0.0.1")


def _read_answer(sock: socket.socket, ending: bytes) -> bytes:
    answer = bytearray()
    while not answer.endswith(ending):
        chunk = sock.recv(1024 * 1024)
        assert chunk, f"the connection closed after {bytes(answer[-200:])!r}"
        answer += chunk
    return bytes(answer)


def test_tls_handshakes_and_requests_are_served_on_the_poll_thread(deproxy: Deproxy) -> None:
    @handlers.non_blocking
    def where(request: Request) -> Response:
        return Response(200, body=threading.current_thread().name + request.path)

    server = deproxy.add_endpoint(name="tls-polled", tls=True, default_handler=where)
    with _tls_client(deproxy, server) as sock:
        # Pipelined: the second request may be held decrypted by TLS, not in the socket.
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = _read_answer(sock, b"deproxy-tls-polled-poll/b")
        assert b"deproxy-tls-polled-poll/a" in answer
        assert _threads_of(server) == ["deproxy-tls-polled-poll"]
    [record] = server.connections
    assert record.tls is not None and record.tls.version is not None
    assert record.tls.sni is None  # an address, not a name, was asked for
    assert b"GET /a" in bytes(record.incoming)  # the transcript holds the plaintext


def test_a_tls_client_that_reads_slowly_gets_the_whole_answer_from_a_thread(
    deproxy: Deproxy,
) -> None:
    body = bytes(range(256)) * (64 * 1024)  # 16 MiB: more than the socket takes at once
    server = deproxy.add_endpoint(
        name="tls-big", tls=True, default_handler=Response(200, body=body)
    )
    with _tls_client(deproxy, server) as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        eventually(lambda: any("-conn-" in name for name in _threads_of(server)))
        answer = _read_answer(tls, body[-64:])
    head, _, received = answer.partition(b"\r\n\r\n")
    assert received == body and b"Content-Length: 16777216" in head


def test_a_stalled_tls_handshake_on_the_poll_thread_is_timed_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(serving, "TLS_HANDSHAKE_TIMEOUT", 0.3)
    with deproxy_checking_its_own_errors() as deproxy:
        server = deproxy.add_endpoint(name="tls-stalled", tls=True, request_timeout=None)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, then nothing
            assert sock.recv(65536) == b""  # closed by the endpoint
        eventually(lambda: len(server.errors) == 1)
        [error] = server.errors
        assert "timed out in the TLS handshake with 127.0.0.1:" in str(error)
        assert [c.closed_by for c in server.connections] == ["endpoint"]
        with _tls_client(deproxy, server) as tls:  # and the endpoint goes on serving
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert tls.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")


# -- the MITM replays on its poll thread, and forwards from threads --------------------------


def test_the_mitm_replays_on_its_poll_thread_and_records_from_a_thread(
    deproxy: Deproxy, tmp_path: Path
) -> None:
    names: list[str] = []
    upstream = deproxy.add_endpoint(name="upstream", default_handler=Response(200, body="live"))
    write_interaction(
        tmp_path, "default", "Api", "interaction_0", url="http://api.test/a", body="a"
    )
    services = [{"type": "BaseService", "name": "Api", "hosts_list": ["api.test"]}]
    mitm = deproxy.add_mitm_endpoint(
        name="mitm-speed",
        scenarios_path=tmp_path,
        services=services,
        upstreams={"api.test": upstream.url},
    )
    with socket.create_connection(("127.0.0.1", mitm.port), timeout=10) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: api.test\r\n\r\n")
        assert _read_answer(sock, b"\r\n\r\na").startswith(b"HTTP/1.1 200 OK\r\n")
        names.append(",".join(_threads_of(mitm)))
        mitm.assert_interaction_used("Api", "interaction_0", times=1)
        mitm.set_recording(True)
        sock.sendall(b"GET /b HTTP/1.1\r\nHost: api.test\r\n\r\n")  # recorded from upstream
        assert _read_answer(sock, b"\r\n\r\nlive").startswith(b"HTTP/1.1 200 OK\r\n")
        names.append(",".join(_threads_of(mitm)))
    assert names[0] == "deproxy-mitm-speed-poll"  # the replay took no thread
    assert "deproxy-mitm-speed-conn-" in names[1]  # forwarding did
    assert (tmp_path / "default" / "Api" / "interaction_1.yaml").exists()
