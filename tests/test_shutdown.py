"""Shutdown frees ports at once, joins every thread, and is safe to repeat."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from pytest_deproxy import Deproxy, handlers

from .conftest import working_threads


def test_shutdown_twice_and_the_port_can_be_bound_again() -> None:
    deproxy = Deproxy()
    server = deproxy.add_endpoint()
    port = server.port
    with deproxy.connect(server.url) as connection:  # an idle keep-alive connection stays open
        deproxy.make_request(server.url, connection=connection)
        deproxy.shutdown()
        deproxy.shutdown()
    server.shutdown()
    again = Deproxy()
    try:
        assert again.add_endpoint(port=port).port == port
    finally:
        again.shutdown()


def test_no_thread_or_socket_is_left() -> None:
    before = set(working_threads())
    with Deproxy() as deproxy:
        server = deproxy.add_endpoint()
        idle = socket.create_connection(("127.0.0.1", server.port))
        deproxy.make_request(server.url)
    idle.close()
    assert set(working_threads()) - before == set()
    refused = socket.socket()
    try:
        assert refused.connect_ex(("127.0.0.1", server.port)) != 0
    finally:
        refused.close()


def test_shutdown_does_not_wait_for_a_delaying_handler() -> None:
    deproxy = Deproxy()
    server = deproxy.add_endpoint(default_handler=handlers.delay(60))
    result: list[object] = []
    caller = threading.Thread(
        target=lambda: result.append(deproxy.make_request(server.url, timeout=30))
    )
    caller.start()
    while not any("conn" in t.name for t in working_threads()):
        time.sleep(0.01)
    started = time.monotonic()
    deproxy.shutdown()
    caller.join(30)
    # Generous bound: the point is "not 60 seconds", which no busy machine turns into a flake.
    assert time.monotonic() - started < 30
    assert working_threads() == []


def test_adding_an_endpoint_after_shutdown_is_refused() -> None:
    deproxy = Deproxy()
    deproxy.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        deproxy.add_endpoint()


def test_long_runs_can_cap_what_is_kept() -> None:
    with Deproxy(keep_chains=3) as deproxy:
        server = deproxy.add_endpoint(keep_handlings=2)
        chains = [deproxy.make_request(server.url) for _ in range(5)]
        assert deproxy.chains == chains[-3:]
        assert [h.request_id for h in server.handlings] == [c.request_id for c in chains[-2:]]
        assert all(len(chain.handlings) == 1 for chain in chains)  # each chain keeps its own
        forgetful = deproxy.add_endpoint(keep_handlings=0)
        kept_by_chain = deproxy.make_request(forgetful.url)
        assert forgetful.handlings == []
        assert len(kept_by_chain.handlings) == 1
