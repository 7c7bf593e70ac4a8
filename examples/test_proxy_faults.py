"""What a proxy does when the server behind it misbehaves: each fault, seen from both sides.

Deproxy's "slow response" and "disconnect" recipes, against a real nginx (its 502 and 504
answers) and against the example proxy (whose retry shows in the chain).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pytest_deproxy import Deproxy, Endpoint, Response, handlers

from .example_proxy import ExampleProxy
from .test_nginx_reverse_proxy import start_proxy

EndpointFactory = Callable[..., Endpoint]
Nginx = Callable[[str], int]
BODY = Response(200, headers={"Content-Type": "text/plain"}, body="0123456789")


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (handlers.close, "502"),
        (handlers.reset, "502"),
        (handlers.hang, "504"),
    ],
    ids=["close", "reset", "hang"],
)
def test_nginx_answers_faults_with_a_gateway_error(
    deproxy: Deproxy, endpoint: EndpointFactory, nginx: Nginx, fault: handlers.Fault, code: str
) -> None:
    server = endpoint()
    proxy = start_proxy(nginx, server)

    chain = deproxy.make_request(proxy, default_handler=fault)

    assert chain.received_response is not None
    assert chain.received_response.code == code
    assert all(h.response is None or h.action != "responded" for h in chain.handlings)


def test_nginx_relays_a_non_http_answer_as_http_09(
    deproxy: Deproxy, endpoint: EndpointFactory, nginx: Nginx
) -> None:
    server = endpoint(handler=handlers.raw(b"not http\r\n\r\n"))
    proxy = start_proxy(nginx, server)

    chain = deproxy.make_request(proxy)

    # No 502: nginx takes a reply without a status line for HTTP/0.9 and passes it on as is.
    assert chain.received_response is None
    assert "illegal status line: bytearray(b'not http')" in str(chain.error)


def test_nginx_drops_the_client_on_a_malformed_chunk(
    deproxy: Deproxy, endpoint: EndpointFactory, nginx: Nginx
) -> None:
    server = endpoint(handler=handlers.bad_chunk(BODY))
    proxy = start_proxy(nginx, server)

    chain = deproxy.make_request(proxy)

    assert chain.handlings[0].action == "sent chunked headers, then a malformed chunk, then closed"
    assert chain.received_response is None
    assert "closed the connection without answering" in str(chain.error)


def test_nginx_passes_a_truncated_body_on_as_a_broken_response(
    deproxy: Deproxy, endpoint: EndpointFactory, nginx: Nginx
) -> None:
    server = endpoint(handler=handlers.truncate(BODY, 4))
    proxy = start_proxy(nginx, server)

    chain = deproxy.make_request(proxy)

    [handling] = chain.handlings
    assert handling.action == "sent the headers and 4 of 10 body bytes, then closed"
    assert chain.received_response is None  # nginx had started the answer; it can only cut it
    assert "in the middle of the response" in str(chain.error)


def test_nginx_waits_out_a_dribbling_upstream(
    deproxy: Deproxy, endpoint: EndpointFactory, nginx: Nginx
) -> None:
    server = endpoint(handler=handlers.dribble(BODY, pieces=3, seconds=0.1))
    proxy = start_proxy(nginx, server)

    chain = deproxy.make_request(proxy)

    assert chain.received_response is not None and chain.received_response.body == "0123456789"


def test_nginx_504s_when_headers_arrive_but_nothing_more(
    deproxy: Deproxy, endpoint: EndpointFactory, nginx: Nginx
) -> None:
    server = endpoint(handler=handlers.headers_then_hang(BODY))
    proxy = start_proxy(nginx, server)

    chain = deproxy.make_request(proxy, timeout=5)

    [handling] = chain.handlings
    assert handling.action == "sent the headers, then hung"
    assert chain.received_response is None or chain.received_response.code == "504"


def test_nginx_sees_a_client_that_disconnects_mid_body(
    deproxy: Deproxy, endpoint: EndpointFactory, nginx: Nginx
) -> None:
    server = endpoint()
    proxy = start_proxy(nginx, server)

    chain = deproxy.make_request(proxy, "POST", request_body="z" * 1000, disconnect="mid_body")

    assert chain.received_response is None
    assert server.handlings == []  # nginx buffers request bodies: the server never saw it


def test_the_example_proxy_retries_once_then_answers_502(
    deproxy: Deproxy, endpoint: EndpointFactory, example_proxy: Callable[..., ExampleProxy]
) -> None:
    server = endpoint()
    proxy = example_proxy(server.url)
    deproxy.make_request(proxy.url)  # leaves an idle pooled connection behind

    chain = deproxy.make_request(proxy.url, default_handler=handlers.close)

    assert [h.action for h in chain.handlings] == ["closed the connection without answering"] * 2
    assert len({h.connection for h in chain.handlings}) == 2  # the retry used a fresh connection
    assert chain.received_response is not None and chain.received_response.code == "502"


def test_the_example_proxy_answers_502_for_a_body_cut_short(
    deproxy: Deproxy, endpoint: EndpointFactory, example_proxy: Callable[..., ExampleProxy]
) -> None:
    server = endpoint(handler=handlers.truncate(BODY, 4))
    proxy = example_proxy(server.url)

    chain = deproxy.make_request(proxy.url)

    [handling] = chain.handlings
    assert handling.action == "sent the headers and 4 of 10 body bytes, then closed"
    assert chain.received_response is not None and chain.received_response.code == "502"
    assert "IncompleteRead" in chain.received_response.body


def test_the_example_proxy_times_out_on_a_hanging_server(
    deproxy: Deproxy, endpoint: EndpointFactory, example_proxy: Callable[..., ExampleProxy]
) -> None:
    server = endpoint(handler=handlers.headers_then_hang(BODY))
    proxy = example_proxy(server.url)

    chain = deproxy.make_request(proxy.url, timeout=2)

    assert chain.received_response is None  # its upstream timeout (10 s) is longer than ours
    assert "timed out" in str(chain.error)
