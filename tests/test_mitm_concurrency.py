"""The MITM's state under concurrent use: management calls that change the same state from
many connections at once keep every change, and replay counts hold ``max_replays``."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_deproxy import Deproxy, MitmEndpoint

from .conftest import write_interaction

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
            # PUT /services replaces the list, as INSPIRE-MITMProxy's does: each list is whole.
            names = [f"Service{worker}x{call}a", f"Service{worker}x{call}b"]
            services = [
                {"type": "BaseService", "name": name, "hosts_list": [f"{name.lower()}.local"]}
                for name in names
            ]
            statuses.append(put(deproxy, mitm, "/services", services))
            statuses.append(put(deproxy, mitm, "/config", {f"key_{worker}_{call}": call}))

    threads = [threading.Thread(target=changes, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert sorted(set(statuses)) == [201, 204]
    assert statuses.count(201) == statuses.count(204) == THREADS * CALLS
    names = [service.name for service in mitm.services]
    assert len(names) == 2 and names[0][:-1] == names[1][:-1]  # one list, never a mix
    keys = {f"key_{w}_{c}" for w in range(THREADS) for c in range(CALLS)}
    assert sorted(keys - set(mitm.config)) == []  # none lost
    assert mitm.active_scenario == "default"


def test_concurrent_requests_never_replay_an_interaction_more_than_max_replays(
    deproxy: Deproxy, tmp_path: Path, often_switching_threads: None
) -> None:
    for number, limit in enumerate([3, 2]):
        write_interaction(
            tmp_path,
            "default",
            "ApiService",
            f"interaction_{number}",
            url="http://api.example.org/once",
            body=f"answer {number}",
            extra=f"max_replays: {limit}\n",
        )
    mitm = deproxy.add_mitm_endpoint(scenarios_path=tmp_path, services=API)
    answers: list[tuple[str, str | bytes]] = []
    start = threading.Barrier(THREADS)

    def ask() -> None:
        start.wait()
        for _ in range(3):
            chain = deproxy.make_request("http://api.example.org/once", proxy=mitm.url)
            assert chain.received_response is not None, chain.error
            answers.append((chain.received_response.code, chain.received_response.body))

    threads = [threading.Thread(target=ask) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    replayed = sorted(body for code, body in answers if code == "200")
    assert replayed == ["answer 0"] * 3 + ["answer 1"] * 2
    assert [code for code, _ in answers].count("501") == 3 * THREADS - 5
    assert mitm.interactions("ApiService") == {
        "interaction_0": {"num_calls": 3},
        "interaction_1": {"num_calls": 2},
    }
    assert len(mitm.misses) == 3 * THREADS - 5
