"""Testing a real nginx configured as a reverse proxy in front of Deproxy endpoints."""

from __future__ import annotations

from collections.abc import Callable

from pytest_deproxy import Deproxy, Endpoint, handlers

EndpointFactory = Callable[..., Endpoint]
Nginx = Callable[[str], int]

REVERSE_PROXY = """
    upstream backend {{
        server 127.0.0.1:{upstream};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{{port}};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_read_timeout 1s;
        }}
    }}
"""


def start_proxy(nginx: Nginx, upstream: Endpoint) -> str:
    return f"http://127.0.0.1:{nginx(REVERSE_PROXY.format(upstream=upstream.port))}"


def test_nginx_forwards_with_its_headers(
    deproxy: Deproxy, endpoint: EndpointFactory, nginx: Nginx
) -> None:
    server = endpoint(handler=handlers.echo)
    proxy = start_proxy(nginx, server)

    chain = deproxy.make_request(proxy + "/path?q=1", "POST", request_body="hello nginx")

    assert len(chain.handlings) == 1
    received = chain.handlings[0].request
    assert received.path == "/path?q=1"
    assert received.body == "hello nginx"
    assert received.headers["Host"] == "backend"
    assert received.headers["X-Forwarded-For"] == "127.0.0.1"
    assert received.headers["X-Real-IP"] == "127.0.0.1"
    assert chain.received_response is not None
    assert chain.received_response.headers["Server"].startswith("nginx")


def test_nginx_reuses_upstream_connections(
    deproxy: Deproxy, endpoint: EndpointFactory, nginx: Nginx
) -> None:
    server = endpoint()
    proxy = start_proxy(nginx, server)

    connections = {deproxy.make_request(proxy).handlings[0].connection for _ in range(3)}

    assert len(connections) == 1


def test_nginx_dechunks_request_bodies(
    deproxy: Deproxy, endpoint: EndpointFactory, nginx: Nginx
) -> None:
    server = endpoint()
    proxy = start_proxy(nginx, server)

    chain = deproxy.make_request(proxy, "PUT", request_body="sent in chunks", chunked=True)

    received = chain.handlings[0].request
    assert received.body == "sent in chunks"
    assert chain.sent_request.headers["Transfer-Encoding"] == "chunked"
    assert received.headers.get("Content-Length") == str(len("sent in chunks"))


def test_a_slow_upstream_gets_a_504_from_nginx(
    deproxy: Deproxy, endpoint: EndpointFactory, nginx: Nginx
) -> None:
    server = endpoint(handler=handlers.delay(5))
    proxy = start_proxy(nginx, server)

    chain = deproxy.make_request(proxy)

    assert chain.received_response is not None
    assert chain.received_response.code == "504"
    [waiting] = chain.handlings  # on the record since it arrived, before nginx gave up
    assert (waiting.done, waiting.response) == (False, None)
