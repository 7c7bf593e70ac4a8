"""The replay state on its own: settings change in one step, a change starts a new round of
counts, and a request matched under the old round is not counted in the new one. No sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_deproxy import Headers
from pytest_deproxy.mitm.matching import IncomingRequest
from pytest_deproxy.mitm.replay import ReplayState, Settings, replayed_response
from pytest_deproxy.mitm.scenarios import ScenarioStore

from .conftest import write_interaction

URL = "http://api.example.org/a"
GET = IncomingRequest("GET", URL, Headers(), b"")


@pytest.fixture
def store(tmp_path: Path) -> ScenarioStore:
    write_interaction(
        tmp_path, "default", "Api", "interaction_0", url=URL, body="a", extra="max_replays: 1\n"
    )
    return ScenarioStore(tmp_path)


def test_an_interaction_is_counted_and_used_up(store: ScenarioStore) -> None:
    state = ReplayState("default", recording=False)
    settings = state.settings()
    recorded = store.service("default", "Api")
    first = state.choose(settings, "Api", GET, recorded)
    assert first is not None and first.name == "interaction_0"
    assert state.choose(settings, "Api", GET, recorded) is None
    assert state.replays("Api") == {"interaction_0": 1}
    miss = state.miss(settings, "Api", GET, recorded)
    assert "matches but is used up: max_replays 1, replayed 1 times" in miss.explanation
    assert state.misses == [miss]


def test_a_settings_change_starts_a_new_round(store: ScenarioStore) -> None:
    state = ReplayState("default", recording=False)
    before = state.settings()
    recorded = store.service("default", "Api")
    assert state.choose(before, "Api", GET, recorded) is not None
    state.set_recording(False)  # even a change to the same value: counts start again
    assert state.replays("Api") == {}
    assert state.settings().round == before.round + 1
    # A request matched under the old round is answered, but not counted in the new one.
    assert state.choose(before, "Api", GET, recorded) is not None
    assert state.replays("Api") == {}
    assert state.choose(state.settings(), "Api", GET, recorded) is not None
    assert state.replays("Api") == {"interaction_0": 1}


def test_merge_config_is_one_step_and_a_bad_one_changes_nothing() -> None:
    state = ReplayState("default", recording=True)
    state.merge_config({"note": "kept"})
    state.merge_config({"active_scenario": "second"})
    assert state.config == {"active_scenario": "second", "note": "kept"}
    round_before = state.settings().round
    with pytest.raises(ValueError, match=r"active_scenario '\.\./x' is not allowed"):
        state.merge_config({"active_scenario": "../x", "other": 1})
    with pytest.raises(TypeError, match="a config update is a mapping"):
        state.merge_config(["active_scenario"])  # type: ignore[arg-type]
    assert state.config == {"active_scenario": "second", "note": "kept"}
    assert state.settings() == Settings("second", True, round_before)


def test_a_replayed_response_is_framed_anew(tmp_path: Path) -> None:
    path = write_interaction(tmp_path, "default", "Api", "interaction_0", url=URL, body="short")
    path.write_text(
        path.read_text().replace(
            "    Content-Type: [text/plain]\n",
            "    Content-Type: [text/plain]\n    Content-Length: ['999']\n"
            "    Transfer-Encoding: [chunked]\n    Connection: [close, X-Hop]\n"
            "    X-Hop: [dropped]\n    X-Kept: [kept]\n",
        )
    )
    [interaction] = ScenarioStore(tmp_path).service("default", "Api").interactions
    response = replayed_response(interaction)
    assert list(response.headers.items()) == [("Content-Type", "text/plain"), ("X-Kept", "kept")]
    assert response.raw_body == b"short"
