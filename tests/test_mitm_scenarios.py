"""Scenario files and matching: pure, no sockets."""

from __future__ import annotations

import os
import re
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_deproxy import Headers, ScenarioError
from pytest_deproxy.mitm.interactions import Interaction, load_interaction
from pytest_deproxy.mitm.matching import IncomingRequest, decide, explain
from pytest_deproxy.mitm.recording import encoded_body, stored_body, write_interaction
from pytest_deproxy.mitm.scenarios import ScenarioStore, check_name, natural_key

SIMPLE = """\
request:
  body: null
  headers:
    Accept: [application/json]
  method: GET
  url: https://host_a.local/api
response:
  body: !!python/unicode 'replayed'
  headers:
    content-type: [application/json]
  status: {code: 200, message: OK}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def incoming(
    method: str = "GET", url: str = "https://host_a.local/api", body: bytes = b""
) -> IncomingRequest:
    return IncomingRequest(method, url, Headers({"Accept": "application/json"}), body)


class TestLoading:
    def test_python_unicode_tags_are_plain_strings(self, tmp_path: Path) -> None:
        interaction = load_interaction(write(tmp_path / "interaction_0.yaml", SIMPLE))
        assert interaction.response.body == "replayed"
        assert interaction.request.body == b""
        assert interaction.exact == ("url", "method", "body")
        assert interaction.max_replays == -1

    def test_other_python_tags_are_refused(self, tmp_path: Path) -> None:
        path = write(
            tmp_path / "evil.yaml",
            SIMPLE.replace("!!python/unicode", "!!python/object/apply:os.system"),
        )
        with pytest.raises(ScenarioError, match=r"evil.yaml:\d+: not valid YAML"):
            load_interaction(path)

    def test_binary_bodies_and_rules(self, tmp_path: Path) -> None:
        text = SIMPLE.replace(
            "body: null", "body: !!binary dmVyeSBuaWNlIGJvZHkgdGhhdCBkb2VzIG1hdGNoCg=="
        )
        text += "match:\n  exact: [method]\n  regex:\n    body: '.*does match.*'\nmax_replays: 2\n"
        interaction = load_interaction(write(tmp_path / "i.yaml", text))
        assert interaction.request.body == b"very nice body that does match\n"
        assert interaction.exact == ("method",)
        assert interaction.regex["body"].pattern == ".*does match.*"
        assert interaction.max_replays == 2

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            (lambda t: t.replace("  method: GET\n", "  method: [GET\n"), r":\d+: not valid YAML"),
            (lambda t: t + "match:\n  exact: [cookies]\n", r":12: cannot match on 'cookies'"),
            (lambda t: t + "match:\n  regex: {url: '(unclosed'}\n", r":12: bad regular expression"),
            (lambda t: t + "max_replays: -5\n", r":12: max_replays must be"),
            (
                lambda t: t.replace("status: {code: 200, message: OK}", "status: {}"),
                r":11: response needs status",
            ),
            (lambda t: "- just\n- a list\n", r":1: an interaction file must be a mapping"),
        ],
        ids=[
            "broken-yaml",
            "bad-match-field",
            "bad-regex",
            "bad-max-replays",
            "no-status",
            "not-a-mapping",
        ],
    )
    def test_broken_files_name_the_file_and_line(
        self, tmp_path: Path, change: Callable[[str], str], message: str
    ) -> None:
        path = write(tmp_path / "broken.yaml", change(SIMPLE))
        with pytest.raises(ScenarioError, match=re.escape(str(path)) + message):
            load_interaction(path)

    def test_files_are_tried_in_plain_sorted_order_as_the_original(self, tmp_path: Path) -> None:
        for number in (10, 2, 1):
            write(tmp_path / "s" / "Svc" / f"interaction_{number}.yaml", SIMPLE)
        loaded = ScenarioStore(tmp_path).service("s", "Svc")
        assert [i.name for i in loaded.interactions] == [
            "interaction_1",
            "interaction_10",
            "interaction_2",
        ]
        assert sorted(["b10", "b9", "a"], key=natural_key) == ["a", "b9", "b10"]


class TestNames:
    @pytest.mark.parametrize("name", ["../etc", "/abs", "a/b", "nul\x00", "", "..", ".hidden", 7])
    def test_names_that_could_escape_are_refused(self, name: object) -> None:
        with pytest.raises(ValueError, match="not allowed"):
            check_name(name, "scenario")  # type: ignore[arg-type]

    def test_ordinary_names_pass(self) -> None:
        assert (
            check_name("harvest_core_article_goes_in", "scenario") == "harvest_core_article_goes_in"
        )


class TestStore:
    def test_a_changed_file_is_reloaded(self, tmp_path: Path) -> None:
        path = write(tmp_path / "s" / "Svc" / "interaction_0.yaml", SIMPLE)
        store = ScenarioStore(tmp_path)
        assert store.service("s", "Svc").interactions[0].response.body == "replayed"
        write(tmp_path / "s" / "Svc" / "interaction_1.yaml", SIMPLE.replace("replayed", "second"))
        assert len(store.service("s", "Svc").interactions) == 2  # new file: seen at once
        path.write_text(SIMPLE.replace("replayed", "edited"))
        os.utime(path, (1, 1))
        service = store.service("s", "Svc")
        service.checked_at -= 60  # as if the once-a-second full check were due
        assert store.service("s", "Svc").interactions[0].response.body == "edited"

    def test_an_unchanged_scenario_is_not_read_again(self, tmp_path: Path) -> None:
        write(tmp_path / "s" / "Svc" / "interaction_0.yaml", SIMPLE)
        store = ScenarioStore(tmp_path)
        assert store.service("s", "Svc") is store.service("s", "Svc")

    def test_the_tree(self, tmp_path: Path) -> None:
        write(tmp_path / "one" / "A" / "interaction_0.yaml", SIMPLE)
        write(tmp_path / "one" / "B" / "x.yaml", SIMPLE)
        write(tmp_path / "one" / "B" / "notes.txt", "ignored")
        assert ScenarioStore(tmp_path).tree() == {
            "one": {"responses": {"A": ["interaction_0.yaml"], "B": ["x.yaml"]}}
        }

    def test_recordings_take_the_next_free_number_even_from_many_threads(
        self, tmp_path: Path
    ) -> None:
        write(tmp_path / "s" / "Svc" / "interaction_0.yaml", SIMPLE)
        document = {
            "request": {"method": "GET", "url": "http://x/", "body": None},
            "response": {"status": {"code": 200, "message": "OK"}, "body": "r"},
        }
        threads = [
            threading.Thread(target=write_interaction, args=(tmp_path, "s", "Svc", document))
            for _ in range(20)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        names = sorted(p.name for p in (tmp_path / "s" / "Svc").iterdir())
        assert names == sorted(f"interaction_{n}.yaml" for n in range(21))
        assert all(load_interaction(tmp_path / "s" / "Svc" / name) for name in names)

    def test_a_refused_write_is_a_scenario_error_and_leaves_no_partial_file(
        self, tmp_path: Path
    ) -> None:
        (tmp_path / "s").write_text(
            "a file where the scenario directory should be"
        )  # refused even to root
        with pytest.raises(ScenarioError, match=r"cannot write a recording into .*s/Svc"):
            write_interaction(tmp_path, "s", "Svc", {"request": {}})
        assert [p.name for p in tmp_path.iterdir()] == ["s"]


class TestBodies:
    def test_gzip_is_stored_as_the_bytes_and_replayed_byte_for_byte(self) -> None:
        import gzip

        headers = Headers({"Content-Encoding": "gzip", "Content-Type": "text/plain"})
        compressed = gzip.compress(b"hello")
        assert stored_body(compressed, headers) == compressed
        assert encoded_body(compressed, headers) == compressed

    def test_decoded_text_with_a_content_encoding_is_encoded_again(self) -> None:
        import gzip

        # INSPIRE-MITMProxy's own files hold gzip bodies decoded, as text
        headers = Headers({"Content-Encoding": "gzip", "Content-Type": "text/plain"})
        assert gzip.decompress(encoded_body("hello", headers)) == b"hello"

    def test_binary_stays_bytes_and_is_replayed_verbatim(self) -> None:
        headers = Headers({"Content-Encoding": "x-gzip"})
        assert stored_body(b"\x00\x01\xff", Headers()) == b"\x00\x01\xff"
        assert encoded_body(b"not really gzip", headers) == b"not really gzip"
        assert stored_body(b"", Headers()) is None

    def test_text_in_another_charset_is_stored_as_text(self) -> None:
        latin = Headers({"Content-Type": "text/plain; charset=iso-8859-1"})
        assert stored_body("caf\u00e9".encode("latin-1"), latin) == "caf\u00e9"
        assert stored_body(b"plain ascii", latin) == "plain ascii"
        assert stored_body(b"caf\xe9", Headers()) == b"caf\xe9"  # not UTF-8: bytes


class TestMatching:
    def load(self, tmp_path: Path, extra: str = "", name: str = "interaction_0") -> Interaction:
        return load_interaction(write(tmp_path / f"{name}.yaml", SIMPLE + extra))

    def test_default_rules_are_url_method_body(self, tmp_path: Path) -> None:
        interaction = self.load(tmp_path)
        assert decide(incoming(), [interaction], lambda i: 0).interaction is interaction
        for other in (
            incoming("POST"),
            incoming(url="https://host_a.local/other"),
            incoming(body=b"x"),
        ):
            assert decide(other, [interaction], lambda i: 0).interaction is None

    def test_regex_matches_from_the_start(self, tmp_path: Path) -> None:
        interaction = self.load(tmp_path, "match:\n  regex:\n    url: 'https://host_a\\.local/a'\n")
        assert decide(
            incoming(url="https://host_a.local/api"), [interaction], lambda i: 0
        ).interaction
        missed = decide(incoming(url="xhttps://host_a.local/api"), [interaction], lambda i: 0)
        assert missed.interaction is None

    def test_used_up_interactions_give_way_to_the_next(self, tmp_path: Path) -> None:
        first = self.load(tmp_path, "max_replays: 1\n", "interaction_0")
        second = self.load(tmp_path, "max_replays: 0\n", "interaction_1")
        counts = {"interaction_0": 1}
        decision = decide(incoming(), [first, second], lambda i: counts.get(i.name, 0))
        assert decision.interaction is None
        text = explain(incoming(), decision, "service 'Svc'")
        assert (
            "interaction_0 (interaction_0.yaml) matches but is used up: max_replays 1, replayed 1 times"
            in text
        )
        assert "max_replays 0" in text

    def test_the_explanation_names_each_differing_field(self, tmp_path: Path) -> None:
        interaction = self.load(tmp_path)
        decision = decide(incoming("POST", body=b"payload"), [interaction], lambda i: 0)
        text = explain(incoming("POST", body=b"payload"), decision, "service 'Svc' in scenario 's'")
        assert "no recorded interaction of service 'Svc' in scenario 's' matches" in text
        assert "method (exact): recorded 'GET', received 'POST'" in text
        assert "body (exact): recorded '', received 'payload'" in text
