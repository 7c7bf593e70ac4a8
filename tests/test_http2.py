"""HTTP/2 endpoints and client, in process: curl --http2 and httpx as independent clients,
make_request(http2=...) and a multiplexed connection, trailers, gRPC, and HTTP/2 faults."""

from __future__ import annotations

import ssl
import subprocess
import threading

import httpx
import pytest

from pytest_deproxy import Deproxy, Response, handlers


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "-i", "--max-time", "10", *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_tls_endpoint_serves_h2_over_alpn_to_curl(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(tls=True, http2=True, default_handler=handlers.echo)
    result = curl("--http2", "--cacert", deproxy.ca.cert_pem_path, endpoint.url + "/a?b=1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("HTTP/2 200")
    [handling] = endpoint.handlings
    assert handling.stream_id == 1
    assert handling.request.http_version == "2"
    assert (handling.request.method, handling.request.path) == ("GET", "/a?b=1")
    names = [name for name, _ in handling.request.headers.items()]
    assert names[:4] == [":method", ":path", ":scheme", ":authority"]  # curl's order, kept
    assert handling.request.headers[":scheme"] == "https"
    assert handling.response is not None and handling.response.http_version == "2"
    [record] = endpoint.connections
    assert record.tls is not None and record.tls.alpn == "h2"
    assert handling.connection == record.id
    kinds = {(event.direction, event.type) for event in record.events}
    assert {("sent", "SETTINGS"), ("received", "SETTINGS")} <= kinds
    settings = next(e for e in record.events if e.direction == "received" and e.type == "SETTINGS")
    assert "INITIAL_WINDOW_SIZE" in settings.values  # curl's, with their values


def test_tls_h2_endpoint_still_serves_http11_to_clients_without_h2(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(tls=True, http2=True)
    result = curl("--http1.1", "--cacert", deproxy.ca.cert_pem_path, endpoint.url + "/one")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("HTTP/1.1 200")
    [handling] = endpoint.handlings
    assert handling.stream_id is None and handling.request.http_version == "1.1"
    assert endpoint.connections[0].tls.alpn in (None, "http/1.1")
    assert endpoint.connections[0].events == []


def test_h2c_prior_knowledge_and_upgrade_from_curl(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(http2="h2c", default_handler=handlers.echo)
    prior = curl("--http2-prior-knowledge", endpoint.url + "/prior")
    assert prior.returncode == 0, prior.stderr
    assert prior.stdout.startswith("HTTP/2 200")
    upgraded = curl("--http2", "-d", "hello", endpoint.url + "/upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.startswith("HTTP/1.1 101 Switching Protocols")
    assert "HTTP/2 200" in upgraded.stdout and upgraded.stdout.endswith("hello")
    first, second = endpoint.handlings
    assert (first.request.path, first.stream_id, first.request.http_version) == ("/prior", 1, "2")
    # The request that asked for the upgrade is stream 1, as it arrived (HTTP/1.1).
    assert (second.request.path, second.stream_id, second.request.body) == ("/upgrade", 1, "hello")
    assert second.request.headers.has_token("Upgrade", "h2c")
    assert second.response is not None and second.response.http_version == "2"


def test_h2c_endpoint_still_serves_plain_http11(deproxy: Deproxy) -> None:
    endpoint = deproxy.add_endpoint(http2="h2c")
    chain = deproxy.make_request(endpoint.url + "/plain")
    assert chain.received_response is not None and chain.received_response.code == "200"
    assert endpoint.handlings[0].stream_id is None


def test_httpx_multiplexes_streams_on_one_connection(deproxy: Deproxy) -> None:
    gate = threading.Barrier(4, timeout=10)

    def together(request, context):  # answers only once four streams are in: multiplexed
        gate.wait()
        return Response(200, body=request.path)

    endpoint = deproxy.add_endpoint(tls=True, http2=True, default_handler=together)
    context = ssl.create_default_context(cafile=deproxy.ca.cert_pem_path)
    with httpx.Client(http2=True, verify=context, timeout=10) as client:
        results: list[httpx.Response] = []

        def fetch(n: int) -> None:
            results.append(client.get(f"{endpoint.url}/s{n}"))

        threads = [threading.Thread(target=fetch, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
    assert sorted(r.text for r in results) == ["/s0", "/s1", "/s2", "/s3"]
    assert {r.http_version for r in results} == {"HTTP/2"}
    handlings = endpoint.handlings
    assert len({h.connection for h in handlings}) == 1
    assert sorted(h.stream_id for h in handlings) == [1, 3, 5, 7]


def test_http2_option_is_checked(deproxy: Deproxy) -> None:
    with pytest.raises(ValueError, match="add tls=True"):
        deproxy.add_endpoint(http2=True)
    with pytest.raises(ValueError, match="'h2c'"):
        deproxy.add_endpoint(http2="h3")
