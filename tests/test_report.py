"""Reports: chain diagrams, HAR, and what a failed test's report shows."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_deproxy import Deproxy, Endpoint, Response, handlers, to_har

EndpointFactory = Callable[..., Endpoint]


def test_the_diagram_shows_every_hop(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    back = endpoint("backend", Response(201, "Made", {"Via": "1.1 back"}, "made"))
    front = endpoint("front", handlers.route(back.url))
    auth_calls = endpoint("auth")
    chain = deproxy.make_request(front.url + "/things", "POST", request_body="hello")
    chain.orphaned_handlings.append(deproxy.make_request(auth_calls.url).handlings[0])
    lines = str(chain).splitlines()
    assert lines[0].startswith(f"--- MessageChain {chain.request_id}")
    assert lines[1].startswith("client          --> POST /things")
    assert lines[2].startswith("  front         --> POST /things   conn-")
    assert lines[3].startswith("  backend       --> POST /things   conn-")
    assert "<-- 201 Made" in lines[4] and "Via: 1.1 back" in lines[4] and "body 4 B" in lines[4]
    assert lines[6].startswith("client          <-- 201 Made")
    assert "orphans" in lines[7]
    assert lines[8].startswith("  auth          --> GET /")


def test_the_diagram_shows_faults_and_errors(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    chain = deproxy.make_request(endpoint("flaky", handlers.close).url)
    text = chain.diagram()
    assert "flaky          xx closed the connection without answering" in text
    assert (
        "client           xx PeerClosed: the peer closed the connection without answering" in text
    )


def test_har_holds_the_client_exchange_and_every_handling(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint(
        "binary", Response(200, headers={"Content-Type": "image/png"}, body=b"\x89PNG")
    )
    chain = deproxy.make_request(server.url + "/img?size=2&fmt=png", "POST", request_body="q")
    document = to_har(chain)
    log = document["log"]
    assert log["version"] == "1.2"
    assert log["creator"]["name"] == "pytest-deproxy"
    client, handled = log["entries"]
    assert client["request"]["url"] == server.url + "/img?size=2&fmt=png"
    assert client["request"]["queryString"] == [
        {"name": "size", "value": "2"},
        {"name": "fmt", "value": "png"},
    ]
    assert client["request"]["postData"] == {"mimeType": "", "text": "q"}
    assert client["response"]["content"] == {
        "mimeType": "image/png",
        "text": "iVBORw==",
        "encoding": "base64",
        "size": 4,
    }
    assert handled["comment"] == "handled at endpoint binary: responded"
    assert handled["connection"].startswith("conn-")
    json.dumps(document)  # serialisable as it is


def test_har_of_a_failed_exchange(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    chain = deproxy.make_request(endpoint(handler=handlers.hang).url, timeout=0.2)
    client = to_har(chain)["log"]["entries"][0]
    assert client["response"]["status"] == 0
    assert client["response"]["_error"].startswith("DeproxyTimeout: timed out")


FAILING = """
from pytest_deproxy import handlers

def test_fails(deproxy, endpoint):
    server = endpoint("backend", handlers.echo)
    chain = deproxy.make_request(server.url + "/x", "POST", request_body="payload")
    assert chain.received_response.code == "204"

def test_passes(deproxy, endpoint):
    deproxy.make_request(endpoint().url)
"""


def test_a_failed_test_shows_its_chains(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(FAILING)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- deproxy: message chains -*",
            "--- MessageChain *",
            "client          --> POST /x   Host: 127.0.0.1:* | Content-Length: 7 | body 7 B",
            "  backend       --> POST /x   conn-*",
            "client          <-- 200 OK   * ms | *",
        ]
    )
    assert result.stdout.str().count("--- MessageChain") == 1  # nothing for the passing test


def test_diagrams_can_be_turned_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(FAILING)
    result = pytester.runpytest_subprocess("--deproxy-no-diagrams")
    result.assert_outcomes(passed=1, failed=1)
    assert "deproxy: message chains" not in result.stdout.str()


def test_har_files_for_failed_tests_or_all(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(FAILING)
    failed_only = tmp_path / "failed"
    pytester.runpytest_subprocess("--deproxy-har", str(failed_only)).assert_outcomes(
        passed=1, failed=1
    )
    [written] = failed_only.iterdir()
    assert written.name == "test_har_files_for_failed_tests_or_all.py_test_fails.har"
    document = json.loads(written.read_text())
    assert document["log"]["comment"].endswith("test_fails: failed")
    assert [e["comment"].split(",")[0] for e in document["log"]["entries"]] == [
        "client request",
        "handled at endpoint backend: responded",
    ]
    every = tmp_path / "all"
    pytester.runpytest_subprocess("--deproxy-har", str(every), "--deproxy-har-all")
    assert len(list(every.iterdir())) == 2


def test_har_entries_of_handlings_carry_the_records_facts(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint("tls-backend", tls=True, proxy_protocol="optional")
    chain = deproxy.make_request(server.url.replace("127.0.0.1", "localhost"), proxy_protocol="v2")

    [handled] = to_har(chain)["log"]["entries"][1:]
    assert handled["_done"] is True
    assert handled["_connection"].startswith("from 127.0.0.1:")
    assert "PROXY v2 127.0.0.1:" in handled["_connection"]
    assert "TLS SNI localhost" in handled["_connection"]
    assert handled["time"] >= 0
