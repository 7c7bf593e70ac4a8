"""make_request through forward proxies: absolute-form for http://, CONNECT tunnels for https://."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pytest_deproxy import Deproxy, Endpoint, Request, Response, TunnelRefused, handlers

EndpointFactory = Callable[..., Endpoint]
Tinyproxy = Callable[..., str]


def test_http_through_tinyproxy_uses_absolute_form(
    deproxy: Deproxy, endpoint: EndpointFactory, tinyproxy: Tinyproxy
) -> None:
    server = endpoint(handler=handlers.echo)
    proxy = tinyproxy()

    chain = deproxy.make_request(
        server.url + "/via-proxy?x=1", "POST", request_body="forwarded", proxy=proxy
    )

    assert chain.sent_request.path == server.url + "/via-proxy?x=1"
    assert chain.error is None
    [handling] = chain.handlings
    assert handling.request.path == "/via-proxy?x=1"
    assert handling.request.body == "forwarded"
    assert "tinyproxy" in handling.request.headers["Via"]
    assert chain.received_response is not None
    assert chain.received_response.body == "forwarded"


def test_https_through_tinyproxy_tunnels_with_connect(
    deproxy: Deproxy, endpoint: EndpointFactory, tinyproxy: Tinyproxy
) -> None:
    server = endpoint(handler=handlers.echo, tls=True)
    proxy = tinyproxy()

    chain = deproxy.make_request(
        server.url + "/secret", "POST", request_body="tunnelled", proxy=proxy
    )

    assert chain.error is None
    assert chain.sent_request.path == "/secret"  # origin-form inside the tunnel
    [handling] = chain.handlings
    assert "Via" not in handling.request.headers  # the proxy saw only encrypted bytes
    assert chain.received_response is not None
    assert chain.received_response.body == "tunnelled"


def test_a_refused_connect_comes_back_as_the_response(
    deproxy: Deproxy, endpoint: EndpointFactory, tinyproxy: Tinyproxy
) -> None:
    server = endpoint(tls=True)
    proxy = tinyproxy(connect_ports=[443])

    chain = deproxy.make_request(server.url, proxy=proxy)

    assert isinstance(chain.error, TunnelRefused)
    assert "refused the CONNECT tunnel" in str(chain.error)
    assert chain.received_response is not None
    assert chain.received_response.code == "403"
    assert chain.handlings == []


@pytest.mark.parametrize("code", [407, 502])
def test_a_proxy_refusing_connect_with_any_code(
    deproxy: Deproxy, endpoint: EndpointFactory, code: int
) -> None:
    seen: list[Request] = []

    def refuse(request: Request) -> Response:
        seen.append(request)
        return Response(
            code, headers={"Proxy-Authenticate": 'Basic realm="test"'}, body="no tunnel"
        )

    fake_proxy = endpoint("fake-proxy", refuse)
    chain = deproxy.make_request("https://secure.example:8443/", proxy=fake_proxy.url)

    assert (seen[0].method, seen[0].path) == ("CONNECT", "secure.example:8443")
    assert isinstance(chain.error, TunnelRefused)
    assert chain.received_response is not None
    assert chain.received_response.code == str(code)
    assert chain.received_response.body == "no tunnel"


def test_http_proxy_request_is_absolute_form_at_the_proxy(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    fake_proxy = endpoint("fake-proxy")
    chain = deproxy.make_request("http://api.example:8080/v1?q=2", proxy=fake_proxy.url)
    [handling] = chain.handlings
    assert handling.request.path == "http://api.example:8080/v1?q=2"
    assert handling.request.headers["Host"] == "api.example:8080"


def test_an_unreachable_proxy_is_data(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    gone = endpoint()
    url = gone.url
    gone.shutdown()
    chain = deproxy.make_request("https://example.org/", proxy=url)
    assert chain.received_response is None
    assert "refused" in str(chain.error)
