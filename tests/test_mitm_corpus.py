"""Compatibility: scenario directories recorded by INSPIRE's E2E suite and INSPIRE-MITMProxy's
own fixtures replay unchanged. The files are read from ../shared/corpus, never copied here."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from pytest_deproxy import Deproxy, Endpoint, MitmEndpoint, Response
from pytest_deproxy.mitm.interactions import load_interaction
from pytest_deproxy.mitm.recording import encoded_body

from .conftest import eventually

EndpointFactory = Callable[..., Endpoint]
CORPUS = Path(
    os.environ.get("DEPROXY_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus")
)
NEXT = CORPUS / "inspire-next" / "scenarios"
FIXTURES = CORPUS / "inspire-mitmproxy" / "tests" / "integration" / "fixtures" / "scenarios"
TEST_SERVICES = [
    {"type": "BaseService", "name": "TestServiceA", "hosts_list": ["host_a.local"]},
    {"type": "BaseService", "name": "TestServiceB", "hosts_list": ["host_b.local"]},
]

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the shared corpus is not at {CORPUS}")


def next_interactions() -> list[Path]:
    return sorted(NEXT.glob("*/*/*.yaml")) if NEXT.is_dir() else []


@pytest.fixture(scope="module")
def next_mitm() -> Iterator[tuple[Deproxy, MitmEndpoint]]:
    with Deproxy() as deproxy:
        mitm = deproxy.add_mitm_endpoint(scenarios_path=NEXT)  # services from its services.yaml
        yield deproxy, mitm


@pytest.mark.parametrize("path", next_interactions(), ids=lambda p: "/".join(p.parts[-3:]))
def test_every_inspire_next_interaction_replays_its_recorded_response(
    next_mitm: tuple[Deproxy, MitmEndpoint], path: Path
) -> None:
    deproxy, mitm = next_mitm
    interaction = load_interaction(path)
    mitm.set_scenario(path.parts[-3])
    recorded = interaction.request
    headers = [
        (n, v)
        for n, v in recorded.headers.items()
        if n.lower() not in ("connection", "content-length")  # framing is recomputed
    ]
    chain = deproxy.make_request(
        recorded.url, recorded.method, headers, recorded.body, proxy=mitm.url
    )
    response = chain.received_response
    assert response is not None, chain.error
    assert response.code == str(interaction.response.code), response.body
    assert response.raw_body == encoded_body(
        interaction.response.body, interaction.response.headers
    )


def test_inspire_next_routes_every_file_to_the_service_it_lives_in(
    next_mitm: tuple[Deproxy, MitmEndpoint],
) -> None:
    _, mitm = next_mitm
    services = {service.name: service for service in mitm.services}
    for path in next_interactions():
        interaction = load_interaction(path)
        host = interaction.request.headers.get("Host") or interaction.request.url.split("/")[2]
        assert services[path.parts[-2]].handles(host.split(":")[0]), path


class TestInspireMitmproxyFixtures:
    """The scenarios of INSPIRE-MITMProxy's integration tests, as its own tests use them."""

    def start(
        self, deproxy: Deproxy, scenario: str, root: Path = FIXTURES, **options: object
    ) -> MitmEndpoint:
        return deproxy.add_mitm_endpoint(
            scenarios_path=root,
            services=TEST_SERVICES,
            active_scenario=scenario,
            **options,  # type: ignore[arg-type]
        )

    def test_replays_ok_with_a_callback(self, deproxy: Deproxy, endpoint: EndpointFactory) -> None:
        callback_receiver = endpoint("callback")
        mitm = self.start(
            deproxy, "test_scenario_replays_ok", upstreams={"callback.local": callback_receiver.url}
        )
        accept = {"Accept": "application/json"}
        a = deproxy.make_request("https://host_a.local/api", headers=accept, proxy=mitm.url)
        b = deproxy.make_request("https://host_b.local/api", headers=accept, proxy=mitm.url)
        assert a.received_response is not None
        assert a.received_response.raw_body == b"test_scenario_replays_ok/TestServiceA/0"
        assert b.received_response is not None
        assert b.received_response.raw_body == b"test_scenario_replays_ok/TestServiceB/0"
        eventually(lambda: [h for h in callback_receiver.handlings if h.done])
        assert [h.request.path for h in callback_receiver.handlings] == ["/"]

    def test_replays_once_and_takes_next(self, deproxy: Deproxy) -> None:
        mitm = self.start(deproxy, "test_scenario_replays_once_and_takes_next")
        answers = [
            deproxy.make_request("https://host_a.local/api", proxy=mitm.url).received_response
            for _ in range(3)
        ]
        assert [a.raw_body for a in answers[:2]] == [  # type: ignore[union-attr]
            b"test_scenario_replays_ok/TestServiceA/0",
            b"test_scenario_replays_ok/TestServiceA/1",
        ]
        assert answers[2] is not None and answers[2].code == "501"
        assert mitm.interactions("TestServiceA") == {
            "interaction_0": {"num_calls": 1},
            "interaction_1": {"num_calls": 1},
        }

    def test_raises_if_no_interaction(self, deproxy: Deproxy) -> None:
        mitm = self.start(deproxy, "test_scenario_raise_if_no_interaction")
        answer = deproxy.make_request("https://host_a.local/api", proxy=mitm.url).received_response
        assert answer is not None and answer.code == "501"
        assert "body (exact): recorded 'correct body content', received ''" in str(answer.body)

    def test_record_not_empty_adds_interaction_1(
        self, deproxy: Deproxy, endpoint: EndpointFactory, tmp_path: Path
    ) -> None:
        root = tmp_path / "scenarios"
        name = "test_scenario_record_not_empty"
        shutil.copytree(FIXTURES / name, root / name)  # recording must never touch the corpus
        upstream = endpoint("host-a", Response(200, body="fresh"))
        mitm = self.start(
            deproxy, name, root, record=True, upstreams={"host_a.local": upstream.url}
        )
        replayed = deproxy.make_request(
            "https://host_a.local/replayme", request_body="", proxy=mitm.url
        )
        recorded = deproxy.make_request("https://host_a.local/recordme", proxy=mitm.url)
        assert replayed.received_response is not None
        assert (
            replayed.received_response.raw_body == b"test_scenario_record_not_empty/TestServiceA/0"
        )
        assert recorded.received_response is not None
        assert recorded.received_response.body == "fresh"
        directory = root / name / "TestServiceA"
        assert sorted(p.name for p in directory.iterdir()) == [
            "interaction_0.yaml",
            "interaction_1.yaml",
        ]
        written = yaml.safe_load((directory / "interaction_1.yaml").read_text())
        assert written["request"]["url"] == "https://host_a.local/recordme"
        assert written["response"]["body"] == "fresh"

    @pytest.mark.parametrize(
        "name",
        [
            "test_interaction_simple",
            "test_interaction_detailed",
            "test_interaction_partial_matches",
        ],
    )
    def test_unit_fixture_files_load(self, name: str) -> None:
        unit = CORPUS / "inspire-mitmproxy" / "tests" / "unit" / "fixtures"
        assert load_interaction(unit / f"{name}.yaml").response.body == '{"key": "value"}'
