"""Scenario files are untrusted input; recordings and HAR files keep no secrets and every byte.

Issue 11: hostile YAML (deep nesting, alias bombs, bad values) is refused at load with the file
and line; recordings round-trip every byte, are readable under the user's umask, and hide
credentials in headers, query strings and JSON/form bodies, and still replay.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_deproxy import (
    Deproxy,
    Endpoint,
    MitmEndpoint,
    ScenarioError,
)
from pytest_deproxy.mitm.scenarios import (
    MAX_NAME_LENGTH,
    MAX_NESTING,
    check_name,
    load_interaction,
)

from .conftest import eventually
from .conftest import write_interaction as write_file

EndpointFactory = Callable[..., Endpoint]
API = [{"type": "BaseService", "name": "ApiService", "hosts_list": ["api.example.org"]}]
HEAD = "request: {method: GET, url: 'http://api.example.org/x'}\nresponse:\n  status: {code: 200}\n"


def interaction_file(tmp_path: Path, text: str, name: str = "interaction_0") -> Path:
    path = tmp_path / "default" / "ApiService" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def start(deproxy: Deproxy, root: Path, **options: object) -> MitmEndpoint:
    options.setdefault("services", API)
    return deproxy.add_mitm_endpoint(scenarios_path=root, **options)  # type: ignore[arg-type]


# -- 1. nesting: libyaml never sees a deep file ------------------------------------------

NESTING_PROBE = """
import json, os, sys
from pathlib import Path
import yaml

if sys.argv[1] == "crashing-libyaml":
    # Stand in for the libyaml builds that recurse per level and segfault on deep nesting.
    class Crashing(yaml.CSafeLoader):
        def __init__(self, stream):
            if "[" * 150 in stream or "- " * 150 in stream or "{a: " * 150 in stream:
                os.abort()
            super().__init__(stream)
    yaml.CSafeLoader = Crashing

from pytest_deproxy import ScenarioError
from pytest_deproxy.mitm.scenarios import load_interaction

results = {}
for path in sys.argv[2:]:
    try:
        interaction = load_interaction(Path(path))
        results[Path(path).stem] = "loaded, body of %d characters" % len(interaction.response.body)
    except ScenarioError as error:
        results[Path(path).stem] = str(error)
print(json.dumps(results))
"""


def deep_files(tmp_path: Path) -> dict[str, Path]:
    depth = 30_000  # 60 KB, as the reviewer's file
    indented = "".join("  " * level + f"k{level}:\n" for level in range(150))
    texts = {
        "flow": HEAD + "  body: " + "[" * depth + "]" * depth + "\n",
        "flow-mappings": HEAD + "  body: " + "{a: " * 3000 + "}" * 3000 + "\n",
        "dashes": HEAD + "  body:\n    " + "- " * depth + "x\n",
        "indented": HEAD + "  body:\n" + textwrap.indent(indented, "    ") + "    " * 76 + "x\n",
        "moderate": HEAD + "  body: " + "[" * 300 + "]" * 300 + "\n",  # under libyaml's 1000
        "quoted-brackets": HEAD + "  body: '" + "[{" * 5000 + "'\n",  # text, not nesting
    }
    return {name: interaction_file(tmp_path, text, name) for name, text in texts.items()}


def run_probe(mode: str, paths: list[Path]) -> dict[str, str]:
    probe = subprocess.run(
        [sys.executable, "-c", NESTING_PROBE, mode, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert probe.returncode == 0, f"the loading process died: {probe.returncode} {probe.stderr}"
    return json.loads(probe.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", ["real-libyaml", "crashing-libyaml"])
def test_deep_nesting_is_refused_before_libyaml_sees_it(tmp_path: Path, mode: str) -> None:
    files = deep_files(tmp_path)
    results = run_probe(mode, list(files.values()))
    too_deep = f"collections nested deeper than {MAX_NESTING} levels"
    lines = {"flow": 4, "flow-mappings": 4, "dashes": 5, "moderate": 4, "indented": 103}
    for name, line in lines.items():
        assert (
            results[name] == f"{files[name]}:{line}: {too_deep}; an interaction file needs about 5"
        )
    assert results["quoted-brackets"] == "loaded, body of 10000 characters"


# -- 2. alias bombs ----------------------------------------------------------------------


def alias_bomb(levels: int) -> str:
    lines = ['    a: &a ["xxxxxxxxxx","x","x","x","x","x","x","x","x"]']
    for previous, name in zip("abcdefgh", "bcdefgh"[: levels - 1], strict=False):
        lines.append(f"    {name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    return HEAD + "  body:\n" + "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = interaction_file(tmp_path, alias_bomb(6))  # 9**6 strings: 5 MB once expanded
    assert path.stat().st_size < 600
    tracemalloc.start()
    try:
        with pytest.raises(ScenarioError) as refused:
            load_interaction(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(refused.value).startswith(f"{path}:")
    assert "aliases expand to more than 1,000,000 nodes and characters" in str(refused.value)
    assert peak < 2_000_000, f"refusing the bomb took {peak} bytes"


def test_sane_aliases_and_self_reference(tmp_path: Path) -> None:
    sane = interaction_file(
        tmp_path,
        "request: {method: GET, url: 'http://a/', headers: &h {Accept: [text/plain]}}\n"
        "response:\n  status: {code: 200}\n  headers: *h\n  body: ok\n",
    )
    assert load_interaction(sane).response.headers["Accept"] == "text/plain"
    looped = interaction_file(tmp_path, HEAD + "  body: &a [*a]\n", "looped")
    with pytest.raises(ScenarioError, match=rf"{looped}:4: an alias refers to the node"):
        load_interaction(looped)


# -- 3. bad values are refused at load, with the file and line ---------------------------

GOOD = """\
request:
  method: GET
  url: http://api.example.org/x
  headers:
    Accept: [text/plain]
  body: null
