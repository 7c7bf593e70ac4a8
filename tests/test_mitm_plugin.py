"""The mitm fixture, its marker and its options, in whole pytest sessions."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import write_interaction

SERVICES = "services:\n- {type: BaseService, name: ApiService, hosts_list: [api.example.org]}\n"
TEST_FILE = """
import pytest

def answer(deproxy, mitm):
    return deproxy.make_request("http://api.example.org/which", proxy=mitm.url).received_response.body

def test_default_choice(deproxy, mitm):
    print("ANSWER", answer(deproxy, mitm), "RECORDING", mitm.recording)

@pytest.mark.deproxy_scenario("marked")
def test_marked(deproxy, mitm):
    assert answer(deproxy, mitm) == "marked"
"""


def make_scenarios(root: Path) -> None:
    for scenario in ("default", "chosen", "marked"):
        write_interaction(
            root,
            scenario,
            "ApiService",
            "interaction_0",
            url="http://api.example.org/which",
            body=scenario,
        )
    (root / "services.yaml").write_text(SERVICES)


def test_scenarios_under_the_rootdir_by_default(pytester: pytest.Pytester) -> None:
    make_scenarios(pytester.path / "scenarios")
    pytester.makepyfile(TEST_FILE)
    result = pytester.runpytest_subprocess("-s")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*ANSWER default RECORDING False*"])


def test_the_option_picks_the_scenario_and_the_marker_wins(pytester: pytest.Pytester) -> None:
    make_scenarios(pytester.path / "scenarios")
    pytester.makepyfile(TEST_FILE)
    result = pytester.runpytest_subprocess("-s", "--deproxy-scenario", "chosen", "--deproxy-record")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*ANSWER chosen RECORDING True*"])


def test_the_path_comes_from_the_option_then_the_ini(pytester: pytest.Pytester) -> None:
    make_scenarios(pytester.path / "elsewhere" / "recorded")
    pytester.makeini("[pytest]\ndeproxy_scenarios_path = elsewhere/recorded\n")
    pytester.makepyfile(TEST_FILE)
    pytester.runpytest_subprocess("-s").assert_outcomes(passed=2)
    make_scenarios(pytester.path / "by-option")
    (pytester.path / "by-option" / "default" / "ApiService" / "interaction_0.yaml").write_text(
        (pytester.path / "by-option" / "chosen" / "ApiService" / "interaction_0.yaml").read_text()
    )
    result = pytester.runpytest_subprocess(
        "-s", "--deproxy-scenarios-path", str(pytester.path / "by-option")
    )
    result.stdout.fnmatch_lines(["*ANSWER chosen*"])


def test_a_failing_test_reports_the_requests_nothing_matched(pytester: pytest.Pytester) -> None:
    make_scenarios(pytester.path / "scenarios")
    pytester.makepyfile(
        """
        def test_calls_something_unrecorded(deproxy, mitm):
            response = deproxy.make_request("http://api.example.org/never", proxy=mitm.url).received_response
            assert response.code == "200"
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- deproxy: requests no recorded interaction matched -*",
            "no recorded interaction of service 'ApiService' in scenario 'default' matches",
            "  GET http://api.example.org/never",
            "*url (exact): recorded 'http://api.example.org/which', received 'http://api.example.org/never'",
        ]
    )


def test_a_bad_marker_is_a_usage_error(pytester: pytest.Pytester) -> None:
    (pytester.path / "scenarios").mkdir()
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.deproxy_scenario()
        def test_no_name(mitm):
            pass
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*deproxy_scenario takes one scenario name*got ()*"])
