"""HTTP/2 through a real Apache httpd: ``Protocols h2 http/1.1`` on a TLS frontend (mod_http2)
with mod_proxy_http to an HTTP/1.1 endpoint, and ``ProxyPass / h2c://...`` (mod_proxy_http2)
to an h2c endpoint.

Apache is started by the conformance runner's own helper (``tests.conftest.packaged_proxy``:
``apache2 -f CONFIG -DFOREGROUND`` in a scratch directory) with the config below. Pinned
against Apache 2.4.71 (Debian 12, ``apache2``, whose ``apache2-bin`` brings mod_http2 and
mod_proxy_http2).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pytest_deproxy import Deproxy, HandlerContext, MessageChain, Request, Response, handlers

from .conftest import answered, packaged_proxy

RESET_AFTER = 1.5  # seconds: the proxy has forwarded the request by then, even on a busy machine

MODULES = ["mpm_event", "authz_core", "proxy", "proxy_http", "proxy_http2", "ssl", "http2"]
CONFIG = """
ServerRoot "@DIR@"
DefaultRuntimeDir "@DIR@"
ServerName localhost
Listen 127.0.0.1:@PORT@
PidFile "@DIR@/httpd.pid"
ErrorLog "@DIR@/error.log"
LogLevel warn
User nobody
Group nogroup
{modules}
Protocols h2 http/1.1
SSLEngine on
SSLCertificateFile {cert}
SSLCertificateKeyFile {key}
ProxyPass / {scheme}://127.0.0.1:@ORIGIN_PORT@/
"""


def apache_config(deproxy: Deproxy, tmp_path: Path, scheme: str) -> str:
    """A TLS frontend speaking h2 and HTTP/1.1, proxying everything to ``scheme``://origin."""
    cert, key = deproxy.ca.write_server_files(tmp_path, "127.0.0.1", "localhost")
    modules = "\n".join(
        f"LoadModule {name}_module /usr/lib/apache2/modules/mod_{name}.so" for name in MODULES
    )
    return CONFIG.format(modules=modules, cert=cert, key=key, scheme=scheme)


def test_h2_client_to_apache_to_h1_endpoint(deproxy: Deproxy, tmp_path: Path) -> None:
    backend = deproxy.add_endpoint(default_handler=handlers.echo)
    with packaged_proxy("apache", backend.port, apache_config(deproxy, tmp_path, "http")) as apache:
        url = apache.url.replace("http://", "https://")
        chain = deproxy.make_request(
            url + "/a/b?c=d", "POST", headers={"X-Custom": "v"}, request_body="hi", http2=True
        )
    response = answered(chain)
    assert (response.code, response.http_version, response.body) == ("200", "2", "hi")
    [handling] = chain.handlings  # the tracking header crossed the translation
    assert handling.request_id == chain.request_id and chain.orphaned_handlings == []
    assert (handling.stream_id, handling.request.http_version) == (None, "1.1")
    # mod_proxy_http: the request line from :method and :path, Host from the backend's
    # address (no ProxyPreserveHost), the client's :authority as X-Forwarded-Host, and the
    # lower-case HTTP/2 names written in HTTP/1 capitals.
    assert handling.raw.startswith(
        f"POST /a/b?c=d HTTP/1.1\r\nHost: 127.0.0.1:{backend.port}\r\nX-Custom: v\r\n".encode()
    )
    headers = handling.request.headers
    assert headers["X-Forwarded-Host"] == url.removeprefix("https://")
    assert ("Deproxy-Request-Id", chain.request_id) in headers.items()
    assert not any(name.startswith(":") for name, _ in headers.items())
    assert handling.request.body == "hi"


