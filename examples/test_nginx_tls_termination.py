"""Testing nginx terminating TLS in front of a plain-HTTP Deproxy endpoint."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

from pytest_deproxy import Deproxy, Endpoint, handlers

EndpointFactory = Callable[..., Endpoint]
Nginx = Callable[[str], int]

TLS_TERMINATION = """
    server {{
        listen 127.0.0.1:{{port}} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Host $host;
        }}
    }}
"""


def start_tls_proxy(nginx: Nginx, deproxy: Deproxy, upstream: Endpoint, directory: Path) -> str:
    cert, key = deproxy.ca.write_server_files(directory, "localhost", "127.0.0.1")
    port = nginx(TLS_TERMINATION.format(cert=cert, key=key, upstream=upstream.port))
    return f"https://localhost:{port}"


def test_nginx_decrypts_and_forwards_plain_http(
    deproxy: Deproxy, endpoint: EndpointFactory, nginx: Nginx, tmp_path: Path
) -> None:
    server = endpoint(handler=handlers.echo)  # plain HTTP behind nginx
    proxy = start_tls_proxy(nginx, deproxy, server, tmp_path)

    chain = deproxy.make_request(proxy + "/account", "POST", request_body="card number")

    assert chain.error is None
    [handling] = chain.handlings
    assert handling.request.headers["X-Forwarded-Proto"] == "https"
    assert handling.request.headers["Host"] == "localhost"
    assert handling.request.body == "card number"
    assert chain.received_response is not None
    assert chain.received_response.body == "card number"


def test_clients_that_do_not_trust_the_ca_never_reach_the_endpoint(
    deproxy: Deproxy, endpoint: EndpointFactory, nginx: Nginx, tmp_path: Path
) -> None:
    server = endpoint()
    proxy = start_tls_proxy(nginx, deproxy, server, tmp_path)

    chain = deproxy.make_request(proxy, verify=ssl.create_default_context())

    assert chain.received_response is None
    assert "CERTIFICATE_VERIFY_FAILED" in str(chain.error)
    assert server.handlings == []
