"""Callbacks of replayed interactions: failures reach the test with their cause, and shutdown
wakes, joins and accounts for every callback thread."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_deproxy import Deproxy, MitmEndpoint
from pytest_deproxy.errors import DeproxyError, NetworkError

from .conftest import deproxy_checking_its_own_errors, eventually, write_interaction

API = [{"type": "BaseService", "name": "ApiService", "hosts_list": ["api.example.org"]}]


def with_callback(root: Path, url: str, delay: float = 0) -> Path:
    return write_interaction(
        root,
        "default",
        "ApiService",
        "interaction_0",
        url="http://api.example.org/upload",
        body="queued",
        extra=f"callbacks:\n- delay: {delay}\n  request: {{method: POST, url: '{url}'}}\n",
    )


def replay(deproxy: Deproxy, root: Path) -> MitmEndpoint:
    mitm = deproxy.add_mitm_endpoint(scenarios_path=root, services=API)
    chain = deproxy.make_request("http://api.example.org/upload", proxy=mitm.url)
    assert chain.received_response is not None and chain.received_response.body == "queued"
    return mitm


def callback_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("deproxy-mitm-callback-")]


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port bound but not listening: every connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (in the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def test_a_callback_that_cannot_connect_fails_the_test_with_its_cause(
    tmp_path: Path, refusing_port: int
) -> None:
    path = with_callback(tmp_path, f"http://127.0.0.1:{refusing_port}/done")
    with deproxy_checking_its_own_errors() as deproxy:
        mitm = replay(deproxy, tmp_path)
        eventually(lambda: deproxy.errors)
        [error] = deproxy.errors
    assert isinstance(error, DeproxyError)
    assert str(error).startswith(
        f"callback POST http://127.0.0.1:{refusing_port}/done ({path}:12) failed: "
    )
    assert isinstance(error.__cause__, NetworkError)  # the failure itself, not a copy of its text
    assert isinstance(error.__cause__.__cause__, ConnectionRefusedError)
    assert mitm.errors == []  # the test's error report, not a list of the endpoint's own


def test_a_callback_url_that_expands_to_no_http_url_fails_the_test_with_its_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLBACK_URL", "ftp://files.example.org/done")
    with_callback(tmp_path, "${CALLBACK_URL}")
    with deproxy_checking_its_own_errors() as deproxy:
        replay(deproxy, tmp_path)
        eventually(lambda: deproxy.errors)
        [error] = deproxy.errors
    assert "callback POST ftp://files.example.org/done" in str(error)
    assert "is not an http:// or https:// URL" in str(error)
    assert isinstance(error.__cause__, ValueError)


def test_shutdown_wakes_a_callback_waiting_for_its_delay_and_it_is_never_sent(
    tmp_path: Path,
) -> None:
    with Deproxy() as deproxy:
        receiver = deproxy.add_endpoint(name="receiver")
        with_callback(tmp_path, f"{receiver.url}/done", delay=3600)
        replay(deproxy, tmp_path)
        [waiting] = callback_threads()
        assert waiting.is_alive()
    assert not waiting.is_alive()  # joined by shutdown, not left for the next test
    assert deproxy.errors == []
    assert receiver.handlings == []


def test_a_callback_whose_server_never_answers_is_reported_at_shutdown(
    tmp_path: Path, silent_port: int
) -> None:
    with_callback(tmp_path, f"http://127.0.0.1:{silent_port}/done")
    with deproxy_checking_its_own_errors() as deproxy:
        replay(deproxy, tmp_path)
        [sending] = callback_threads()
    [error] = deproxy.errors
    assert str(error) == (
        f"thread {sending.name} of endpoint 'mitm' did not stop within 5.0 s of shutdown and "
        "was left running: its callback's server did not answer"
    )
