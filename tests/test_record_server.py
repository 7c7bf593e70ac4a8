"""The record is the truth, endpoint side, through the public surface: requests reach their
handlers however unusual they are, and are kept as they came (``handling.raw``, the headers as
received); refusals are recorded; late traffic joins its own chain; each connection's record
(peer, times, who closed it, every byte both ways, TLS facts, PROXY header); interim responses
on both sides of the chain."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable

import pytest

from pytest_deproxy import Deproxy, Endpoint, HandlerContext, Request, Response, handlers

from .conftest import deproxy_checking_its_own_errors, eventually

EndpointFactory = Callable[..., Endpoint]
TRACKED = b"Deproxy-Request-ID: {request_id}\r\n"


def exchange(port: int, data: bytes, *, close: str = "fin") -> bytes:
    """Send ``data`` on a fresh connection, read one response (up to the empty line and a
    Content-Length body), then close: ``"fin"`` (orderly) or ``"rst"`` (a reset)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                return answer
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(body) < length and (chunk := sock.recv(65536)):
            body += chunk
            answer += chunk
        if close == "rst":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return answer


# -- requests as they came ------------------------------------------------------------------


def test_a_request_without_host_reaches_its_handler(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        return Response(200, body="no host, no problem")

    server = endpoint("server", handler)
    data = b"GET /nohost HTTP/1.0\r\n" + TRACKED + b"\r\n"
    chain = deproxy.make_raw_request(server.url, data)

    assert chain.received_response is not None, chain.diagram()
    assert chain.received_response.body == "no host, no problem"
    (handling,) = chain.handlings
    assert seen == [handling.request]
    assert "Host" not in handling.request.headers
    assert handling.request.http_version == "1.0"
    assert handling.raw == chain.sent_bytes
    assert handling.action is None and handling.done


@pytest.mark.parametrize(
    ("fields", "body", "payload"),
    [
        (b"Content-Length: 5\r\ncontent-length: 5\r\n", b"hello", "hello"),
        (b"Transfer-Encoding: Chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n", "hello"),
        (b"X-Fold: a\r\n  b\r\nContent-Length: 2\r\n", b"ok", "ok"),
    ],
    ids=["two-content-lengths", "Chunked", "obs-fold"],
)
def test_odd_framing_is_kept_as_received(
    deproxy: Deproxy, endpoint: EndpointFactory, fields: bytes, body: bytes, payload: str
) -> None:
    server = endpoint("server", handlers.simple)
    data = b"POST /odd HTTP/1.1\r\nHost: x\r\n" + TRACKED + fields + b"\r\n" + body
    chain = deproxy.make_raw_request(server.url, data)

    assert chain.received_response is not None, chain.diagram()
    assert chain.received_response.code == "200"
    (handling,) = chain.handlings
    assert handling.raw == chain.sent_bytes
    assert handling.request.body == payload
    received = handling.request.headers.items()
    sent_fields = [
        tuple(part.strip() for part in line.split(":", 1))
        for line in fields.decode().split("\r\n")
        if line and not line.startswith(" ")
    ]
    names = [name for name, _ in received]
    assert names == ["Host", "Deproxy-Request-ID", *(name for name, _ in sent_fields)]
    if b"Chunked" in fields:
        assert received[-1] == ("Transfer-Encoding", "Chunked")
    if b"ontent-length" in fields:
        assert received[-2:] == [("Content-Length", "5"), ("content-length", "5")]
    assert server.connections[-1].received == chain.sent_bytes


def test_conflicting_content_lengths_are_answered_400_and_recorded(
    deproxy_checking: Deproxy,
) -> None:
    server = deproxy_checking.add_endpoint(name="server")
    data = (
        b"POST /x HTTP/1.1\r\nHost: x\r\n"
        + TRACKED
        + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
    )
    chain = deproxy_checking.make_raw_request(server.url, data)

    assert chain.received_response is not None, chain.diagram()
    assert chain.received_response.code == "400"
    (handling,) = chain.handlings
    assert handling.done
    assert handling.response is not None and handling.response.code == "400"
    assert handling.action is not None and "refused" in handling.action
    assert "Content-Length" in handling.action
    assert chain.sent_bytes is not None and chain.sent_bytes.startswith(handling.raw)
    assert handling.raw.endswith(b"\r\n\r\n")  # the head: the body could not be framed
    assert server.connections[-1].closed_by == "endpoint"


@pytest.fixture
def deproxy_checking() -> Deproxy:  # type: ignore[misc]
    with deproxy_checking_its_own_errors() as deproxy:
        yield deproxy


# -- late traffic ---------------------------------------------------------------------------


def test_a_late_tracked_request_joins_its_own_chain_not_another_chains_orphans(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    """Chain A's client gives up; the front endpoint's handler goes on, and while chain B is
    in flight it forwards A's request (with A's tracking id) to the back endpoint."""
    b_in_flight = threading.Event()
    back_reached = threading.Event()

    def reached(request: Request) -> Response:
        back_reached.set()
        return Response(200)

    back = endpoint("back", reached)
    forward = handlers.route(back.url)

    def front_handler(request: Request, context: HandlerContext) -> Response:
        b_in_flight.wait(10)
        return forward(request, context)

    def b_handler(request: Request) -> Response:
        b_in_flight.set()
        back_reached.wait(10)
        return Response(200)

    front = endpoint("front", front_handler)
    other = endpoint("other", b_handler)

    chain_a = deproxy.make_request(front.url + "/a", timeout=0.3)
    assert chain_a.received_response is None and chain_a.error is not None
    chain_b = deproxy.make_request(other.url + "/b")

    assert back_reached.is_set()
    chain_a.wait(handlings=2)
    assert [h.endpoint.name for h in chain_a.handlings] == ["front", "back"]
    assert chain_a.handlings[1].request_id == chain_a.request_id
    assert [h.endpoint.name for h in chain_b.handlings] == ["other"]
    assert chain_b.orphaned_handlings == []


# -- connections ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "close", "closed_by"),
    [
        (b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", "fin", "client"),
        (b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "fin", "endpoint"),
        (b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n", "rst", "reset"),
    ],
    ids=["client", "endpoint", "reset"],
)
def test_a_connection_record_says_who_closed_and_holds_every_byte(
    deproxy: Deproxy, endpoint: EndpointFactory, request_bytes: bytes, close: str, closed_by: str
) -> None:
    server = endpoint("server", Response(200, body="hi"))
    before = time.time()
    answer = exchange(server.port, request_bytes, close=close)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")

    (record,) = server.connections
    if closed_by != "endpoint":  # the endpoint learns of the client's close a little later
        eventually(lambda: record.closed_at is not None)
    assert record.closed_by == closed_by  # the endpoint's own close is noted before it answers
    assert record.received == request_bytes
    assert record.sent == answer
    host, _, port = record.peer.rpartition(":")
    assert host == "127.0.0.1" and port.isdigit()
    assert before <= record.opened_at <= record.closed_at  # type: ignore[operator]
    (handling,) = record.handlings
    assert handling.connection == record.id
    assert handling.raw == request_bytes


def test_tls_facts_are_on_the_connection_record(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint("secure", tls=True)
    context = deproxy.ca.client_context()
    data = b"GET /tls HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        version, cipher = tls.version(), tls.cipher()
        tls.sendall(data)
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk

    (record,) = server.connections
    assert record.tls is not None
    assert record.tls.sni == "localhost"
    assert record.tls.version == version
    assert cipher is not None and record.tls.cipher == cipher[0]
    assert record.tls.client_certificate is None
    assert record.received == data  # TLS removed
    assert record.sent == answer
    eventually(lambda: record.closed_by is not None)
    assert record.closed_by == "endpoint"


def test_a_proxy_header_sent_with_the_request_in_one_segment(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    """haproxy's send-proxy writes the header and the request in one go: the endpoint must
    take the header and leave the request whole (it read the request into the header)."""
    server = endpoint("behind-haproxy", proxy_protocol=True)
    request = b"GET /pp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    header = b"PROXY TCP4 192.0.2.1 127.0.0.1 4242 80\r\n"
    answer = exchange(server.port, header + request)

    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    (record,) = server.connections
    assert record.proxy_protocol is not None
    assert record.proxy_protocol.source == "192.0.2.1:4242"
    assert record.received == header + request
    assert [h.raw for h in record.handlings] == [request]


# -- interim responses ------------------------------------------------------------------------


def test_send_interim_reaches_the_chain_and_the_handling(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    hints = {"Link": "</style.css>; rel=preload"}

    def early_hints(request: Request, context: HandlerContext) -> Response:
        context.send_interim(Response(103, headers=hints))
        return Response(200, body="page")

    server = endpoint("server", early_hints)
    chain = deproxy.make_request(server.url)

    assert chain.received_response is not None and chain.received_response.body == "page"
    assert [(r.code, r.headers["Link"]) for r in chain.interim_responses] == [
        ("103", hints["Link"])
    ]
    (handling,) = chain.handlings
    assert [(r.code, r.headers["Link"]) for r in handling.interim_responses] == [
        ("103", hints["Link"])
    ]
    assert server.connections[0].sent.startswith(b"HTTP/1.1 103 Early Hints\r\n")


def test_expect_100_continue_is_recorded_as_an_interim_100(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint("server", handlers.echo)
    chain = deproxy.make_request(server.url, "PUT", request_body="the body", expect_continue=True)

    assert chain.received_response is not None and chain.received_response.body == "the body"
    assert not chain.body_withheld
    assert [r.code for r in chain.interim_responses] == ["100"]
    (handling,) = chain.handlings
    assert [r.code for r in handling.interim_responses] == ["100"]
    assert handling.request.headers["Expect"] == "100-continue"
    assert handling.raw.endswith(b"\r\n\r\nthe body")


def test_a_reset_by_the_endpoint_is_on_the_record_before_the_client_meets_it(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    """A client (a proxy) that met the reset looks at the record at once: it says closed."""
    server = endpoint("server", handlers.reset)
    for attempt in range(30):
        chain = deproxy.make_request(server.url)
        assert chain.received_response is None and chain.error is not None
        record = server.connections[attempt]
        assert (record.id, record.closed_by) == (chain.handlings[0].connection, "endpoint")
        assert record.closed_at is not None


def slow_path(request: Request, context: HandlerContext) -> Response:
    return Response(200, body="hi")  # a handler that may wait: served on its own thread


@pytest.mark.parametrize(
    ("handler", "request_bytes", "status"),
    [
        (Response(200, body="hi"), b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200),
        (slow_path, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200),
        (
            Response(200),
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            400,
        ),
    ],
    ids=["polled", "threaded", "refused"],
)
def test_the_connection_record_is_complete_when_the_client_has_the_answer(
    deproxy_checking: Deproxy, handler: handlers.Handler, request_bytes: bytes, status: int
) -> None:
    """What the endpoint sent, and that it closed, are on the record before the client can
    read the answer: a test that looks right after its request returns finds them."""
    server = deproxy_checking.add_endpoint(name="server", default_handler=handler)
    for attempt in range(20):
        answer = exchange(server.port, request_bytes)
        assert answer.startswith(b"HTTP/1.1 %d " % status)
        record = server.connections[attempt]
        assert (record.closed_by, record.sent) == ("endpoint", answer)


def test_an_answer_the_client_reads_slowly_is_on_the_record_once(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    """A canned answer too big for the socket to take at once: the poll thread writes what it
    can and a thread writes the rest; the record counts every byte once, in order."""
    body = bytes(range(256)) * (48 * 1024)  # 12 MiB: more than the kernel buffers at once
    server = endpoint("server", Response(200, headers={"Content-Type": "x/y"}, body=body))
    request_bytes = b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request_bytes)
        answer = bytearray()
        while chunk := sock.recv(1 << 20):
            answer += chunk
    assert answer.endswith(body)
    (record,) = server.connections
    kept = len(record.sent)  # the transcript keeps the first TRANSCRIPT_LIMIT bytes
    assert kept < len(answer)
    assert record.sent == answer[:kept]
    assert record.outgoing.dropped == len(answer) - kept
    assert record.received == request_bytes
