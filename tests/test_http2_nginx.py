"""HTTP/2 through a real nginx: h2 (TLS, ALPN) from the client to nginx and HTTP/1.1 on to an
endpoint, and ``grpc_pass`` (h2c) on to an endpoint answering with ``handlers.grpc``.

nginx is started by the conformance runner's own helper (``tests.conftest.packaged_proxy``)
with the configs below. Pinned against nginx 1.22.1 (Debian 12: ``nginx-light`` brings the
``nginx`` binary, built with ``http_v2`` and ``grpc``); ``listen ... http2`` is the syntax
before 1.25.1, ``http2 on;`` after, and the config says whichever the installed one takes.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pytest_deproxy import Deproxy, HandlerContext, Request, Response, handlers
from pytest_deproxy.conformance import proxies

from .conftest import answered, eventually, find_program, packaged_proxy

RESET_AFTER = 1.5  # seconds: the proxy has forwarded the request by then, even on a busy machine

CONFIG = """
daemon off;
master_process off;
worker_processes 1;
pid @DIR@/nginx.pid;
error_log @DIR@/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path @DIR@/client_body;
    proxy_temp_path @DIR@/proxy;
    fastcgi_temp_path @DIR@/fastcgi;
    uwsgi_temp_path @DIR@/uwsgi;
    scgi_temp_path @DIR@/scgi;
    server {
        %(listen)s
        %(server)s
    }
}
"""


def http2_listen(*, tls: bool) -> str:
    """The ``listen`` of an HTTP/2 server in the installed nginx's own syntax."""
    binary = find_program("nginx", "nginx-light")
    found = proxies.version(proxies.PROXIES["nginx"], binary).split()[-1]  # "1.22.1"
    try:
        modern = tuple(int(part) for part in found.split(".")[:3]) >= (1, 25, 1)
    except ValueError:  # "(version unknown)": take the syntax both accept, with a warning
        modern = False
    ssl = " ssl" if tls else ""
    if modern:
        return f"listen 127.0.0.1:@PORT@{ssl};\n        http2 on;"
    return f"listen 127.0.0.1:@PORT@{ssl} http2;"


