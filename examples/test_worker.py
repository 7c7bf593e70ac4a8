"""Testing a program end to end while its external APIs are replayed by the MITM endpoint.

The worker runs as a real subprocess; ``mitm.proxy_env()`` routes its HTTP and HTTPS traffic
through the MITM and makes it trust the MITM's CA. The scenarios are in ``examples/scenarios``
(``deproxy_scenarios_path`` in ``pyproject.toml``); the marker picks one per test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_deproxy import MitmEndpoint

WORKER = Path(__file__).with_name("worker.py")


def run_worker(mitm: MitmEndpoint) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    env.update(mitm.proxy_env())
    return subprocess.run(
        [sys.executable, str(WORKER)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.deproxy_scenario("geneva_sunny")
def test_the_worker_summarises_both_apis(mitm: MitmEndpoint) -> None:
    result = run_worker(mitm)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "Geneva: sunny, 24 C; 1 EUR = 0.94 CHF\n"
    mitm.assert_interaction_used("WeatherService", "interaction_0", times=1)
    mitm.assert_interaction_used("RatesService", "interaction_0", times=1)


@pytest.mark.deproxy_scenario("rates_down")
def test_the_worker_reports_an_api_outage(mitm: MitmEndpoint) -> None:
    result = run_worker(mitm)

    assert result.returncode == 1
    assert (
        "rates.example/latest?base=EUR&symbols=CHF answered 503 Service Unavailable"
        in result.stderr
    )
    assert "maintenance until 06:00" in result.stderr


@pytest.mark.deproxy_scenario("geneva_sunny")
def test_an_unexpected_call_is_a_501_that_says_why(mitm: MitmEndpoint) -> None:
    run_worker(mitm)
    result = run_worker(mitm)  # the rate interaction may be replayed once only (max_replays: 1)

    assert result.returncode == 1
    assert "answered 501 NoMatchingRecording" in result.stderr
    assert "matches but is used up: max_replays 1, replayed 1 times" in result.stderr
