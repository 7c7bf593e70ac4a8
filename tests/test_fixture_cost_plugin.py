"""The fixtures over a whole session (issue 18's fixture cost): every test that used
``deproxy`` + ``endpoint`` + one request ends with its threads gone or waiting in the
session's pool (which the next test's endpoints take, so that there are never more than a
test used at once, each holding its poller's two descriptors) and its descriptors closed;
none of it is left for the next test, and no thread outlives the session. Behaviour, never
timing."""

from __future__ import annotations

import sys

import pytest

CHECKING_CONFTEST = """
import atexit
import os
import threading

import pytest

from pytest_deproxy.pollthreads import IDLE_NAME

LEFT = []
IDLE = [0]


def _descriptors():
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


def _idle():
    return sum(t.name == IDLE_NAME for t in threading.enumerate())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    before, idle_before = _descriptors(), _idle()
    result = yield
    # After the item's teardown: the deproxy fixture has shut everything down.
    threads = [
        t.name for t in threading.enumerate() if t.name.startswith("deproxy-") and t.name != IDLE_NAME
    ]
    IDLE.append(_idle())
    # A poll thread the session keeps holds its poller (an epoll and an eventfd), no more.
    if threads or _descriptors() - before > 2 * (_idle() - idle_before):
        LEFT.append((item.name, threads, _descriptors() - before))
    return result


def pytest_sessionfinish(session):
    print("LEFT AFTER TESTS:", LEFT or "nothing")
    print("IDLE POLL THREADS AT MOST:", max(IDLE))


@atexit.register
def _after_the_session():  # pytest_unconfigure has run: the session's pool is shut down
    left = [t.name for t in threading.enumerate() if t.name.startswith("deproxy-")]
    print("DEPROXY THREADS AT EXIT:", left or "none")
"""

SUITE = """
import pytest


@pytest.mark.parametrize("n", range(40))
def test_one_request(deproxy, endpoint, n):
    server = endpoint()
    assert deproxy.make_request(server.url).received_response.code == "200"
    assert len(server.connections) == 1


@pytest.mark.parametrize("n", range(10))
def test_endpoints_never_asked(deproxy, endpoint, n):
    endpoint()
    endpoint()
    assert deproxy.chains == []


def test_a_request_in_flight_at_teardown(deproxy, endpoint):
    server = endpoint()
    deproxy.make_request(server.url, disconnect="after_headers")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/self/fd")
def test_every_test_ends_with_its_threads_gone_and_descriptors_closed(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(CHECKING_CONFTEST)
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-s")
    result.assert_outcomes(passed=51)
    result.stdout.fnmatch_lines(
        [
            "*LEFT AFTER TESTS: nothing",
            # two endpoints at most in a test: the others took the threads those left waiting
            "IDLE POLL THREADS AT MOST: 2",
            "DEPROXY THREADS AT EXIT: none",
        ]
    )


def test_a_thread_that_will_not_stop_still_fails_its_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import threading
        from pytest_deproxy import Response, serving

        serving.JOIN_TIMEOUT = 0.5
        release = threading.Event()

        def stuck(request, context):
            release.wait(5)  # not context.sleep(): shutdown cannot wake it
            return Response(200)

        def test_stuck(deproxy, endpoint):
            server = endpoint(handler=stuck)
            deproxy.make_request(server.url, timeout=0.2)

        def test_after(deproxy, endpoint):
            release.set()
            server = endpoint()
            assert deproxy.make_request(server.url).received_response.code == "200"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)  # test_stuck passes, its teardown errs
    result.stdout.fnmatch_lines(["*did not stop within 0.5 s of shutdown*"])