response:
  status: {code: 200, message: OK}
  headers:
    Content-Type: [text/plain]
  body: fine
"""


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "code: 200",
            "code: 99999",
            r":8: status code 99999 is not an HTTP status: use 100 to 599",
        ),
        ("code: 200", "code: 99", r":8: status code 99 is not"),
        ("code: 200", "code: true", r":8: status code True is not"),
        ("message: OK", 'message: "O\\r\\nK"', r":8: status message 'O\\r\\nK' holds a control"),
        (
            "Accept: [text/plain]",
            'Accept: ["a\\x01b"]',
            r":5: request.headers: the value of Accept holds a control character \('\\x01'\)",
        ),
        (
            "Accept: [text/plain]",
            '"Bad Name": [x]',
            r":5: request.headers: 'Bad Name' is not a valid header name",
        ),
        (
            "Content-Type: [text/plain]",
            'Content-Type: ["a\\nb"]',
            r":10: response.headers: the value of Content-Type",
        ),
        (
            "url: http://api.example.org/x",
            "url: http://api.example.org/a b",
            r":3: request url .* without spaces",
        ),
        ("method: GET", "method: 'GE T'", r":2: request method 'GE T' is not an HTTP method"),
        (
            "body: fine",
            'body: "\\ud800"',
            r":11: not valid YAML: found invalid Unicode character escape code",
        ),
        (
            "body: fine",
            "body: fi\x01ne",
            r":11: not valid YAML: control characters are not allowed \(found '\\x01'\)",
        ),
    ],
    ids=[
        "code-99999",
        "code-99",
        "code-bool",
        "message-crlf",
        "header-control",
        "header-name",
        "header-newline",
        "url-space",
        "method",
        "surrogate",
        "raw-control",
    ],
)
def test_bad_values_are_refused_at_load_with_file_and_line(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in GOOD
    path = interaction_file(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ScenarioError, match=str(path).replace(".", r"\.") + message):
        load_interaction(path)


def test_an_invalid_status_fails_the_first_request_naming_the_file(tmp_path: Path) -> None:
    path = interaction_file(tmp_path, GOOD.replace("code: 200", "code: 99999"))
    with Deproxy() as deproxy:
        mitm = start(deproxy, tmp_path)
        chain = deproxy.make_request("http://api.example.org/x", proxy=mitm.url)
        assert chain.received_response is not None and chain.received_response.code == "500"
        assert f"{path}:8: status code 99999" in str(chain.received_response.body)
        assert [str(e) for e in deproxy.errors] == [
            f"{path}:8: status code 99999 is not an HTTP status: use 100 to 599"
        ]


# -- 5. callback delays, and callback threads that fail ----------------------------------


@pytest.mark.parametrize("delay", [".inf", ".nan", "-.inf", "1e12", "-1", "true", "'soon'"])
def test_an_unusable_callback_delay_is_refused_at_load(tmp_path: Path, delay: str) -> None:
    path = interaction_file(
        tmp_path, HEAD + f"callbacks:\n- request: {{url: 'http://app/cb'}}\n  delay: {delay}\n"
    )
    with pytest.raises(
        ScenarioError, match=rf"{path}:6: a callback's delay is a number of seconds from 0 to 3600"
    ):
        load_interaction(path)


def test_a_callback_thread_that_fails_unexpectedly_tells_the_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = interaction_file(
        tmp_path, GOOD + "callbacks:\n- delay: 0\n  request: {url: 'http://app.local/cb'}\n"
    )

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the callback machinery broke")

    with Deproxy() as deproxy:
        mitm = start(deproxy, tmp_path)
        monkeypatch.setattr(mitm, "_upstream_for", broken)  # only callbacks use it in replay
        deproxy.make_request("http://api.example.org/x", proxy=mitm.url)
        eventually(lambda: deproxy.errors)
        [error] = deproxy.errors
    assert str(error) == (
        f"callback GET http://app.local/cb ({path}:13) failed unexpectedly: "
        "RuntimeError: the callback machinery broke"
    )
    assert isinstance(error.__cause__, RuntimeError)


# -- 6. scenario and service names -------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "x" * (MAX_NAME_LENGTH + 1),
        "name\n",
        "a/b",
        "a\\b",
        "nul\x00",
        ".",
        "..",
        " lead",
        "trail ",
        "tab\there",
        "a\x1bb",
    ],
    ids=[
        "300-long",
        "trailing-newline",
        "slash",
        "backslash",
        "nul",
        "dot",
        "dotdot",
        "leading-space",
        "trailing-space",
        "tab",
        "escape",
    ],
)
def test_names_are_checked_whole(name: str) -> None:
    with pytest.raises(
        ValueError, match=r"is not allowed: use 1 to 128 ASCII letters, digits, spaces"
    ):
        check_name(name, "scenario")


def test_a_long_name_is_refused_up_front_and_spaces_are_allowed(
    deproxy: Deproxy, tmp_path: Path
) -> None:
    write_file(
        tmp_path,
        "a scenario",
        "ApiService",
        "interaction_0",
        url="http://api.example.org/x",
        body="spaced",
    )
    mitm = start(deproxy, tmp_path)
    with pytest.raises(ValueError, match="not allowed"):
        mitm.set_scenario("x" * 300)
    mitm.set_scenario("a scenario")
    chain = deproxy.make_request("http://api.example.org/x", proxy=mitm.url)
    assert chain.received_response is not None and chain.received_response.body == "spaced"
    assert check_name("x" * MAX_NAME_LENGTH, "scenario")
