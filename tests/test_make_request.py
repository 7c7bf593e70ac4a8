"""The client side of Deproxy: what make_request puts on the wire and what it gives back."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

import pytest

from pytest_deproxy import (
    TRACKING_HEADER,
    Deproxy,
    DeproxyTimeout,
    Endpoint,
    NetworkError,
    ProtocolError,
    Response,
    handlers,
)

from .conftest import RawServer

EndpointFactory = Callable[..., Endpoint]
RawServerFactory = Callable[..., RawServer]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def request_line(data: bytes) -> bytes:
    return data.split(b"\r\n", 1)[0]


def header_lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]


@pytest.mark.parametrize(
    ("suffix", "target"),
    [
        ("", "/"),
        ("?", "/?"),
        ("/path?name=value", "/path?name=value"),
        ("/p#frag", "/p"),
        ("/a/b/?x=1&y=%20#f", "/a/b/?x=1&y=%20"),
    ],
)
def test_url_path_and_query_go_on_the_wire_as_given(
    deproxy: Deproxy, endpoint: EndpointFactory, suffix: str, target: str
) -> None:
    server = endpoint()
    chain = deproxy.make_request(server.url + suffix)
    assert chain.sent_request.path == target
    assert chain.handlings[0].request.path == target


def test_host_override_is_sent_verbatim_while_connecting_to_the_url(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint()
    chain = deproxy.make_request(server.url, host="example.com")
    assert chain.handlings[0].request.headers.get_all("Host") == ["example.com"]


def test_port_override_changes_where_it_connects(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint()
    chain = deproxy.make_request("http://127.0.0.1:9/", port=server.port)
    assert chain.received_response is not None
    assert chain.handlings[0].endpoint is server
    assert chain.sent_request.headers["Host"] == "127.0.0.1:9"


def test_path_override_is_the_request_target_verbatim(
    raw_server: RawServerFactory, deproxy: Deproxy
) -> None:
    server = raw_server(OK)
    deproxy.make_request(server.url + "/ignored", path="/parampath?query=value@%")
    assert request_line(server.wait()) == b"GET /parampath?query=value@% HTTP/1.1"


def test_default_headers(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint()
    chain = deproxy.make_request(server.url, method="POST", request_body="abc")
    received = chain.handlings[0].request.headers
    assert received["Host"] == f"127.0.0.1:{server.port}"
    assert received["Accept"] == "*/*"
    assert received["Accept-Encoding"] == "identity"
    assert received["User-Agent"].startswith("pytest-deproxy/")
    assert received["Content-Length"] == "3"
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]{8,}", received[TRACKING_HEADER])


def test_host_leaves_out_only_the_default_port(
    raw_server: RawServerFactory, deproxy: Deproxy
) -> None:
    server = raw_server(OK)
    chain = deproxy.make_request("http://localhost/", port=server.port)
    assert chain.sent_request.headers["Host"] == "localhost"
    assert b"Host: localhost\r\n" in server.wait()
    assert deproxy.make_request("http://h:8080/", port=1).sent_request.headers["Host"] == "h:8080"


def test_caller_headers_win_over_defaults(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint()
    chain = deproxy.make_request(server.url, headers={"Accept": "text/html", "user-agent": "me"})
    received = chain.handlings[0].request.headers
    assert received.get_all("Accept") == ["text/html"]
    assert received.get_all("User-Agent") == ["me"]


def test_without_default_headers_only_the_tracking_header_is_added(
    raw_server: RawServerFactory, deproxy: Deproxy
) -> None:
    server = raw_server(OK)
    chain = deproxy.make_request(
        server.url,
        method="POST",
        headers=[("X-Only", "1")],
        request_body="raw-body",
        add_default_headers=False,
    )
    sent = server.wait()
    assert chain.received_response is not None
    assert header_lines(sent) == [b"X-Only: 1", f"{TRACKING_HEADER}: {chain.request_id}".encode()]
    assert sent.endswith(b"\r\n\r\nraw-body")


def test_duplicate_request_headers_keep_their_order(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint()
    sent = [("X-Dup", "1"), ("Other", "x"), ("x-dup", "2")]
    chain = deproxy.make_request(server.url, headers=sent)
    received = chain.handlings[0].request.headers
    assert [(n, v) for n, v in received.items() if n.lower() in ("x-dup", "other")] == sent


def test_binary_body_round_trips(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint(handler=handlers.echo)
    payload = bytes(range(256))
    chain = deproxy.make_request(
        server.url, "PUT", {"Content-Type": "application/octet-stream"}, payload
    )
    assert chain.handlings[0].request.body == payload
    assert chain.received_response is not None and chain.received_response.body == payload


def test_str_body_is_sent_as_utf8(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint()
    chain = deproxy.make_request(server.url, "POST", request_body="naïve ☃")
    request = chain.handlings[0].request
    assert request.raw_body == "naïve ☃".encode()
    assert request.headers["Content-Length"] == str(len("naïve ☃".encode()))


def test_chunked_body(
    raw_server: RawServerFactory, deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint()
    chain = deproxy.make_request(server.url, "POST", request_body="chunky", chunked=True)
    request = chain.handlings[0].request
    assert request.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in request.headers
    assert request.body == "chunky"
    raw = raw_server(OK, read_until=lambda data: data.endswith(b"0\r\n\r\n"))
    deproxy.make_request(raw.url, "POST", request_body="chunky", chunked=True)
    assert raw.wait().endswith(b"\r\n\r\n6\r\nchunky\r\n0\r\n\r\n")


def test_tracking_header_generated_or_honoured(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint()
    generated = deproxy.make_request(server.url)
    mine = deproxy.make_request(server.url, headers={"deproxy-request-id": "my-own-id"})
    assert generated.request_id != mine.request_id
    assert mine.request_id == "my-own-id"
    assert mine.handlings[0].request_id == "my-own-id"
    assert mine.received_response is not None
    assert mine.received_response.headers[TRACKING_HEADER] == "my-own-id"


def test_timeout_per_call_gives_a_chain_with_an_error(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint(handler=handlers.delay(5))
    chain = deproxy.make_request(server.url, timeout=0.3)
    assert chain.received_response is None
    assert isinstance(chain.error, DeproxyTimeout)
    assert "timed out" in str(chain.error)
    [pending] = chain.handlings  # on the record since it arrived; its handler still waits
    assert (pending.done, pending.response) == (False, None)


def test_default_timeout_comes_from_the_deproxy(endpoint: EndpointFactory) -> None:
    server = endpoint(handler=handlers.delay(5))
    with Deproxy(timeout=0.2) as quick:
        chain = quick.make_request(server.url)
    assert isinstance(chain.error, DeproxyTimeout)


def test_peer_that_closes_without_answering(raw_server: RawServerFactory, deproxy: Deproxy) -> None:
    server = raw_server(b"")
    chain = deproxy.make_request(server.url)
    assert chain.received_response is None
    assert isinstance(chain.error, NetworkError)
    assert "without answering" in str(chain.error)


def test_peer_that_answers_garbage(raw_server: RawServerFactory, deproxy: Deproxy) -> None:
    server = raw_server(b"this is not http\r\n\r\n")
    chain = deproxy.make_request(server.url)
    assert chain.received_response is None
    assert isinstance(chain.error, ProtocolError)


def test_connection_refused_is_data(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint()
    port = server.port
    server.shutdown()
    chain = deproxy.make_request(f"http://127.0.0.1:{port}/")
    assert chain.received_response is None
    assert "refused" in str(chain.error)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://x/", "http:// or https://"),
        ("http:///nohost", "names no host"),
        ("http://h:99999/", "bad port"),
    ],
)
def test_malformed_urls_raise(deproxy: Deproxy, url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        deproxy.make_request(url)


def test_bad_arguments_raise(deproxy: Deproxy) -> None:
    with pytest.raises(TypeError, match="body"):
        deproxy.make_request("http://127.0.0.1:1/", request_body=3.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="port"):
        deproxy.make_request("http://127.0.0.1:1/", port=0)
    with pytest.raises(ValueError, match="proxy"):
        deproxy.make_request("http://127.0.0.1:1/", proxy="socks5://127.0.0.1:1")


def test_many_threads_each_get_their_own_chain(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint(handler=handlers.echo)
    results: dict[int, object] = {}

    def call(number: int) -> None:
        results[number] = deproxy.make_request(server.url, headers={"X-Number": str(number)})

    threads = [threading.Thread(target=call, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for number, chain in results.items():
        assert len(chain.handlings) == 1  # type: ignore[attr-defined]
        assert chain.handlings[0].request.headers["X-Number"] == str(number)  # type: ignore[attr-defined]
        assert chain.received_response.headers["X-Number"] == str(number)  # type: ignore[attr-defined]
    assert len({chain.request_id for chain in results.values()}) == 20  # type: ignore[attr-defined]


def test_persistent_connection_is_reused(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint()
    with deproxy.connect(server.url) as connection:
        first = deproxy.make_request(server.url, connection=connection)
        second = deproxy.make_request(server.url, connection=connection)
    separate = deproxy.make_request(server.url)
    assert first.handlings[0].connection == second.handlings[0].connection
    assert separate.handlings[0].connection != first.handlings[0].connection


def test_a_closed_persistent_connection_gives_an_error_chain(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint(handler=Response(200, headers={"Connection": "close"}))
    connection = deproxy.connect(server.url)
    first = deproxy.make_request(server.url, connection=connection)
    assert first.received_response is not None
    assert connection.closed
    second = deproxy.make_request(server.url, connection=connection)
    assert second.received_response is None
    assert "already closed" in str(second.error)
