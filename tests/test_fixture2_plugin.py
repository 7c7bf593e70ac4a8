"""The ``deproxy`` fixture asks pytest for the session's ``deproxy_ca`` only when a test first
needs a CA (issue 18's fixture cost: a session fixture requested by a function fixture costs
pytest work, and a finalizer it keeps to the end of the session, on every test). The CA is
still the session's, an override of ``deproxy_ca`` is still the one used, and a CA first
needed on an endpoint's thread still comes from it."""

from __future__ import annotations

import pytest

COUNTING_CONFTEST = """
import pytest
from pytest_deproxy import CertificateAuthority

MADE = []


@pytest.fixture(scope="session")
def deproxy_ca():
    ca = CertificateAuthority()
    MADE.append(ca)
    yield ca
    ca.close()


def pytest_sessionfinish(session):
    print("CAS MADE:", len(MADE))
"""


def test_tests_without_tls_never_set_up_the_session_ca(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(COUNTING_CONFTEST)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", range(5))
        def test_plain(deproxy, endpoint, n):
            server = endpoint()
            assert deproxy.make_request(server.url).received_response.code == "200"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-s")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*CAS MADE: 0"])


def test_tls_tests_share_the_overriding_session_ca(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(COUNTING_CONFTEST)
    pytester.makepyfile(
        """
        import conftest

        def test_tls(deproxy, endpoint):
            server = endpoint(tls=True)
            assert deproxy.make_request(server.url).received_response.code == "200"
            assert deproxy.ca is conftest.MADE[0] and server.ca is deproxy.ca

        def test_plain_in_between(deproxy, endpoint):
            endpoint()

        def test_tls_again_and_the_fixture_asked_for(deproxy, endpoint, deproxy_ca):
            assert deproxy.ca is deproxy_ca is conftest.MADE[0]
            server = endpoint(tls=True)
            assert deproxy.make_request(server.url).received_response.code == "200"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-s")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*CAS MADE: 1"])


def test_a_ca_first_needed_on_an_endpoint_thread_is_the_session_one(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        from pytest_deproxy import Response

        SEEN = []

        def tell_the_ca(request, context):
            return Response(200, body=context.endpoint.ca.cert_pem)

        def test_on_a_thread(deproxy, endpoint):
            server = endpoint(handler=tell_the_ca)
            body = deproxy.make_request(server.url).received_response.body.encode()
            SEEN.append(body)
            assert body == deproxy.ca.cert_pem

        def test_then_the_fixture(deproxy, deproxy_ca):
            assert deproxy.ca is deproxy_ca
            assert SEEN == [deproxy_ca.cert_pem]
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=2)
