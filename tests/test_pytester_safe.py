"""The lazily loaded packages with compiled parts (trustme's cryptography, PyYAML's C
parser) survive a pytester run in process: such a run takes the modules first imported
during it out of sys.modules, and a compiled module loaded again keeps its first classes."""

from __future__ import annotations

import pytest

USES_TLS_AND_THE_MITM = """
from pytest_deproxy import Response


def test_tls_and_mitm(deproxy, tmp_path):
    endpoint = deproxy.add_endpoint(tls=True, default_handler=Response(200, body="secret"))
    assert deproxy.make_request(endpoint.url).received_response.body == "secret"
    upstream = deproxy.add_endpoint(default_handler=Response(200, body="recorded"))
    services = [{"type": "BaseService", "name": "Api", "hosts_list": ["api.example.org"]}]
    recorder = deproxy.add_mitm_endpoint(
        scenarios_path=tmp_path,
        services=services,
        record=True,
        upstreams={"api.example.org": upstream.url},
    )
    replayer = deproxy.add_mitm_endpoint(scenarios_path=tmp_path, services=services, name="r")
    for mitm in (recorder, replayer):
        chain = deproxy.make_request("http://api.example.org/x", proxy=mitm.url)
        assert chain.received_response.body == "recorded"
"""

# The outer suite runs in a fresh process (nothing imported yet), its first test running the
# inner one in process, as a plugin's own tests do; its second test then does the same again.
OUTER = f"""
pytest_plugins = ["pytester"]
INNER = {USES_TLS_AND_THE_MITM!r}


def test_first_in_an_inner_run(pytester):
    pytester.makepyfile(INNER)
    pytester.runpytest("-p", "no:cacheprovider", "-q").assert_outcomes(passed=1)


exec(INNER.replace("def test_tls_and_mitm", "def test_then_in_this_one"))
"""


def test_tls_and_the_mitm_work_after_a_pytester_run_that_first_loaded_them(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_outer=OUTER)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2)
