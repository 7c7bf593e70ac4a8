"""The pytest plugin, tested by running whole pytest sessions with pytester."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def test_fixtures_are_available_and_work(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_deproxy import CertificateAuthority, Deproxy, handlers

        def test_round_trip(deproxy, endpoint, deproxy_ca):
            assert isinstance(deproxy, Deproxy)
            assert isinstance(deproxy_ca, CertificateAuthority)
            server = endpoint("backend", handlers.echo)
            chain = deproxy.make_request(server.url, "POST", request_body="hi")
            assert chain.received_response.body == "hi"
            assert deproxy.endpoints == [server]

        def test_the_ca_is_shared_by_the_session(deproxy, deproxy_ca):
            assert deproxy.ca is deproxy_ca
        """
    )
    result = pytester.runpytest_subprocess("-v")
    result.assert_outcomes(passed=2)


def test_a_raising_handler_fails_the_test_that_owns_the_deproxy(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def broken(request):
            raise KeyError("no such user")

        def test_uses_a_broken_handler(deproxy, endpoint):
            chain = deproxy.make_request(endpoint(handler=broken).url)
            assert chain.received_response.code == "500"

        def test_unaffected(deproxy, endpoint):
            assert deproxy.make_request(endpoint().url).received_response.code == "200"
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*KeyError: 'no such user'*",
            "*HandlerError: handler of endpoint 'Endpoint-*' raised KeyError: 'no such user'",
            "FAILED *test_uses_a_broken_handler*",
        ]
    )


def test_several_raising_handlers_are_all_reported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_two_failures(deproxy, endpoint):
            first = endpoint("first", lambda request: 1 / 0)
            second = endpoint("second", lambda request: [][1])
            deproxy.make_request(first.url)
            deproxy.make_request(second.url)
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*2 handlers raised in endpoint threads*", "*ZeroDivisionError*", "*IndexError*"]
    )


def test_endpoints_are_gone_after_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import socket
        import threading

        ports = []

        def test_opens_endpoints(endpoint):
            ports.extend(endpoint().port for _ in range(3))

        def test_they_are_closed():
            for port in ports:
                with socket.socket() as probe:
                    assert probe.connect_ex(("127.0.0.1", port)) != 0
            names = [t.name for t in threading.enumerate() if t.name.startswith("deproxy-")]
            # each endpoint's poll thread waits in the session's pool for the next test's
            assert names == ["deproxy-poll-idle"] * 3
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=2)


def test_a_test_failure_is_not_masked_by_handler_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_fails_itself(deproxy, endpoint):
            deproxy.make_request(endpoint(handler=lambda request: 1 / 0).url)
            assert False, "the test's own assertion"
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*the test's own assertion*", "E *meanwhile, in an endpoint thread: *ZeroDivisionError*"]
    )