def test_h2_client_to_nginx_to_h1_endpoint_translated_and_tracked(
    deproxy: Deproxy, tmp_path: Path
) -> None:
    gate = threading.Barrier(3, timeout=10)

    def together(request: Request, context: HandlerContext) -> Response:
        gate.wait()  # the three streams are in flight in nginx at once
        return Response(200, body=f"answer to {request.path}")

    backend = deproxy.add_endpoint(default_handler=together)
    cert, key = deproxy.ca.write_server_files(tmp_path, "127.0.0.1", "localhost")
    server = (
        f"ssl_certificate {cert};\n        ssl_certificate_key {key};\n"
        "        location / {\n"
        "            proxy_pass http://127.0.0.1:@ORIGIN_PORT@;\n"
        "            proxy_http_version 1.1;\n"
        "            proxy_set_header Host $http_host;\n"  # :authority, as nginx reads it
        "        }"
    )
    config = CONFIG % {"listen": http2_listen(tls=True), "server": server}
    chains = []
    with packaged_proxy("nginx", backend.port, config) as nginx:
        url = nginx.url.replace("http://", "https://")
        authority = url.removeprefix("https://")
        with deproxy.connect(url, http2=True) as connection:
            threads = [
                threading.Thread(
                    target=lambda n=n: chains.append(
                        deproxy.make_request(
                            f"{url}/s{n}?q={n}",
                            "POST",
                            headers={"X-Stream": str(n)},
                            request_body=f"body {n}",
                            connection=connection,
                        )
                    )
                )
                for n in range(3)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(20)
            client_streams = connection.stream_ids
    assert [c.error for c in chains] == [None] * 3, [c.diagram() for c in chains]
    assert sorted(client_streams) == [1, 3, 5]  # one client connection, three streams
    for chain in chains:
        response = answered(chain)
        n = chain.sent_request.headers["X-Stream"]
        assert response.http_version == "2" and response.body == f"answer to /s{n}?q={n}"
        # The tracking header crossed the translation: each stream's chain holds the upstream
        # HTTP/1.1 request nginx made of it, and nothing else.
        [handling] = chain.handlings
        assert chain.orphaned_handlings == []
        assert handling.request_id == chain.request_id
        upstream = handling.request
        assert (handling.stream_id, upstream.http_version) == (None, "1.1")
        # The pseudo-headers became the request line and Host; no pseudo-header went on.
        assert handling.raw.startswith(
            f"POST /s{n}?q={n} HTTP/1.1\r\nHost: {authority}\r\n".encode()
        )
        assert not any(name.startswith(":") for name, _ in upstream.headers.items())
        assert upstream.headers["x-stream"] == n and upstream.body == f"body {n}"
        # nginx lower-cases the names HTTP/2 carried (HPACK), and says how long the body is.
        assert ("deproxy-request-id", chain.request_id) in upstream.headers.items()
        assert upstream.headers["Content-Length"] == str(len(f"body {n}"))
    # nginx does not multiplex HTTP/1.1 upstream: the streams in flight together took one
    # upstream connection each.
    assert len({c.handlings[0].connection for c in chains}) == 3
    [tls] = {r.tls for r in backend.connections}
    assert tls is None  # HTTP/1.1 in cleartext behind nginx, h2 over TLS in front


@pytest.mark.parametrize(
    ("status", "message", "reply"),
    [(0, "", b"\x08\x2a"), (5, "no such thing", b"")],
    ids=["ok", "error-status"],
)
def test_grpc_pass_to_handlers_grpc_keeps_the_trailers(
    deproxy: Deproxy, status: int, message: str, reply: bytes
) -> None:
    backend = deproxy.add_endpoint(
        http2="h2c", default_handler=handlers.grpc(reply, status=status, message=message)
    )
    server = "location / { grpc_pass grpc://127.0.0.1:@ORIGIN_PORT@; }"
    config = CONFIG % {"listen": http2_listen(tls=False), "server": server}
    with packaged_proxy("nginx", backend.port, config) as nginx:
        chain = deproxy.make_request(
            nginx.url + "/pkg.Service/Method",
            "POST",
            headers={"content-type": "application/grpc", "te": "trailers"},
            request_body=handlers.grpc_frame(b"\x08\x01"),
            http2="h2c",
        )
    response = answered(chain)
    assert (response.code, response.http_version) == ("200", "2")
    assert response.headers["content-type"] == "application/grpc"
    assert handlers.grpc_messages(response.raw_body) == ([reply] if status == 0 else [])
    # The gRPC status crossed nginx as trailers (an error status too, after an empty body).
    expected = [("grpc-status", str(status))] + ([("grpc-message", message)] if message else [])
    assert response.trailers.items() == expected
    # Upstream, the call was an HTTP/2 stream on an h2c connection of its own.
    [handling] = chain.handlings
    assert handling.request.http_version == "2" and handling.stream_id == 1
    assert handling.request.headers["te"] == "trailers"
    assert handlers.grpc_messages(handling.request.raw_body) == [b"\x08\x01"]
    assert handling.response is not None and handling.response.trailers.items() == expected
    assert "content-length" not in handling.response.headers  # the body ends at END_STREAM
    [record] = [r for r in backend.connections if r.id == handling.connection]
    assert record.tls is None
    assert ("received", "SETTINGS") in [(e.direction, e.type) for e in record.events]


def test_a_client_reset_through_grpc_pass_closes_the_upstream_connection(
    deproxy: Deproxy,
) -> None:
    arrived, release = threading.Event(), threading.Event()

    def held(request: Request) -> Response:
        arrived.set()
        release.wait(10)  # until the test has seen what nginx did upstream
        return Response(200, body="too late")

    backend = deproxy.add_endpoint(http2="h2c", default_handler=held)
    server = "location / { grpc_pass grpc://127.0.0.1:@ORIGIN_PORT@; }"
    config = CONFIG % {"listen": http2_listen(tls=False), "server": server}
    with packaged_proxy("nginx", backend.port, config) as nginx:
        chain = deproxy.make_request(
            nginx.url + "/pkg.Service/Slow", "POST", http2="h2c", h2_reset_after=RESET_AFTER
        )
        assert "h2_reset_after" in str(chain.error)
        assert arrived.is_set(), "the request had not reached the endpoint before the reset"
        eventually(lambda: backend.connections and backend.connections[0].closed_at is not None)
        release.set()
        chain.wait(handlings=1, timeout=10)
    # nginx cancels by closing the whole upstream connection, no RST_STREAM first; the
    # endpoint's answer, ready after that, went nowhere.
    [record] = backend.connections
    assert record.closed_by == "client"
    assert [e for e in record.events if e.type == "RST_STREAM"] == []
    [handling] = chain.handlings
    assert handling.response is None
    assert handling.action == "the connection was closed (client) before the answer was sent"


def test_nginx_goaway_at_keepalive_requests_still_delivers_the_last_answer(
    deproxy: Deproxy, tmp_path: Path
) -> None:
    backend = deproxy.add_endpoint(default_handler=Response(200, body="answered"))
    cert, key = deproxy.ca.write_server_files(tmp_path, "127.0.0.1", "localhost")
    server = (
        f"keepalive_requests 3;\n        ssl_certificate {cert};\n"
        f"        ssl_certificate_key {key};\n"
        "        location / { proxy_pass http://127.0.0.1:@ORIGIN_PORT@; }"
    )
    config = CONFIG % {"listen": http2_listen(tls=True), "server": server}
    with packaged_proxy("nginx", backend.port, config) as nginx:
        url = nginx.url.replace("http://", "https://")
        with deproxy.connect(url, http2=True) as connection:
            chains = [deproxy.make_request(f"{url}/n{n}", connection=connection) for n in range(4)]
            events = [(e.direction, e.type, e.error, e.last_stream_id) for e in connection.events]
    # nginx says GOAWAY as the third request arrives, then answers it (RFC 9113 §6.8: streams
    # up to last_stream_id still complete). The client takes that answer, and opens no
    # fourth stream on the connection.
    goaways = [e for e in events if e[1] == "GOAWAY"]
    assert goaways == [("received", "GOAWAY", "NO_ERROR", 5)]
    assert [answered(c).body for c in chains[:3]] == ["answered"] * 3
    assert chains[3].received_response is None and chains[3].handlings == []
    assert "GOAWAY NO_ERROR, last_stream_id=5" in str(chains[3].error)
    assert connection.stream_ids == [1, 3, 5]
