"""The MITM endpoint as a forward proxy: dispatch, replay, record, whitelist, callbacks."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_deproxy import Deproxy, Endpoint, MitmEndpoint, Response, ScenarioError, handlers

from .conftest import deproxy_checking_its_own_errors, eventually, write_interaction

EndpointFactory = Callable[..., Endpoint]
API = [{"type": "BaseService", "name": "ApiService", "hosts_list": ["api.example.org"]}]


@pytest.fixture
def scenarios(tmp_path: Path) -> Path:
    root = tmp_path / "scenarios"
    write_interaction(
        root,
        "default",
        "ApiService",
        "interaction_0",
        url="http://api.example.org/items",
        body="items",
    )
    write_interaction(
        root,
        "default",
        "ApiService",
        "interaction_1",
        url="https://api.example.org/secure",
        body="secure",
    )
    write_interaction(
        root,
        "other",
        "ApiService",
        "interaction_0",
        url="http://api.example.org/items",
        body="other items",
    )
    return root


def start(deproxy: Deproxy, scenarios: Path, **options: object) -> MitmEndpoint:
    options.setdefault("services", API)
    return deproxy.add_mitm_endpoint(scenarios_path=scenarios, **options)  # type: ignore[arg-type]


def test_replays_plain_http_in_absolute_form(deproxy: Deproxy, scenarios: Path) -> None:
    mitm = start(deproxy, scenarios)
    chain = deproxy.make_request("http://api.example.org/items", proxy=mitm.url)
    assert chain.received_response is not None
    assert chain.received_response.body == "items"
    [handling] = chain.handlings
    assert handling.endpoint is mitm
    assert handling.request.path == "http://api.example.org/items"
    assert mitm.interactions("ApiService") == {
        "interaction_0": {"num_calls": 1},
        "interaction_1": {"num_calls": 0},
    }


def test_replays_https_through_an_intercepted_connect(deproxy: Deproxy, scenarios: Path) -> None:
    mitm = start(deproxy, scenarios)
    chain = deproxy.make_request("https://api.example.org/secure", proxy=mitm.url)  # trusts mitm.ca
    assert chain.error is None
    assert chain.received_response is not None and chain.received_response.body == "secure"
    assert chain.handlings[0].request.path == "/secure"
    mitm.assert_interaction_used("ApiService", "interaction_1", times=1)


def test_origin_form_with_a_host_header_as_a_reverse_proxys_upstream(
    deproxy: Deproxy, scenarios: Path
) -> None:
    mitm = start(deproxy, scenarios)
    chain = deproxy.make_request(mitm.url + "/items", host="api.example.org")
    assert chain.received_response is not None and chain.received_response.body == "items"


def test_no_service_is_a_501_that_names_the_host(deproxy: Deproxy, scenarios: Path) -> None:
    mitm = start(deproxy, scenarios)
    chain = deproxy.make_request("http://unknown.example.net/x", proxy=mitm.url)
    response = chain.received_response
    assert response is not None
    assert (response.code, response.message) == ("501", "NoServicesForRequest")
    assert "no service handles host 'unknown.example.net'" in str(response.body)
    assert "ApiService: api.example.org" in str(response.body)


def test_no_match_is_a_501_that_says_what_differed(deproxy: Deproxy, scenarios: Path) -> None:
    mitm = start(deproxy, scenarios)
    chain = deproxy.make_request("http://api.example.org/itemz", proxy=mitm.url)
    response = chain.received_response
    assert response is not None
    assert (response.code, response.message) == ("501", "NoMatchingRecording")
    body = str(response.body)
    assert "GET http://api.example.org/itemz" in body
    assert (
        "url (exact): recorded 'http://api.example.org/items', received 'http://api.example.org/itemz'"
        in body
    )
    [miss] = mitm.misses
    assert (miss.service, miss.scenario, miss.request.url) == (
        "ApiService",
        "default",
        "http://api.example.org/itemz",
    )


def test_switching_scenario_changes_answers_and_resets_counts(
    deproxy: Deproxy, scenarios: Path
) -> None:
    mitm = start(deproxy, scenarios)
    deproxy.make_request("http://api.example.org/items", proxy=mitm.url)
    mitm.set_scenario("other")
    assert mitm.active_scenario == "other"
    assert mitm.interactions("ApiService") == {"interaction_0": {"num_calls": 0}}
    chain = deproxy.make_request("http://api.example.org/items", proxy=mitm.url)
    assert chain.received_response is not None and chain.received_response.body == "other items"
    with pytest.raises(ValueError, match="not allowed"):
        mitm.set_scenario("../outside")
    assert mitm.active_scenario == "other"


def test_max_replays_takes_the_next_interaction_then_explains(
    deproxy: Deproxy, tmp_path: Path
) -> None:
    for number in range(2):
        write_interaction(
            tmp_path,
            "default",
            "ApiService",
            f"interaction_{number}",
            url="http://api.example.org/once",
            body=f"answer {number}",
            extra="max_replays: 1\n",
        )
    mitm = start(deproxy, tmp_path)
    bodies = [
        deproxy.make_request("http://api.example.org/once", proxy=mitm.url).received_response
        for _ in range(3)
    ]
    assert [r.body for r in bodies[:2]] == ["answer 0", "answer 1"]  # type: ignore[union-attr]
    assert bodies[2] is not None and bodies[2].code == "501"
    assert "matches but is used up" in str(bodies[2].body)
    mitm.set_recording(False)  # switching recording resets the counts too
    assert mitm.interactions("ApiService")["interaction_0"] == {"num_calls": 0}


def test_record_then_replay(deproxy: Deproxy, endpoint: EndpointFactory, tmp_path: Path) -> None:
    upstream = endpoint("real-api", Response(201, headers={"X-Real": "yes"}, body="made upstream"))
    mitm = start(deproxy, tmp_path, record=True, upstreams={"api.example.org": upstream.url})
    recorded = deproxy.make_request(
        "http://api.example.org/new?x=1", "POST", request_body="payload", proxy=mitm.url
    )
    assert recorded.received_response is not None and recorded.received_response.code == "201"
    assert [h.endpoint.name for h in recorded.handlings] == [
        "mitm",
        "real-api",
    ]  # same chain, both hops, in the order they arrived
    assert upstream.handlings[0].request.headers["Host"] == "api.example.org"
    written = tmp_path / "default" / "ApiService" / "interaction_0.yaml"
    assert "made upstream" in written.read_text()

    mitm.set_recording(False)
    upstream.shutdown()
    replayed = deproxy.make_request(
        "http://api.example.org/new?x=1", "POST", request_body="payload", proxy=mitm.url
    )
    response = replayed.received_response
    assert response is not None
    assert (response.code, response.body, response.headers["X-Real"]) == (
        "201",
        "made upstream",
        "yes",
    )


def test_recording_redacts_secrets_and_stores_gzip_byte_for_byte(
    deproxy: Deproxy, endpoint: EndpointFactory, tmp_path: Path
) -> None:
    answer = Response(
        200,
        headers={
            "Content-Encoding": "gzip",
            "Content-Type": "text/plain",
            "Set-Cookie": "session=s3cr3t",
            "X-Api-Key": "k3y",
        },
        body=gzip.compress(b"compressed text"),
    )
    upstream = endpoint("real-api", answer)
    mitm = start(
        deproxy,
        tmp_path,
        record=True,
        upstreams={"api.example.org": upstream.url},
        redact_headers=["X-Api-Key"],
    )
    deproxy.make_request(
        "http://api.example.org/login", headers={"Authorization": "Bearer t0k3n"}, proxy=mitm.url
    )
    text = (tmp_path / "default" / "ApiService" / "interaction_0.yaml").read_text()
    for secret in ("t0k3n", "s3cr3t", "k3y"):
        assert secret not in text
    assert text.count("<redacted>") == 3
    assert "body: !!binary" in text  # gzip is stored as the bytes that came, not decoded
    mitm.set_recording(False)
    replayed = deproxy.make_request(
        "http://api.example.org/login", proxy=mitm.url
    ).received_response
    assert replayed is not None
    assert replayed.headers["Content-Encoding"] == "gzip"
    assert replayed.body == "compressed text"
    assert replayed.raw_body == answer.raw_body


def test_matching_interactions_are_still_replayed_while_recording(
    deproxy: Deproxy, scenarios: Path
) -> None:
    mitm = start(deproxy, scenarios, record=True)
    chain = deproxy.make_request("http://api.example.org/items", proxy=mitm.url)
    assert chain.received_response is not None and chain.received_response.body == "items"
    assert len(list((scenarios / "default" / "ApiService").iterdir())) == 2


def test_an_upstream_that_fails_while_recording_is_a_502_and_writes_nothing(
    deproxy: Deproxy, endpoint: EndpointFactory, tmp_path: Path
) -> None:
    gone = endpoint()
    url = gone.url
    gone.shutdown()
    mitm = start(deproxy, tmp_path, record=True, upstreams={"api.example.org": url})
    chain = deproxy.make_request("http://api.example.org/x", proxy=mitm.url)
    assert chain.received_response is not None and chain.received_response.code == "502"
    assert not (tmp_path / "default").exists()


def test_whitelisted_hosts_pass_through_and_are_never_recorded(
    deproxy: Deproxy, endpoint: EndpointFactory, tmp_path: Path
) -> None:
    real = endpoint("indexer", handlers.echo)
    mitm = start(
        deproxy,
        tmp_path,
        record=True,
        whitelist=["test-indexer"],
        upstreams={"test-indexer": real.url},
    )
    chain = deproxy.make_request(
        "http://test-indexer/index", "PUT", request_body="doc", proxy=mitm.url
    )
    assert chain.received_response is not None and chain.received_response.body == "doc"
    assert list(tmp_path.iterdir()) == []


def test_the_whitelist_environment_variable_replaces_the_list(
    deproxy: Deproxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MITM_PROXY_WHITELIST", "one.local  two.local")
    mitm = start(deproxy, tmp_path, whitelist=["ignored.local"])
    [whitelist] = [s for s in mitm.services if s.is_whitelist]
    assert whitelist.hosts == ("one.local", "two.local")


def test_services_yaml_at_the_root_of_the_scenarios(deproxy: Deproxy, scenarios: Path) -> None:
    (scenarios / "services.yaml").write_text(
        "services:\n- {type: BaseService, name: ApiService, hosts_list: [api.example.org]}\n"
    )
    mitm = deproxy.add_mitm_endpoint(scenarios_path=scenarios)
    chain = deproxy.make_request("http://api.example.org/items", proxy=mitm.url)
    assert chain.received_response is not None and chain.received_response.body == "items"


def test_callbacks_are_sent_after_a_replay_with_the_environment_expanded(
    deproxy: Deproxy, endpoint: EndpointFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_NETLOC", "app.local:5000")
    callback = (
        "callbacks:\n- delay: 0.1\n  request:\n    method: POST\n"
        "    url: http://${APP_NETLOC}/callback/done\n"
        "    headers: {X-Env: ['${APP_NETLOC}']}\n    body: 'recids=42'\n"
    )
    write_interaction(
        tmp_path,
        "default",
        "ApiService",
        "interaction_0",
        url="http://api.example.org/upload",
        body="queued",
        extra=callback,
    )
    app = endpoint("app")
    mitm = start(deproxy, tmp_path, upstreams={"app.local": app.url})
    deproxy.make_request("http://api.example.org/upload", proxy=mitm.url)
    eventually(lambda: [h for h in app.handlings if h.done])
    [call] = app.handlings
    assert (call.request.method, call.request.path, call.request.body) == (
        "POST",
        "/callback/done",
        "recids=42",
    )
    assert call.request.headers["Host"] == "app.local:5000"
    assert call.request.headers["X-Env"] == "app.local:5000"


def test_a_broken_scenario_file_fails_the_test_with_file_and_line(tmp_path: Path) -> None:
    path = write_interaction(
        tmp_path, "default", "ApiService", "interaction_0", url="http://api.example.org/x"
    )
    path.write_text(path.read_text().replace("  method: GET\n", "  method: [GET\n"))
    with deproxy_checking_its_own_errors() as deproxy:
        mitm = start(deproxy, tmp_path)
        chain = deproxy.make_request("http://api.example.org/x", proxy=mitm.url)
        assert chain.received_response is not None and chain.received_response.code == "500"
        assert f"{path}:3: not valid YAML" in str(chain.received_response.body)
        [error] = deproxy.errors
        assert str(error).startswith(f"{path}:3: not valid YAML")


def test_an_unknown_top_level_key_is_ignored_with_a_warning(
    deproxy: Deproxy, tmp_path: Path
) -> None:
    path = write_interaction(
        tmp_path, "default", "ApiService", "interaction_0", url="http://api.example.org/x", body="x"
    )
    path.write_text(path.read_text() + "surprise: field\n")
    mitm = start(deproxy, tmp_path)
    for _ in range(2):  # warned once, however often the file answers
        chain = deproxy.make_request("http://api.example.org/x", proxy=mitm.url)
        assert chain.received_response is not None and chain.received_response.body == "x"
    assert mitm.warnings == [
        f"{path}:11: unknown top-level key 'surprise' ignored, as INSPIRE-MITMProxy ignores it "
        "(known: callbacks, match, max_replays, request, response)"
    ]


def test_bad_services_are_refused_up_front(deproxy: Deproxy, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown type 'Nope'"):
        deproxy.add_mitm_endpoint(
            scenarios_path=tmp_path, services=[{"type": "Nope", "name": "A", "hosts_list": ["a"]}]
        )
    with pytest.raises(ValueError, match="hosts_list"):
        deproxy.add_mitm_endpoint(scenarios_path=tmp_path, services=[{"name": "A"}])


def test_proxy_env_names_the_proxy_and_the_ca(deproxy: Deproxy, tmp_path: Path) -> None:
    mitm = start(deproxy, tmp_path)
    env = mitm.proxy_env()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert env[name] == mitm.url
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        assert Path(env[name]).read_bytes() == mitm.ca.cert_pem


def test_assert_interaction_used_lists_the_calls(deproxy: Deproxy, scenarios: Path) -> None:
    mitm = start(deproxy, scenarios)
    deproxy.make_request("http://api.example.org/items", proxy=mitm.url)
    mitm.assert_interaction_used("ApiService", "interaction_0")
    with pytest.raises(AssertionError) as failure:
        mitm.assert_interaction_used("ApiService", "interaction_1", times=2)
    message = str(failure.value)
    assert (
        "interaction_1 of ApiService in scenario 'default' was expected to be replayed 2 times"
        in message
    )
    assert "interaction_0: 1 calls" in message


def test_the_tracking_header_passes_a_proxy_and_the_mitm(
    deproxy: Deproxy, endpoint: EndpointFactory, scenarios: Path
) -> None:
    """A chain through a proxy under test (here a routing endpoint) and then the MITM."""
    mitm = start(deproxy, scenarios)

    front = endpoint("proxy-under-test", handlers.route(mitm.url))
    chain = deproxy.make_request(front.url + "/items", host="api.example.org")
    assert [h.endpoint.name for h in chain.handlings] == ["proxy-under-test", "mitm"]
    assert chain.handlings[1].response is not None
    assert chain.received_response is not None


def test_a_services_yaml_nested_too_deeply_is_a_scenario_error_naming_the_file(
    deproxy: Deproxy, tmp_path: Path
) -> None:
    (tmp_path / "services.yaml").write_text("services: " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ScenarioError) as caught:  # not a RecursionError from the YAML parser
        deproxy.add_mitm_endpoint(scenarios_path=tmp_path)
    assert str(caught.value).startswith(
        f"{tmp_path / 'services.yaml'}:1: collections nested deeper than 100 levels"
    )
