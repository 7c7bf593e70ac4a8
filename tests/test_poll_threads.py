"""Poll threads kept between servers (issue 18's fixture cost): a pool lends a waiting thread,
and its poller, to the next server's loop without waking it (the loop begins when what it
watches is ready, or it is woken), keeps no more threads than it says, and ends every thread
it kept when it is shut down; unpooled, each run's thread ends with it. Behaviour, never
timing."""

from __future__ import annotations

import os
import socket
import threading
import warnings
from collections.abc import Callable, Iterator

import pytest

from pytest_deproxy import Deproxy, net
from pytest_deproxy.pollthreads import IDLE_NAME, UNPOOLED, PollRun, PollThreads


@pytest.fixture
def pool() -> Iterator[PollThreads]:
    threads = PollThreads(keep_idle=2)
    yield threads
    threads.shutdown()


def _running_on(
    seen: list[int], release: threading.Event | None = None
) -> Callable[[net.Poller], None]:
    def target(poller: net.Poller) -> None:
        seen.append(threading.get_ident())
        if release is not None:
            assert release.wait(10)

    return target


def _begun(pool: PollThreads, target: Callable[[net.Poller], None], name: str) -> PollRun:
    """A run lent and woken at once (an endpoint's begins at its first connection)."""
    run = pool.run(target, name)
    run.poller.wake()
    return run


def _named(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_a_run_is_named_after_its_server_and_its_thread_waits_afterwards(
    pool: PollThreads,
) -> None:
    release, seen = threading.Event(), list[int]()
    run = _begun(pool, _running_on(seen, release), "deproxy-first-poll")
    assert [t.name for t in _named("deproxy-first-poll")] == ["deproxy-first-poll"]
    assert run.is_alive()
    release.set()
    run.join(10)
    assert not run.is_alive()
    assert _named("deproxy-first-poll") == []
    (waiting,) = [t for t in _named(IDLE_NAME) if t.ident == seen[0]]
    again = _begun(pool, _running_on(seen), "deproxy-second-poll")
    again.join(10)
    assert seen[1] == seen[0]  # the waiting thread ran the next loop
    assert waiting.is_alive()


def test_a_pool_keeps_no_more_threads_than_it_says(pool: PollThreads) -> None:
    release, seen = threading.Event(), list[int]()
    runs = [_begun(pool, _running_on(seen, release), f"deproxy-many-{n}-poll") for n in range(3)]
    release.set()
    for run in runs:
        run.join(10)
    kept = [t for t in threading.enumerate() if t.ident in seen]
    assert len(kept) == 2 and {t.name for t in kept} == {IDLE_NAME}


def test_shutdown_ends_every_waiting_thread_and_later_runs_end_theirs(
    pool: PollThreads,
) -> None:
    seen: list[int] = []
    _begun(pool, _running_on(seen), "deproxy-before-poll").join(10)
    pool.shutdown()
    pool.shutdown()  # twice: nothing more to do
    assert not any(t.ident == seen[0] for t in threading.enumerate())
    _begun(pool, _running_on(seen), "deproxy-after-poll").join(10)
    assert not any(t.ident in seen for t in threading.enumerate())


def test_unpooled_runs_end_their_threads_before_join_returns() -> None:
    seen: list[int] = []
    _begun(UNPOOLED, _running_on(seen), "deproxy-alone-poll").join(10)
    assert not any(t.ident == seen[0] for t in threading.enumerate())


def test_a_loop_that_raises_ends_its_thread_and_is_still_joined(
    pool: PollThreads, monkeypatch: pytest.MonkeyPatch
) -> None:
    raised: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_value))
    seen: list[int] = []

    def broken(poller: net.Poller) -> None:
        seen.append(threading.get_ident())
        raise RuntimeError("a bug in a poll loop")

    run = _begun(pool, broken, "deproxy-broken-poll")
    run.join(10)
    assert not run.is_alive()
    assert not any(t.ident == seen[0] for t in threading.enumerate())
    assert [str(error) for error in raised] == ["a bug in a poll loop"]


def test_a_lent_thread_is_not_woken_until_what_its_run_watches_is_ready(
    pool: PollThreads,
) -> None:
    _begun(pool, _running_on([]), "deproxy-earlier-poll").join(10)  # one thread waits
    seen: list[int] = []
    run = pool.run(_running_on(seen), "deproxy-lent-poll")
    listener = net.listen("127.0.0.1", 0)
    try:
        run.poller.watch(listener, None)
        run.join(0.2)  # nothing is ready: the loop has not begun
        assert seen == [] and run.is_alive()
        with socket.create_connection(listener.getsockname()[:2], timeout=10):
            run.join(10)  # a connection is ready: the thread wakes, runs the loop
        assert len(seen) == 1 and not run.is_alive()
    finally:
        listener.close()


def test_what_an_ended_run_left_watched_is_forgotten(pool: PollThreads) -> None:
    left = socket.socketpair()
    try:

        def leaves_one_watched(poller: net.Poller) -> None:
            poller.watch(left[0], "left behind")

        _begun(pool, leaves_one_watched, "deproxy-leaving-poll").join(10)
        left[1].sendall(b"ready")  # would wake the waiting thread, were it still watched
        seen: list[int] = []
        run = pool.run(_running_on(seen), "deproxy-next-poll")
        run.join(0.2)
        assert seen == []  # not begun: the old socket woke nothing
        run.poller.wake()
        run.join(10)
        assert len(seen) == 1
    finally:
        for end in left:
            end.close()


def test_the_deproxy_fixtures_endpoints_reuse_one_thread_across_deproxies(
    pool: PollThreads,
) -> None:
    threads = []
    for _ in range(3):
        deproxy = Deproxy()
        deproxy._poll_threads = pool
        with deproxy:
            server = deproxy.add_endpoint(name="reused")
            answer = deproxy.make_request(server.url).received_response
            assert answer is not None and answer.code == "200"
            (poll,) = _named("deproxy-reused-poll")
            threads.append(poll)
        assert _named("deproxy-reused-poll") == []
    assert all(thread is threads[0] for thread in threads)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() only")
def test_a_forked_child_starts_with_an_empty_pool(pool: PollThreads) -> None:
    _begun(pool, _running_on([]), "deproxy-parent-poll").join(10)  # one thread waits, here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads: 3.12+
        child = os.fork()
    if child == 0:  # pragma: no cover (the child's outcome is its exit status)
        ran = threading.Event()
        status = 1
        try:
            _begun(pool, lambda poller: ran.set(), "deproxy-child-poll").join(5)
            status = 0 if ran.is_set() else 1
        finally:
            os._exit(status)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
