"""The management API at http://mitm-manager.local, reached through the MITM like any host."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_deproxy import Deproxy, MitmEndpoint

from .conftest import write_interaction

API = [{"type": "BaseService", "name": "ApiService", "hosts_list": ["api.example.org"]}]
MANAGER = "http://mitm-manager.local"


@pytest.fixture
def mitm(deproxy: Deproxy, tmp_path: Path) -> MitmEndpoint:
    write_interaction(
        tmp_path, "default", "ApiService", "interaction_0", url="http://api.example.org/a", body="a"
    )
    write_interaction(
        tmp_path, "second", "ApiService", "interaction_0", url="http://api.example.org/a", body="2"
    )
    return deproxy.add_mitm_endpoint(scenarios_path=tmp_path, services=API)


def call(
    deproxy: Deproxy,
    mitm: MitmEndpoint,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: str | None = None,
) -> tuple[int, Any]:
    payload = raw if raw is not None else (None if body is None else json.dumps(body))
    chain = deproxy.make_request(
        MANAGER + path, method, {"Content-Type": "application/json"}, payload, proxy=mitm.url
    )
    response = chain.received_response
    assert response is not None, chain.error
    document = json.loads(response.body) if response.body else None
    return int(response.code), document


def test_get_config(deproxy: Deproxy, mitm: MitmEndpoint) -> None:
    assert call(deproxy, mitm, "GET", "/config") == (200, {"active_scenario": "default"})


def test_put_config_merges_and_post_replaces(deproxy: Deproxy, mitm: MitmEndpoint) -> None:
    assert call(deproxy, mitm, "PUT", "/config", {"active_scenario": "second", "note": "kept"}) == (
        204,
        None,
    )
    assert mitm.active_scenario == "second"
    assert call(deproxy, mitm, "PUT", "/config", {"active_scenario": "default"})[0] == 204
    assert call(deproxy, mitm, "GET", "/config")[1] == {
        "active_scenario": "default",
        "note": "kept",
    }
    assert call(deproxy, mitm, "POST", "/config", {"active_scenario": "second"}) == (201, None)
    assert call(deproxy, mitm, "GET", "/config")[1] == {"active_scenario": "second"}


def test_switching_through_the_api_resets_counts(deproxy: Deproxy, mitm: MitmEndpoint) -> None:
    deproxy.make_request("http://api.example.org/a", proxy=mitm.url)
    assert call(deproxy, mitm, "GET", "/service/ApiService/interactions") == (
        200,
        {"interaction_0": {"num_calls": 1}},
    )
    call(deproxy, mitm, "PUT", "/config", {"active_scenario": "default"})
    assert call(deproxy, mitm, "GET", "/service/ApiService/interactions")[1] == {
        "interaction_0": {"num_calls": 0}
    }


@pytest.mark.parametrize(
    ("method", "body", "message"),
    [
        ("PUT", {"active_scenario": "../../etc"}, "not allowed"),
        ("POST", {"active_scenario": "/absolute"}, "not allowed"),
        ("PUT", {"active_scenario": "nul\x00byte"}, "not allowed"),
        ("POST", {"other": 1}, "active_scenario"),
        ("PUT", {"active_scenario": 42}, "not allowed"),
    ],
    ids=["dotdot", "absolute", "nul", "missing", "not-a-string"],
)
def test_bad_scenario_names_are_refused_and_change_nothing(
    deproxy: Deproxy,
    mitm: MitmEndpoint,
    tmp_path: Path,
    method: str,
    body: dict[str, Any],
    message: str,
) -> None:
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    status, document = call(deproxy, mitm, method, "/config", body)
    assert status == 400
    assert message in document["error"]
    assert mitm.config == {"active_scenario": "default"}
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"a string"'])
def test_bodies_that_are_not_a_json_object_are_400(
    deproxy: Deproxy, mitm: MitmEndpoint, raw: str
) -> None:
    status, document = call(deproxy, mitm, "PUT", "/config", raw=raw)
    assert status == 400
    assert "JSON" in document["error"]


def test_record_on_and_off(deproxy: Deproxy, mitm: MitmEndpoint) -> None:
    assert call(deproxy, mitm, "POST", "/record", {"enable": True}) == (201, {"enabled": True})
    assert mitm.recording is True
    assert call(deproxy, mitm, "PUT", "/record", {"enable": False}) == (200, {"enabled": False})
    assert mitm.recording is False
    for body in ({}, {"enable": "yes"}, {"enable": 1}):
        status, document = call(deproxy, mitm, "PUT", "/record", body)
        assert status == 400
        assert "enable" in document["error"]
    assert mitm.recording is False


def test_services_listing_starts_with_the_management_service(
    deproxy: Deproxy, mitm: MitmEndpoint
) -> None:
    status, document = call(deproxy, mitm, "GET", "/services")
    assert status == 200
    assert document["services"] == [
        {
            "type": "ManagementService",
            "name": "ManagementService",
            "hosts_list": ["mitm-manager.local"],
        },
        {"type": "BaseService", "name": "ApiService", "hosts_list": ["api.example.org"]},
    ]


def test_services_can_be_added_and_replaced(deproxy: Deproxy, mitm: MitmEndpoint) -> None:
    extra = {"type": "WhitelistService", "name": "WhitelistService", "hosts_list": ["test-indexer"]}
    status, document = call(deproxy, mitm, "PUT", "/services", {"services": [API[0], extra]})
    assert status == 201 and [s["name"] for s in document["services"]] == [
        "ManagementService",
        "ApiService",
        "WhitelistService",
    ]
    assert [s.name for s in mitm.services] == ["ApiService", "WhitelistService"]
    replacement = {"type": "BaseService", "name": "NewService", "hosts_list": ["new.example.org"]}
    status, document = call(deproxy, mitm, "POST", "/services", [replacement])
    assert status == 201 and document["services"][1:] == [replacement]
    assert [s.name for s in mitm.services] == ["NewService"]
    # A service added this way answers at once, from the active scenario.
    chain = deproxy.make_request("http://new.example.org/x", proxy=mitm.url)
    assert (
        chain.received_response is not None
        and chain.received_response.message == "NoMatchingRecording"
    )
    assert "scenario 'default'" in str(chain.received_response.body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"services": [{"type": "Bogus", "name": "X", "hosts_list": ["x"]}]},
            "unknown type 'Bogus'",
        ),
        ({"services": [{"type": "BaseService", "name": "X"}]}, "hosts_list"),
        (
            {"services": [{"type": "BaseService", "name": "../X", "hosts_list": ["x"]}]},
            "not allowed",
        ),
        ({"services": "nope"}, "must be a list"),
    ],
    ids=["unknown-type", "no-hosts", "bad-name", "not-a-list"],
)
def test_bad_services_are_400_and_change_nothing(
    deproxy: Deproxy, mitm: MitmEndpoint, body: dict[str, Any], message: str
) -> None:
    status, document = call(deproxy, mitm, "POST", "/services", body)
    assert status == 400
    assert message in document["error"]
    assert [s.name for s in mitm.services] == ["ApiService"]


def test_scenarios_tree(deproxy: Deproxy, mitm: MitmEndpoint) -> None:
    assert call(deproxy, mitm, "GET", "/scenarios") == (
        200,
        {
            "default": {"responses": {"ApiService": ["interaction_0.yaml"]}},
            "second": {"responses": {"ApiService": ["interaction_0.yaml"]}},
        },
    )


def test_unknown_service_and_paths(deproxy: Deproxy, mitm: MitmEndpoint) -> None:
    assert call(deproxy, mitm, "GET", "/service/Nope/interactions")[0] == 404
    assert call(deproxy, mitm, "GET", "/nothing-here")[0] == 404
    assert call(deproxy, mitm, "DELETE", "/config")[0] == 405


def test_management_over_https_too(deproxy: Deproxy, mitm: MitmEndpoint) -> None:
    chain = deproxy.make_request("https://mitm-manager.local/config", proxy=mitm.url)
    assert chain.received_response is not None
    assert json.loads(chain.received_response.body) == {"active_scenario": "default"}
