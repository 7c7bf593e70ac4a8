"""An endpoint's poll thread is started without waiting for it to run (issue 18's fixture
cost: ``Thread.start()`` waits for the new thread to be scheduled and take the GIL), and is
still joined by shutdown, whenever it begins. Behaviour, never timing: the tests hold the GIL
on the test's thread (a long switch interval) so that the new thread cannot begin until the
test's thread waits for something."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from pytest_deproxy import Deproxy
from pytest_deproxy.pollthreads import start_unawaited


@pytest.fixture
def gil_kept() -> Iterator[None]:
    """The test's thread keeps the GIL until it blocks (for at most 30 s of running)."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(30)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def _threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def test_add_endpoint_returns_before_its_poll_thread_runs_and_it_still_serves(
    gil_kept: None,
) -> None:
    with Deproxy() as deproxy:
        server = deproxy.add_endpoint(name="early")
        (poll,) = _threads("deproxy-early-poll")  # listed from the start...
        begun_at_return = poll.is_alive()  # ...but not begun: nothing waited for it
        chain = deproxy.make_request(server.url)  # the connection waited in the listen queue
        assert chain.received_response is not None
        assert chain.received_response.code == "200"
    assert begun_at_return is False
    assert _threads("deproxy-early-") == []


def test_shutdown_before_the_poll_thread_ran_still_joins_it_and_closes_everything(
    gil_kept: None,
) -> None:
    deproxy = Deproxy()
    server = deproxy.add_endpoint(name="never-ran")
    (poll,) = _threads("deproxy-never-ran-poll")
    assert not poll.is_alive()
    deproxy.shutdown()
    assert not poll.is_alive() and poll.ident is not None  # it ran, and has ended
    assert _threads("deproxy-never-ran-") == []
    assert server.errors == [] and deproxy.errors == []


def test_start_unawaited_leaves_the_thread_joinable_and_its_event_whole() -> None:
    """What start_unawaited assumes of ``threading`` (a private event whose ``wait`` it
    shadows for one call), checked against the running Python."""
    ran = threading.Event()
    thread = threading.Thread(target=ran.set, name="fixture2-unawaited")
    start_unawaited(thread)
    assert thread in threading.enumerate() or ran.is_set()
    assert ran.wait(10)
    thread.join(10)
    assert not thread.is_alive()
    started = getattr(thread, "_started", None)
    if started is not None:  # the shadowing wait was taken away again
        assert "wait" not in vars(started)
        assert started.wait(0) is True
    with pytest.raises(RuntimeError):
        thread.start()  # a thread starts once, as ever
