"""pytest-xdist: endpoints and a MITM per worker, and recording from several workers into one
scenario without losing or overwriting an interaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_deproxy.mitm.interactions import load_interaction

pytest.importorskip("xdist")

RECORDING_TESTS = """
import pytest
from pytest_deproxy import Response

SERVICES = [{"type": "BaseService", "name": "ApiService", "hosts_list": ["api.example.org"]}]

@pytest.mark.parametrize("number", range(16))
def test_records(deproxy, endpoint, number):
    upstream = endpoint("real-api", Response(200, body=f"answer {number}"))
    mitm = deproxy.add_mitm_endpoint(
        scenarios_path=SCENARIOS, services=SERVICES, active_scenario="shared", record=True,
        upstreams={"api.example.org": upstream.url},
    )
    chain = deproxy.make_request(f"http://api.example.org/item/{number}", proxy=mitm.url)
    assert chain.received_response.body == f"answer {number}"
"""


def test_four_workers_record_into_one_scenario(pytester: pytest.Pytester) -> None:
    scenarios = pytester.path / "recorded"
    pytester.makepyfile(f"SCENARIOS = {str(scenarios)!r}\n" + RECORDING_TESTS)
    result = pytester.runpytest_subprocess("-n", "4", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=16)
    result.stdout.fnmatch_lines(["*4 workers*"])
    files = sorted((scenarios / "shared" / "ApiService").iterdir())
    assert [f.name for f in files] == sorted(f"interaction_{n}.yaml" for n in range(16))
    urls = sorted(load_interaction(Path(f)).request.url for f in files)
    assert urls == sorted(f"http://api.example.org/item/{n}" for n in range(16))
