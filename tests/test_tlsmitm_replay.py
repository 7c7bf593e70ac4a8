"""Replay made cheaper keeps its answers: the index picks what the linear scan of every
interaction picks (INSPIRE-MITMProxy's order and rules, tricky ones included), a replayed
response made once answers GET and HEAD as before, the paced check still sees a file edited
in place, and remembered targets change no answer."""

from __future__ import annotations

import gzip
import itertools
import os
from pathlib import Path

import pytest

from pytest_deproxy import Deproxy, Headers, MitmEndpoint
from pytest_deproxy.mitm import dispatch, targets
from pytest_deproxy.mitm.matching import IncomingRequest, decide
from pytest_deproxy.mitm.replay import ReplayState
from pytest_deproxy.mitm.scenarios import FULL_RESCAN_SECONDS, ScenarioStore
from pytest_deproxy.mitm.services import Service

from .conftest import write_interaction

HOST = "api.example.org"
API = [{"type": "BaseService", "name": "Api", "hosts_list": [HOST]}]

# (file name, method, url, request body, the rest of the file): file order is sorted() order,
# so the names say where each stands. Indexed ones (exact url and method) mixed with ones the
# index cannot narrow down: no exact url, a regex on the url, a redacted query parameter, no
# exact method, a header rule, a body regex, used up after one replay.
TRICKY = [
    ("a_regex_url", "GET", f"http://{HOST}/anything", None, "match:\n  regex: {url: '.*/item/7$'}\n"),
    ("b_plain", "GET", f"http://{HOST}/item/1", None, ""),
    ("c_twice", "GET", f"http://{HOST}/item/2", None, "max_replays: 1\n"),
    ("c_twice_again", "GET", f"http://{HOST}/item/2", None, ""),
    ("d_any_method", "POST", f"http://{HOST}/item/3", None, "match:\n  exact: [url]\n"),
    ("e_redacted", "GET", f"http://{HOST}/q?token=<redacted>&page=1", None, ""),
    ("f_body", "POST", f"http://{HOST}/form", "a=1", ""),
    ("g_body_regex", "POST", f"http://{HOST}/form", "ignored",
     "match:\n  exact: [url, method]\n  regex: {body: 'b=\\d+'}\n"),
    ("h_headers", "GET", f"http://{HOST}/h", None,
     "match:\n  exact: [url, method, headers]\n"),
    ("i_method_only", "DELETE", f"http://{HOST}/never-looked-at", None,
     "match:\n  exact: [method]\n"),
    ("j_plain_late", "GET", f"http://{HOST}/item/7", None, ""),
    ("k_lowercase", "get", f"http://{HOST}/item/1", None, ""),
]  # fmt: skip

REQUESTS = [
    ("GET", f"http://{HOST}/item/1", b"", {}),
    ("GET", f"http://{HOST}/item/2", b"", {}),
    ("GET", f"http://{HOST}/item/3", b"", {}),
    ("PUT", f"http://{HOST}/item/3", b"", {}),
    ("GET", f"http://{HOST}/item/7", b"", {}),
    ("GET", f"http://{HOST}/q?token=s3cret&page=1", b"", {}),
    ("GET", f"http://{HOST}/q?token=s3cret&page=2", b"", {}),
    ("POST", f"http://{HOST}/form", b"a=1", {}),
    ("POST", f"http://{HOST}/form", b"b=42", {}),
    ("POST", f"http://{HOST}/form", b"c=0", {}),
    ("GET", f"http://{HOST}/h", b"", {"X-Need": "yes"}),
    ("GET", f"http://{HOST}/h", b"", {}),
    ("DELETE", f"http://{HOST}/elsewhere", b"", {}),
    ("get", f"http://{HOST}/item/1", b"", {}),
    ("GET", f"http://{HOST}/nowhere", b"", {}),
]


def write_tricky(root: Path) -> None:
    for name, method, url, body, extra in TRICKY:
        write_interaction(
            root, "default", "Api", name, method=method, url=url, extra=extra, request_body=body,
            body=f"from {name}",
        )  # fmt: skip
    headers_file = root / "default" / "Api" / "h_headers.yaml"
    headers_file.write_text(
        headers_file.read_text().replace("headers: {}", "headers: {X-Need: [yes]}", 1)
    )


def test_the_index_picks_what_a_scan_of_every_interaction_picks(tmp_path: Path) -> None:
    write_tricky(tmp_path)
    recorded = ScenarioStore(tmp_path).service("default", "Api")
    assert recorded.scanned, "some interactions must be beyond the index for this test"
    assert recorded.by_method_url, "and some in it"
    state = ReplayState("default", recording=False)
    settings = state.settings()
    counts: dict[str, int] = {}
    # Every request three times, in turn: max_replays uses one up, and the next answers.
    for method, url, body, headers in itertools.chain.from_iterable([REQUESTS] * 3):
        request = IncomingRequest(method, url, Headers(headers), body)
        scanned = decide(request, recorded.interactions, lambda i: counts.get(i.name, 0))
        chosen = state.choose(settings, "Api", request, recorded)
        expected = scanned.interaction
        assert (chosen and chosen.name) == (expected and expected.name), (method, url, body)
        if expected is not None:
            counts[expected.name] = counts.get(expected.name, 0) + 1
    assert counts["c_twice"] == 1 and counts["c_twice_again"] == 2
    assert counts["a_regex_url"] == 3  # before j_plain_late in file order: it always wins
    assert "j_plain_late" not in counts
    assert counts["e_redacted"] == 3 and counts["g_body_regex"] == 3


