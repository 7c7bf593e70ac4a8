"""Load: 200 concurrent client connections against one endpoint and through the MITM.

Every request is answered and recorded, and no thread or file descriptor is left after
shutdown. CI runs 2,000 requests per test; ``--full-load`` runs the full 20,000.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_deproxy import ClientConnection, Deproxy, MessageChain

from .conftest import working_threads, write_interaction

CONNECTIONS = 200


@pytest.fixture
def per_connection(request: pytest.FixtureRequest) -> int:
    return 100 if request.config.getoption("--full-load") else 10


def open_descriptors() -> int:
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


def deproxy_threads() -> set[str]:
    return {t.name for t in working_threads()}


def hammer(
    deproxy: Deproxy,
    url: str,
    per_connection: int,
    send: Callable[[ClientConnection], MessageChain],
) -> list[MessageChain]:
    """CONNECTIONS threads, each with its own keep-alive connection, all started together."""
    chains: list[MessageChain] = []
    lock = threading.Lock()
    start = threading.Barrier(CONNECTIONS, timeout=60)

    def client() -> None:
        with deproxy.connect(url, timeout=60) as connection:
            start.wait()
            mine = [send(connection) for _ in range(per_connection)]
        with lock:
            chains.extend(mine)

    threads = [threading.Thread(target=client, name=f"load-client-{n}") for n in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return chains


@pytest.mark.timeout(600)
def test_one_endpoint_under_200_connections(per_connection: int) -> None:
    descriptors, threads = open_descriptors(), deproxy_threads()
    with Deproxy() as deproxy:
        server = deproxy.add_endpoint()
        chains = hammer(
            deproxy,
            server.url,
            per_connection,
            lambda c: deproxy.make_request(server.url, connection=c),
        )
        total = CONNECTIONS * per_connection
        assert len(chains) == total
        assert [c.error for c in chains if c.error] == []
        assert all(
            c.received_response is not None and c.received_response.code == "200" for c in chains
        )
        assert all(len(c.handlings) == 1 for c in chains)
        handlings = server.handlings
        assert len(handlings) == total
        assert len({h.connection for h in handlings}) == CONNECTIONS
    assert deproxy_threads() == threads
    assert open_descriptors() <= descriptors


@pytest.mark.timeout(600)
def test_the_mitm_under_200_connections(per_connection: int, tmp_path: Path) -> None:
    write_interaction(
        tmp_path,
        "default",
        "ApiService",
        "interaction_0",
        url="http://api.example.org/items",
        body="items",
    )
    services = [{"type": "BaseService", "name": "ApiService", "hosts_list": ["api.example.org"]}]
    descriptors, threads = open_descriptors(), deproxy_threads()
    with Deproxy() as deproxy:
        mitm = deproxy.add_mitm_endpoint(scenarios_path=tmp_path, services=services)

        def replay(connection: ClientConnection) -> MessageChain:
            return deproxy.make_request(
                mitm.url,
                path="http://api.example.org/items",
                host="api.example.org",
                connection=connection,
            )

        chains = hammer(deproxy, mitm.url, per_connection, replay)
        total = CONNECTIONS * per_connection
        assert [c.error for c in chains if c.error] == []
        assert all(c.received_response.body == "items" for c in chains)  # type: ignore[union-attr]
        assert len(mitm.handlings) == total
        assert mitm.interactions("ApiService") == {"interaction_0": {"num_calls": total}}
    assert deproxy_threads() == threads
    assert open_descriptors() <= descriptors