@pytest.mark.parametrize("client", ["h2", "http/1.1"])
def test_apache_reuses_h2c_connections_for_requests_in_turn(
    deproxy: Deproxy, tmp_path: Path, client: str
) -> None:
    backend = deproxy.add_endpoint(http2="h2c", default_handler=handlers.echo)
    with packaged_proxy("apache", backend.port, apache_config(deproxy, tmp_path, "h2c")) as apache:
        url = apache.url.replace("http://", "https://")
        opened = deproxy.connect(url, http2=True) if client == "h2" else deproxy.connect(url)
        with opened as connection:
            chains = [
                deproxy.make_request(f"{url}/in-turn{n}", connection=connection) for n in range(3)
            ]
    assert [answered(c).code for c in chains] == ["200"] * 3, [c.diagram() for c in chains]
    handlings = [h for c in chains for h in c.handlings]
    assert [h.request.path for h in handlings] == ["/in-turn0", "/in-turn1", "/in-turn2"]
    assert all(h.request_id == c.request_id for c, h in zip(chains, handlings, strict=True))
    # A reused upstream h2c connection carries the next request as its next stream.
    streams: dict[str, list[int | None]] = {}
    for handling in handlings:
        streams.setdefault(handling.connection, []).append(handling.stream_id)
    assert all(ids == list(range(1, 2 * len(ids), 2)) for ids in streams.values()), streams
    if client == "http/1.1":  # one client connection, one upstream connection
        assert list(streams.values()) == [[1, 3, 5]]
    # (From an h2 client, each stream runs in a worker of its own: the next one may come
    # before the last has handed its upstream connection back, and then opens another.)
    for handling in handlings:
        fields = handling.request.headers.items()
        assert [n for n, _ in fields[:4]] == [":scheme", ":authority", ":path", ":method"]
        assert handling.request.headers[":authority"] == f"127.0.0.1:{backend.port}"
        assert handling.request.headers["te"] == "trailers"  # mod_proxy_http2 asks for them


def test_apache_gives_concurrent_streams_an_h2c_connection_each(
    deproxy: Deproxy, tmp_path: Path
) -> None:
    gate = threading.Barrier(4, timeout=10)

    def together(request: Request, context: HandlerContext) -> Response:
        gate.wait()  # all four in flight upstream at once
        return Response(200, body=request.path)

    backend = deproxy.add_endpoint(http2="h2c", default_handler=together)
    chains: list[MessageChain] = []
    with packaged_proxy("apache", backend.port, apache_config(deproxy, tmp_path, "h2c")) as apache:
        url = apache.url.replace("http://", "https://")
        with deproxy.connect(url, http2=True) as connection:
            threads = [
                threading.Thread(
                    target=lambda n=n: chains.append(
                        deproxy.make_request(f"{url}/together{n}", connection=connection)
                    )
                )
                for n in range(4)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(20)
            client_streams = connection.stream_ids
    assert [c.error for c in chains] == [None] * 4, [c.diagram() for c in chains]
    assert sorted(client_streams) == [1, 3, 5, 7]  # one client connection, four streams
    assert [answered(c).body for c in chains] == [c.sent_request.path for c in chains]
    handlings = [h for c in chains for h in c.handlings]
    assert {h.request.http_version for h in handlings} == {"2"}
    # mod_proxy_http2 (2.4.71) does not multiplex: streams in flight together each took an
    # upstream connection of their own, as its first stream.
    assert len({h.connection for h in handlings}) == 4
    assert {h.stream_id for h in handlings} == {1}


def test_a_client_reset_through_apache_leaves_the_upstream_stream_to_finish(
    deproxy: Deproxy, tmp_path: Path
) -> None:
    arrived, release = threading.Event(), threading.Event()

    def held(request: Request) -> Response:
        arrived.set()
        release.wait(10)
        return Response(200, body="answered anyway")

    backend = deproxy.add_endpoint(http2="h2c", default_handler=held)
    with packaged_proxy("apache", backend.port, apache_config(deproxy, tmp_path, "h2c")) as apache:
        url = apache.url.replace("http://", "https://")
        chain = deproxy.make_request(url + "/reset-me", http2=True, h2_reset_after=RESET_AFTER)
        assert "h2_reset_after" in str(chain.error)
        assert arrived.wait(10)
        release.set()
        chain.wait(handlings=1, timeout=10)
    # mod_proxy_http2 (2.4.71) passes the client's reset on to no one: the upstream stream
    # and its connection stayed open until the endpoint's answer was sent on it.
    [handling] = chain.handlings
    assert handling.action is None and handling.response is not None
    assert handling.response.body == "answered anyway" and handling.responded_at is not None
    [record] = backend.connections
    cancels = [e for e in record.events if e.type in ("RST_STREAM", "GOAWAY")]
    assert all(e.at >= handling.responded_at for e in cancels), cancels
    assert record.closed_at is None or record.closed_at >= handling.responded_at
