"""The MITM's state under concurrent use: management calls that change the same state from
many connections at once keep every change, and a failing callback tells the test why."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_deproxy import Deproxy, MitmEndpoint

API = [{"type": "BaseService", "name": "ApiService", "hosts_list": ["api.example.org"]}]
MANAGER = "http://mitm-manager.local"
THREADS = 8
CALLS = 12


@pytest.fixture
def often_switching_threads() -> Iterator[None]:
    """Let the interpreter switch threads far more often than it does, so that a
    read-modify-write left unguarded loses updates in nearly every run, not once in a while."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def put(deproxy: Deproxy, mitm: MitmEndpoint, path: str, document: object) -> int:
    chain = deproxy.make_request(
        MANAGER + path,
        "PUT",
        {"Content-Type": "application/json"},
        json.dumps(document),
        proxy=mitm.url,
    )
    assert chain.received_response is not None, chain.error
    return int(chain.received_response.code)


def test_concurrent_service_and_config_changes_through_the_api_all_take_effect(
    deproxy: Deproxy, tmp_path: Path, often_switching_threads: None
) -> None:
    mitm = deproxy.add_mitm_endpoint(scenarios_path=tmp_path, services=API)
    statuses: list[int] = []
    start = threading.Barrier(THREADS)

    def changes(worker: int) -> None:
        start.wait()
        for call in range(CALLS):
            name = f"Service{worker}x{call}"
            service = {"type": "BaseService", "name": name, "hosts_list": [f"{name.lower()}.local"]}
            statuses.append(put(deproxy, mitm, "/services", [service]))
            statuses.append(put(deproxy, mitm, "/config", {f"key_{worker}_{call}": call}))

    threads = [threading.Thread(target=changes, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert statuses == [204] * (2 * THREADS * CALLS)
    added = {f"Service{w}x{c}" for w in range(THREADS) for c in range(CALLS)}
    names = [service.name for service in mitm.services]
    assert names[0] == "ApiService"
    assert sorted(added - set(names)) == []  # none lost
    assert len(names) == len(set(names)) == 1 + len(added)
    keys = {f"key_{w}_{c}" for w in range(THREADS) for c in range(CALLS)}
    assert sorted(keys - set(mitm.config)) == []  # none lost
    assert mitm.active_scenario == "default"