def test_the_index_answers_through_the_mitm_in_file_order(deproxy: Deproxy, tmp_path: Path) -> None:
    write_tricky(tmp_path)
    mitm: MitmEndpoint = deproxy.add_mitm_endpoint(scenarios_path=tmp_path, services=API)
    bodies = [
        deproxy.make_request(f"http://{HOST}{path}", proxy=mitm.url).received_response.body  # type: ignore[union-attr]
        for path in ("/item/7", "/item/2", "/item/2", "/q?token=x&page=1", "/item/1")
    ]
    assert bodies == [
        "from a_regex_url",
        "from c_twice",
        "from c_twice_again",
        "from e_redacted",
        "from b_plain",
    ]


def test_a_replayed_response_made_once_answers_get_and_head_as_before(
    deproxy: Deproxy, tmp_path: Path
) -> None:
    path = write_interaction(
        tmp_path,
        "default",
        "Api",
        "interaction_0",
        url=f"http://{HOST}/z",
        body="zipped text",
        extra="match:\n  exact: [url]\n",
    )
    path.write_text(
        path.read_text().replace(
            "    Content-Type: [text/plain]\n",
            "    Content-Type: [text/plain]\n    Content-Encoding: [gzip]\n    Content-Length: ['31']\n",
        )
    )  # fmt: skip
    mitm = deproxy.add_mitm_endpoint(scenarios_path=tmp_path, services=API)
    answers = [
        deproxy.make_request(f"http://{HOST}/z", method=method, proxy=mitm.url).received_response
        for method in ("GET", "HEAD", "GET", "HEAD")
    ]
    get, head, get_again, head_again = answers
    assert get is not None and head is not None and get_again is not None and head_again is not None
    assert gzip.decompress(get.raw_body) == b"zipped text"
    assert get_again.raw_body == get.raw_body
    assert get.headers["Content-Length"] == str(len(get.raw_body))
    assert head.raw_body == b"" and head_again.raw_body == b""
    assert head.headers.get_all("Content-Length") == ["31"]  # the recorded one, for a HEAD
    assert head_again.headers.get_all("Content-Length") == ["31"]
    mitm.assert_interaction_used("Api", "interaction_0", times=4)


def test_a_file_edited_in_place_is_seen_by_the_paced_check(tmp_path: Path) -> None:
    count = 10
    for number in range(count):
        write_interaction(tmp_path, "s", "Api", f"interaction_{number}", url=f"http://{HOST}/{number}", body=f"body {number}")  # fmt: skip
    store = ScenarioStore(tmp_path)
    loaded = store.service("s", "Api")
    directory = tmp_path / "s" / "Api"
    directory_times = os.stat(directory)
    edited = directory / "interaction_7.yaml"
    edited.write_text(edited.read_text().replace("body 7", "edited 7"))
    os.utime(edited, (1, 1))
    os.utime(directory, ns=(directory_times.st_atime_ns, directory_times.st_mtime_ns))
    # One file's share of the time passes before each lookup: each checks one file, in order,
    # so the eighth lookup is the one that reaches the edited file.
    lookups = 0
    current = loaded
    while current is loaded and lookups < count:
        loaded.checked_at -= FULL_RESCAN_SECONDS / count
        current = store.service("s", "Api")
        lookups += 1
    assert lookups == 8
    assert current.interactions[7].response.body == "edited 7"
    # After a quiet second, one lookup checks every file.
    edited.write_text(edited.read_text().replace("edited 7", "again 7"))
    os.utime(edited, (2, 2))
    os.utime(directory, ns=(directory_times.st_atime_ns, directory_times.st_mtime_ns))
    current.checked_at -= FULL_RESCAN_SECONDS
    assert store.service("s", "Api").interactions[7].response.body == "again 7"


def test_remembered_targets_change_no_answer() -> None:
    from pytest_deproxy import Request

    services = [Service("BaseService", "Api", (HOST,))]
    for _ in range(2):  # the second time from memory
        routed = dispatch.route(Request("GET", f"http://{HOST}/p", {"Host": HOST}), None, services)
        assert isinstance(routed, dispatch.Route) and routed.url == f"http://{HOST}/p"
        refused = dispatch.route(Request("GET", f"http://{HOST}/p", {"Host": "other.org"}), None, services)  # fmt: skip
        assert not isinstance(refused, dispatch.Route) and int(refused.code) == 400
        tunnelled = dispatch.route(Request("GET", "/p", {"Host": HOST}), f"{HOST}:443", services)
        assert isinstance(tunnelled, dispatch.Route) and tunnelled.url == f"https://{HOST}/p"
    with pytest.raises(targets.BadTarget):
        targets.located("nonsense", None, None)
    assert ("nonsense", None, None) not in targets._located
    huge = "/" + "x" * 5000
    assert targets.located(huge, HOST, None)[1] == f"http://{HOST}{huge}"
    assert (huge, HOST, None) not in targets._located  # long targets are not remembered
