"""Real clients through the MITM via HTTP(S)_PROXY: curl and a Python worker as subprocesses,
requests and httpx in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import requests

from pytest_deproxy import Deproxy, Endpoint, MitmEndpoint, Response

from .conftest import find_program, write_interaction

EndpointFactory = Callable[..., Endpoint]
SERVICES = [
    {"type": "BaseService", "name": "ApiService", "hosts_list": ["api.example.org"]},
    {"type": "WhitelistService", "name": "WhitelistService", "hosts_list": ["search.internal"]},
]


@pytest.fixture
def mitm(deproxy: Deproxy, endpoint: EndpointFactory, tmp_path: Path) -> MitmEndpoint:
    write_interaction(
        tmp_path,
        "default",
        "ApiService",
        "interaction_0",
        url="https://api.example.org/v1/users",
        body='{"users": 3}',
    )
    write_interaction(
        tmp_path,
        "default",
        "ApiService",
        "interaction_1",
        url="http://api.example.org/plain",
        body="plain",
    )
    search = endpoint(
        "search", Response(200, headers={"Content-Type": "text/plain"}, body="live search")
    )
    return deproxy.add_mitm_endpoint(
        scenarios_path=tmp_path, services=SERVICES, upstreams={"search.internal": search.url}
    )


@pytest.fixture
def proxied(mitm: MitmEndpoint, monkeypatch: pytest.MonkeyPatch) -> MitmEndpoint:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in mitm.proxy_env().items():
        monkeypatch.setenv(name, value)
    return mitm


def run_curl(mitm: MitmEndpoint, *args: str) -> subprocess.CompletedProcess[bytes]:
    curl = find_program("curl", "curl")
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    env.update(mitm.proxy_env())
    return subprocess.run(
        [curl, "--silent", "--show-error", *args],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_curl_replay_over_https_and_http(mitm: MitmEndpoint) -> None:
    secure = run_curl(mitm, "https://api.example.org/v1/users")
    assert secure.returncode == 0, secure.stderr
    assert json.loads(secure.stdout) == {"users": 3}
    plain = run_curl(mitm, "http://api.example.org/plain")
    assert plain.stdout == b"plain"
    mitm.assert_interaction_used("ApiService", "interaction_0", times=1)


def test_curl_sees_a_501_for_an_unrecorded_request(mitm: MitmEndpoint) -> None:
    result = run_curl(
        mitm, "--write-out", "\n%{http_code}", "https://api.example.org/v2/unrecorded"
    )
    body, _, code = result.stdout.decode().rpartition("\n")
    assert code == "501"
    assert "NoMatchingRecording" in body
    assert "https://api.example.org/v2/unrecorded" in body


def test_curl_management_and_whitelist(mitm: MitmEndpoint) -> None:
    switched = run_curl(
        mitm,
        "-X",
        "PUT",
        "--data",
        '{"active_scenario": "later"}',
        "http://mitm-manager.local/config",
    )
    assert switched.returncode == 0, switched.stderr
    assert mitm.active_scenario == "later"
    assert run_curl(mitm, "https://search.internal/q").stdout == b"live search"


def test_requests_in_process(proxied: MitmEndpoint) -> None:
    with (
        requests.Session() as session
    ):  # trust_env: proxies and CA bundle come from the environment
        assert session.get("https://api.example.org/v1/users", timeout=30).json() == {"users": 3}
        assert session.get("http://api.example.org/plain", timeout=30).text == "plain"
        missing = session.get("https://api.example.org/nope", timeout=30)
    assert missing.status_code == 501
    assert missing.reason == "NoMatchingRecording"


def test_httpx_in_process(proxied: MitmEndpoint) -> None:
    with httpx.Client(timeout=30) as client:  # trust_env reads HTTPS_PROXY and SSL_CERT_FILE
        response = client.get("https://api.example.org/v1/users")
        whitelisted = client.get("https://search.internal/q")
    assert response.json() == {"users": 3}
    assert whitelisted.text == "live search"


def test_a_python_worker_subprocess(mitm: MitmEndpoint) -> None:
    script = (
        "import urllib.request, ssl, os\n"
        "context = ssl.create_default_context(cafile=os.environ['SSL_CERT_FILE'])\n"
        "opener = urllib.request.build_opener(urllib.request.ProxyHandler(), urllib.request.HTTPSHandler(context=context))\n"
        "print(opener.open('https://api.example.org/v1/users', timeout=30).read().decode())\n"
    )
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    env.update(mitm.proxy_env())
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"users": 3}
