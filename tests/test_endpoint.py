"""Endpoints: listening, keep-alive, connection ids, handler forms and default headers."""

from __future__ import annotations

import gzip
import socket
import threading
import zlib
from collections.abc import Callable

import pytest

from pytest_deproxy import (
    TRACKING_HEADER,
    Deproxy,
    Endpoint,
    HandlerContext,
    HandlerError,
    NetworkError,
    Request,
    Response,
    handlers,
)

from .conftest import deproxy_checking_its_own_errors, send_raw

EndpointFactory = Callable[..., Endpoint]


def test_port_zero_takes_a_free_port_and_url_names_it(endpoint: EndpointFactory) -> None:
    first, second = endpoint(), endpoint()
    assert first.port != second.port
    assert first.url == f"http://127.0.0.1:{first.port}"
    assert first.name != second.name
    assert first.name.startswith("Endpoint-")


def test_binding_a_port_in_use_names_the_port(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    taken = endpoint()
    with pytest.raises(NetworkError, match=f"127.0.0.1:{taken.port}.*already in use.*port=0"):
        deproxy.add_endpoint(port=taken.port)


def test_endpoints_are_listed_and_named(deproxy: Deproxy) -> None:
    server = deproxy.add_endpoint(name="backend")
    assert deproxy.endpoints == [server]
    assert server.name == "backend"
    assert server.hostname == "127.0.0.1"
    assert server.tls is False


def test_http11_connection_stays_open_until_close(endpoint: EndpointFactory) -> None:
    server = endpoint()
    answer = send_raw(
        server.port,
        b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
        b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\n"
        b"GET /3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        b"GET /4 HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    handlings = server.handlings
    assert [h.request.path for h in handlings] == ["/1", "/2", "/3"]
    assert len({h.connection for h in handlings}) == 1


def test_http10_closes_unless_keep_alive_is_asked(endpoint: EndpointFactory) -> None:
    server = endpoint()
    closed = send_raw(server.port, b"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n")
    assert closed.count(b" 200 OK") == 1
    kept = send_raw(
        server.port,
        b"GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        b"GET /d HTTP/1.0\r\n\r\n"
        b"GET /e HTTP/1.0\r\n\r\n",
    )
    assert kept.count(b" 200 OK") == 2
    assert b"Connection: keep-alive" in kept
    assert [h.request.path for h in server.handlings] == ["/a", "/c", "/d"]


def test_each_connection_has_its_own_id(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint()
    ids = {deproxy.make_request(server.url).handlings[0].connection for _ in range(3)}
    assert len(ids) == 3


def test_handler_forms_and_context(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    seen: list[HandlerContext] = []

    def two_arguments(request: Request, context: HandlerContext) -> Response:
        seen.append(context)
        return Response(606, "Spoiler", {"X-Form": "two"}, "Snape kills Dumbledore")

    server = endpoint(handler=two_arguments)
    chain = deproxy.make_request(server.url)
    assert len(chain.handlings) == 1
    assert chain.received_response is not None
    assert chain.received_response.code == chain.handlings[0].response.code == "606"  # type: ignore[union-attr]
    assert chain.received_response.message == "Spoiler"
    assert seen[0].endpoint is server
    assert seen[0].connection == chain.handlings[0].connection

    canned = Response(201, headers={"X-Canned": "yes"}, body="made")
    for _ in range(2):  # a canned Response is never changed by being sent
        chain = deproxy.make_request(server.url, default_handler=canned)
        assert chain.received_response is not None
        assert chain.received_response.headers["X-Canned"] == "yes"
    assert "Server" not in canned.headers

    chain = deproxy.make_request(server.url, default_handler=lambda request: Response(202))
    assert chain.received_response is not None and chain.received_response.code == "202"


def test_default_headers_added_only_when_absent(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint(handler=Response(200, headers={"Server": "mine"}, body="12345"))
    response = deproxy.make_request(server.url).received_response
    assert response is not None
    assert response.headers.get_all("Server") == ["mine"]
    assert "Date" in response.headers
    assert response.headers["Content-Length"] == "5"


def test_context_turns_default_headers_off(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    def bare(request: Request, context: HandlerContext) -> Response:
        context.send_default_headers = False
        return Response(200, headers={"Content-Length": "2"}, body="ok")

    chain = deproxy.make_request(endpoint(handler=bare).url)
    sent = chain.handlings[0].response
    assert sent is not None
    assert [name for name, _ in sent.headers.items()] == ["Content-Length", TRACKING_HEADER]
    assert chain.received_response is not None and chain.received_response.body == "ok"


def test_context_asks_for_chunked_framing(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    def chunked(request: Request, context: HandlerContext) -> Response:
        context.chunked = True
        return Response(200, body="in chunks")

    server = endpoint(handler=chunked)
    response = deproxy.make_request(server.url).received_response
    assert response is not None
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in response.headers
    assert response.body == "in chunks"
    raw = send_raw(server.port, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert raw.endswith(b"\r\n\r\n9\r\nin chunks\r\n0\r\n\r\n")


def test_tracking_id_is_echoed(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    chain = deproxy.make_request(endpoint().url)
    assert chain.received_response is not None
    assert chain.received_response.headers[TRACKING_HEADER] == chain.request_id


@pytest.mark.parametrize(("method", "code"), [("HEAD", 200), ("GET", 204), ("GET", 304)])
def test_no_body_for_head_204_304(endpoint: EndpointFactory, method: str, code: int) -> None:
    server = endpoint(handler=Response(code, body="never sent"))
    raw = send_raw(
        server.port, f"{method} / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode()
    )
    assert raw.endswith(b"\r\n\r\n")
    assert b"never sent" not in raw
    if code != 200:
        assert b"Content-Length" not in raw


def test_head_keeps_the_connection_usable(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint(handler=Response(200, body="body"))
    with deproxy.connect(server.url) as connection:
        head = deproxy.make_request(server.url, "HEAD", connection=connection)
        get = deproxy.make_request(server.url, connection=connection)
    assert head.received_response is not None and head.received_response.body == ""
    assert head.received_response.headers["Content-Length"] == "4"
    assert get.received_response is not None and get.received_response.body == "body"


@pytest.mark.parametrize(
    "handler",
    [handlers.simple, Response(200, body="canned"), lambda request: Response(200, body="own")],
    ids=["stock", "canned", "custom"],
)
def test_an_answer_to_connection_close_says_it_closes(
    endpoint: EndpointFactory, handler: object
) -> None:
    """RFC 9112 9.6: the answer to a request with the close option says it closes. The
    same answer without it comes first, as under load, where the endpoint reuses a head."""
    server = endpoint(handler=handler)
    answer = send_raw(
        server.port,
        b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    first, second = answer.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert b"\r\nConnection:" not in b"\r\n" + first.split(b"\r\n\r\n")[0]
    assert b"\r\nConnection: close\r\n" in b"\r\n" + second
    _, second_handling = server.handlings
    assert second_handling.response is not None
    assert second_handling.response.headers["Connection"] == "close"
    assert server.connections[0].closed_by == "endpoint"


def test_expect_100_continue(endpoint: EndpointFactory) -> None:
    server = endpoint(handler=handlers.echo)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n"
            b"Connection: close\r\n\r\n"
        )
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"data")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert answer.endswith(b"data")


def test_a_raising_handler_answers_500_and_is_recorded(endpoint: EndpointFactory) -> None:
    def broken(request: Request) -> Response:
        raise RuntimeError("the database is on fire")

    with deproxy_checking_its_own_errors() as own:
        server = own.add_endpoint(default_handler=broken)
        chain = own.make_request(server.url)
    assert chain.received_response is not None
    assert chain.received_response.code == "500"
    assert "RuntimeError: the database is on fire" in str(chain.received_response.body)
    assert len(chain.handlings) == 1
    assert [str(error) for error in own.errors] == [
        f"handler of endpoint {server.name!r} raised RuntimeError: the database is on fire"
    ]
    assert isinstance(own.errors[0], AssertionError)


def test_a_handler_returning_the_wrong_type_is_a_handler_error() -> None:
    with deproxy_checking_its_own_errors() as own:
        server = own.add_endpoint(default_handler=lambda request: "not a response")
        chain = own.make_request(server.url)
    assert chain.received_response is not None and chain.received_response.code == "500"
    assert "must return a Response" in str(own.errors[0])


def test_bodies_are_decoded_from_chunks_and_gzip_and_deflate(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    gz = Response(200, headers={"Content-Encoding": "gzip"}, body=gzip.compress(b"zipped", mtime=0))
    df = Response(200, headers={"Content-Encoding": "deflate"}, body=zlib.compress(b"deflated"))
    server = endpoint(handler=handlers.by_path({"/gz": gz, "/df": df}))
    gz_response = deproxy.make_request(server.url + "/gz").received_response
    df_response = deproxy.make_request(server.url + "/df").received_response
    assert gz_response is not None and df_response is not None
    assert (gz_response.body, gz_response.raw_body) == ("zipped", gzip.compress(b"zipped", mtime=0))
    assert df_response.body == "deflated"
    chunked = deproxy.make_request(
        server.url, "POST", {"Content-Encoding": "gzip"}, gzip.compress(b"up"), chunked=True
    )
    assert chunked.handlings[0].request.body == "up"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"BAD REQUEST LINE\r\n\r\n", b"400"),
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", b"505"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 70000 + b"\r\n\r\n", b"431"),
    ],
    ids=["bad-request-line", "http2", "huge-header"],
)
def test_malformed_requests_are_answered_and_the_endpoint_keeps_serving(
    deproxy: Deproxy, endpoint: EndpointFactory, data: bytes, status: bytes
) -> None:
    server = endpoint()
    answer = send_raw(server.port, data)
    assert answer.startswith(b"HTTP/1.1 " + status)
    assert len(server.errors) == 1
    chain = deproxy.make_request(server.url)
    assert chain.received_response is not None and chain.received_response.code == "200"


def test_a_client_that_vanishes_does_not_stop_the_endpoint(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint()
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nabc")
    chain = deproxy.make_request(server.url)
    assert chain.received_response is not None


def test_concurrent_connections_are_served_in_parallel(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    gate = threading.Barrier(3, timeout=5)

    def wait_for_all(request: Request) -> Response:
        gate.wait()  # only passes if three requests are being handled at once
        return Response(200)

    server = endpoint(handler=wait_for_all)
    chains: list[object] = []
    threads = [
        threading.Thread(target=lambda: chains.append(deproxy.make_request(server.url)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [chain.received_response.code for chain in chains] == ["200"] * 3  # type: ignore[attr-defined]


def test_leaving_a_with_block_raises_what_handlers_raised() -> None:
    def broken(request: Request) -> Response:
        raise RuntimeError("the database is on fire")

    def use_a_broken_endpoint() -> None:
        with Deproxy() as own:
            own.make_request(own.add_endpoint(default_handler=broken).url)

    with pytest.raises(HandlerError, match="the database is on fire"):
        use_a_broken_endpoint()


def test_leaving_a_with_block_on_an_exception_keeps_that_exception() -> None:
    def broken(request: Request) -> Response:
        raise RuntimeError("the database is on fire")

    def fail_while_a_handler_failed() -> None:
        with Deproxy() as own:
            own.make_request(own.add_endpoint(default_handler=broken).url)
            raise KeyError("the test's own failure")

    with pytest.raises(KeyError, match="the test's own failure"):
        fail_while_a_handler_failed()
