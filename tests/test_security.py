"""Security defaults: loopback only, no open proxy, no unsafe YAML, no secrets on disk."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pytest_deproxy import Deproxy, Endpoint

EndpointFactory = Callable[..., Endpoint]


def test_every_listener_binds_loopback_by_default(deproxy: Deproxy, tmp_path: Path) -> None:
    endpoint = deproxy.add_endpoint()
    mitm = deproxy.add_mitm_endpoint(scenarios_path=tmp_path)
    for listener in (endpoint, mitm):
        assert listener.address[0] == "127.0.0.1"
        assert listener.url.startswith("http://127.0.0.1:")


def test_the_mitm_is_not_an_open_proxy(
    deproxy: Deproxy, endpoint: EndpointFactory, tmp_path: Path
) -> None:
    reachable = endpoint("not-covered")
    mitm = deproxy.add_mitm_endpoint(scenarios_path=tmp_path)
    plain = deproxy.make_request(f"http://127.0.0.1:{reachable.port}/", proxy=mitm.url)
    tunnelled = deproxy.make_request(f"https://127.0.0.1:{reachable.port}/", proxy=mitm.url)
    for chain in (plain, tunnelled):
        assert chain.received_response is not None
        assert chain.received_response.message == "NoServicesForRequest"
    assert reachable.handlings == []  # nothing was forwarded
