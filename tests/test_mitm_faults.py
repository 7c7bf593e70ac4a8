"""Faults in the system around the MITM: edited or broken scenario files, a disk that
refuses writes, an upstream that vanishes mid-recording. Clear errors, no partial files,
and the proxy keeps serving."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pytest_deproxy import Deproxy, Endpoint, Response, ScenarioError, handlers

from .conftest import deproxy_checking_its_own_errors, eventually, write_interaction

EndpointFactory = Callable[..., Endpoint]
SERVICES = [
    {"type": "BaseService", "name": "ApiService", "hosts_list": ["api.example.org"]},
    {"type": "BaseService", "name": "OtherService", "hosts_list": ["other.example.org"]},
]


def body_of(deproxy: Deproxy, url: str, proxy: str) -> str:
    response = deproxy.make_request(url, proxy=proxy).received_response
    assert response is not None
    return f"{response.code} {response.body!s}"


def test_a_scenario_file_edited_during_the_run(tmp_path: Path) -> None:
    path = write_interaction(
        tmp_path,
        "default",
        "ApiService",
        "interaction_0",
        url="http://api.example.org/a",
        body="v1",
    )
    write_interaction(
        tmp_path,
        "default",
        "OtherService",
        "interaction_0",
        url="http://other.example.org/b",
        body="other",
    )
    with deproxy_checking_its_own_errors() as deproxy:
        mitm = deproxy.add_mitm_endpoint(scenarios_path=tmp_path, services=SERVICES)
        assert body_of(deproxy, "http://api.example.org/a", mitm.url) == "200 v1"

        replacement = path.with_suffix(".tmp")  # as editors save: write aside, rename over
        replacement.write_text(path.read_text().replace("'v1'", "'v2'"))
        os.replace(replacement, path)
        assert body_of(deproxy, "http://api.example.org/a", mitm.url) == "200 v2"

        path.write_text("request: [broken\n")  # in place, and broken
        eventually(lambda: body_of(deproxy, "http://api.example.org/a", mitm.url).startswith("500"))
        assert f"{path}:2: not valid YAML" in body_of(deproxy, "http://api.example.org/a", mitm.url)
        assert body_of(deproxy, "http://other.example.org/b", mitm.url) == "200 other"
        assert all(isinstance(e, ScenarioError) for e in deproxy.errors)


def test_a_disk_that_refuses_the_recording(
    deproxy: Deproxy, endpoint: EndpointFactory, tmp_path: Path
) -> None:
    (tmp_path / "default").write_text("a file where the scenario directory should be")
    upstream = endpoint("real-api", Response(200, body="live"))
    with deproxy_checking_its_own_errors() as own:
        mitm = own.add_mitm_endpoint(
            scenarios_path=tmp_path,
            services=SERVICES,
            record=True,
            upstreams={"api.example.org": upstream.url},
        )
        assert (
            body_of(own, "http://api.example.org/x", mitm.url) == "200 live"
        )  # the client is served
        [error] = own.errors
        assert "cannot write a recording into" in str(error)
    assert [p.name for p in tmp_path.iterdir()] == ["default"]


def test_an_upstream_that_vanishes_mid_recording(
    deproxy: Deproxy, endpoint: EndpointFactory, tmp_path: Path
) -> None:
    upstream = endpoint("real-api", handlers.truncate(Response(200, body="0123456789"), 3))
    mitm = deproxy.add_mitm_endpoint(
        scenarios_path=tmp_path,
        services=SERVICES,
        record=True,
        upstreams={"api.example.org": upstream.url},
    )
    answer = body_of(deproxy, "http://api.example.org/x", mitm.url)
    assert answer.startswith("502 the upstream of http://api.example.org/x failed")
    assert not (tmp_path / "default").exists()
    mitm.set_recording(False)  # a miss is now a 501: no lookup of the real host
    assert body_of(deproxy, "http://other.example.org/y", mitm.url).startswith(
        "501"
    )  # still serving
