"""Scenario files are untrusted input; recordings and HAR files keep no secrets and every byte.

Issue 11: hostile YAML (deep nesting, alias bombs, bad values) is refused at load with the file
and line; recordings round-trip every byte, are readable under the user's umask, and hide
credentials in headers, query strings and JSON/form bodies, and still replay.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_deproxy import (
    Deproxy,
    Endpoint,
    Headers,
    MitmEndpoint,
    Request,
    Response,
    ScenarioError,
    handlers,
)
from pytest_deproxy.mitm.interactions import load_interaction
from pytest_deproxy.mitm.recording import encoded_body, interaction_document, write_interaction
from pytest_deproxy.mitm.safe_yaml import MAX_NESTING
from pytest_deproxy.mitm.scenarios import MAX_NAME_LENGTH, ScenarioStore, check_name
from pytest_deproxy.redaction import DEFAULT, REDACTED, Redaction
from pytest_deproxy.report import to_har

from .conftest import deproxy_checking_its_own_errors, eventually
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
    # Stand in for the builds that crash on deep nesting: composing nodes recurses in C once
    # per level (libyaml's event parser keeps a stack of its own, and is left as it is).
    class Crashing(yaml.CSafeLoader):
        def __init__(self, stream):
            self.deep = "[" * 150 in stream or "- " * 150 in stream or "{a: " * 150 in stream
            super().__init__(stream)

        def get_single_node(self):
            if self.deep:
                os.abort()
            return super().get_single_node()
    yaml.CSafeLoader = Crashing

from pytest_deproxy import ScenarioError
from pytest_deproxy.mitm.interactions import load_interaction

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
        "indented-cr": HEAD  # old Mac line breaks: libyaml reads them as lines too
        + "  body:\r"
        + textwrap.indent(indented, "    ").replace("\n", "\r")
        + "    " * 76
        + "x\r",
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
    lines = {
        "flow": 4,
        "flow-mappings": 4,
        "dashes": 5,
        "moderate": 4,
        "indented": 103,
        "indented-cr": 103,
    }
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
    with deproxy_checking_its_own_errors() as deproxy:
        mitm = start(deproxy, tmp_path)
        chain = deproxy.make_request("http://api.example.org/x", proxy=mitm.url)
        assert chain.received_response is not None and chain.received_response.code == "500"
        assert f"{path}:8: status code 99999" in str(chain.received_response.body)
        assert [str(e) for e in deproxy.errors] == [
            f"{path}:8: status code 99999 is not an HTTP status: use 100 to 599"
        ]


# -- 4. recordings round-trip every byte -------------------------------------------------


def record_and_load(
    request_body: bytes, response_body: bytes, headers: Headers
) -> tuple[bytes, bytes]:
    request = Request("POST", "/p", headers, request_body)
    response = Response(200, "OK", headers, response_body)
    document = interaction_document(request, "http://api.example.org/p", response)
    with tempfile.TemporaryDirectory() as root:
        path = write_interaction(Path(root), "s", "Svc", document)
        loaded = load_interaction(path)
    return loaded.request.body, encoded_body(loaded.response.body, loaded.response.headers)


CONTENT_TYPES = st.sampled_from(
    [
        Headers(),
        Headers({"Content-Type": "text/plain"}),
        Headers({"Content-Type": "text/plain; charset=utf-8"}),
        Headers({"Content-Type": "text/html; charset=iso-8859-1"}),
        Headers({"Content-Type": "application/octet-stream"}),
        Headers({"Content-Type": "text/plain", "Content-Encoding": "gzip"}),
    ]
)
TRICKY = "\x85\u2028\u2029\r\n\ufeff\t \x00\x7f\x9f\u00e9\U0001f600'\"#:-[]{}&*!|>%@`"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    request_body=st.binary(max_size=300),
    response_body=st.binary(max_size=300),
    headers=CONTENT_TYPES,
)
def test_arbitrary_bytes_come_back_identical(
    request_body: bytes, response_body: bytes, headers: Headers
) -> None:
    assert record_and_load(request_body, response_body, headers) == (request_body, response_body)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    request_text=st.text(
        st.one_of(st.characters(codec="utf-8"), st.sampled_from(TRICKY)), max_size=120
    ),
    response_text=st.text(
        st.one_of(st.characters(codec="utf-8"), st.sampled_from(TRICKY)), max_size=120
    ),
    headers=CONTENT_TYPES,
)
def test_arbitrary_text_comes_back_identical(
    request_text: str, response_text: str, headers: Headers
) -> None:
    request_body = request_text.encode("utf-8")
    response_body = response_text.encode("utf-8")
    assert record_and_load(request_body, response_body, headers) == (request_body, response_body)


def test_a_body_with_nel_replays_after_recording(
    deproxy: Deproxy, endpoint: EndpointFactory, tmp_path: Path
) -> None:
    text = "line one\x85line two\u2028end\n"  # once stored 'line one\x85  line two': a space
    upstream = endpoint(
        "real-api", Response(200, headers={"Content-Type": "text/plain"}, body=text)
    )
    mitm = start(deproxy, tmp_path, record=True, upstreams={"api.example.org": upstream.url})
    deproxy.make_request("http://api.example.org/n", "POST", request_body=text, proxy=mitm.url)
    mitm.set_recording(False)
    upstream.shutdown()
    replayed = deproxy.make_request(
        "http://api.example.org/n", "POST", request_body=text, proxy=mitm.url
    ).received_response
    assert replayed is not None and replayed.code == "200", replayed and replayed.body
    assert replayed.raw_body == text.encode("utf-8")


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

    with deproxy_checking_its_own_errors() as deproxy:
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


# -- 7. secrets --------------------------------------------------------------------------

SECRETS = (
    "hdr-k3y",
    "auth-t0k3n",
    "gl-pat",
    "amz-t0k",
    "q-k3y",
    "q-acc3ss",
    "q-s1g",
    "b-s3cret",
    "b-t0k",
    "b-pw",
    "sess-c00kie",
    "resp-t0k",
)


def secret_exchange(deproxy: Deproxy, mitm: MitmEndpoint, suffix: str = "") -> Response | None:
    """A request that carries every kind of secret (``suffix`` makes them different)."""

    def s(value: str) -> str:
        return value + suffix

    body = {
        "client_id": "app",
        "client_secret": s("b-s3cret"),
        "nested": [{"access_token": s("b-t0k"), "password": s("b-pw")}],
    }
    return deproxy.make_request(
        f"http://api.example.org/token?api_key={s('q-k3y')}&access_token={s('q-acc3ss')}&sig={s('q-s1g')}&page=2",
        "POST",
        headers={
            "X-Api-Key": s("hdr-k3y"),
            "X-Auth-Token": s("auth-t0k3n"),
            "PRIVATE-TOKEN": s("gl-pat"),
            "X-Amz-Security-Token": s("amz-t0k"),
            "Content-Type": "application/json",
        },
        request_body=json.dumps(body),
        proxy=mitm.url,
    ).received_response


def test_recordings_hide_secrets_and_still_replay(
    deproxy: Deproxy, endpoint: EndpointFactory, tmp_path: Path
) -> None:
    answer = Response(
        200,
        headers={
            "Content-Type": "application/json",
            "Set-Cookie": "session=sess-c00kie; Path=/; HttpOnly",
        },
        body=json.dumps({"access_token": "resp-t0k", "expires_in": 3600}),
    )
    upstream = endpoint("real-api", answer)
    mitm = start(deproxy, tmp_path, record=True, upstreams={"api.example.org": upstream.url})
    secret_exchange(deproxy, mitm)
    text = (tmp_path / "default" / "ApiService" / "interaction_0.yaml").read_text()
    for secret in SECRETS:
        assert secret not in text
    assert "page=2" in text and "client_id" in text and "expires_in" in text
    mitm.set_recording(False)
    upstream.shutdown()
    replayed = secret_exchange(deproxy, mitm, suffix="-other")  # other secrets: still matches
    assert replayed is not None and replayed.code == "200", replayed and replayed.body
    assert replayed.headers["Set-Cookie"] == "session=deproxy-redacted-1; Path=/; HttpOnly"
    assert json.loads(replayed.raw_body) == {"access_token": REDACTED, "expires_in": 3600}
    other_page = deproxy.make_request(
        "http://api.example.org/token?api_key=x&access_token=y&sig=z&page=3", "POST", proxy=mitm.url
    ).received_response
    assert other_page is not None and other_page.code == "501"  # only secrets are wildcards


def test_form_bodies_and_added_names(
    deproxy: Deproxy, endpoint: EndpointFactory, tmp_path: Path
) -> None:
    upstream = endpoint("real-api", Response(204))
    mitm = start(
        deproxy,
        tmp_path,
        record=True,
        upstreams={"api.example.org": upstream.url},
        redact_headers=["X-Tenant"],
        redact_query=["pin"],
        redact_body_keys=["otp"],
    )
    form = {"Content-Type": "application/x-www-form-urlencoded", "X-Tenant": "tenant-9"}

    def send(password: str, user: str = "bob") -> str:
        response = deproxy.make_request(
            "http://api.example.org/login?pin=4711",
            "POST",
            headers=form,
            request_body=f"user={user}&password={password}&otp=99{password}",
            proxy=mitm.url,
        ).received_response
        assert response is not None
        return response.code

    assert send("hunter2") == "204"
    text = (tmp_path / "default" / "ApiService" / "interaction_0.yaml").read_text()
    for secret in ("hunter2", "4711", "tenant-9", "99hunter2"):
        assert secret not in text
    assert "user=bob&password=<redacted>&otp=<redacted>" in text
    mitm.set_recording(False)
    assert send("other") == "204"
    assert send("hunter2", user="eve") == "501"
    with pytest.raises(TypeError, match="a list of names, not one string"):
        start(deproxy, tmp_path, redact_headers="X-Tenant")


def test_har_hides_secrets(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint("api", Response(200, headers={"Set-Cookie": "sid=s3ss; Secure"}))
    chain = deproxy.make_request(
        server.url + "/x?access_token=q-t0k&page=1",
        "POST",
        headers={
            "Authorization": "Bearer b34rer",
            "Cookie": "sid=c00k",
            "Content-Type": "application/json",
            "X-Pin": "1234",
        },
        request_body='{"password": "pw-s3cret", "user": "bob"}',
    )
    text = json.dumps(to_har(chain))
    for secret in ("q-t0k", "b34rer", "c00k", "s3ss", "pw-s3cret"):
        assert secret not in text
    assert (
        "page=1" in text and "bob" in text and "sid=<redacted>; Secure" in text and "1234" in text
    )
    more = json.dumps(to_har(chain, redaction=DEFAULT.adding(headers=["X-Pin"])))
    assert "1234" not in more
    everything = json.dumps(to_har(chain, redaction=Redaction((), (), ())))
    assert "b34rer" in everything


def test_the_har_option_writes_no_secrets(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_deproxy import handlers

        def test_fails(deproxy, endpoint):
            server = endpoint("api", handlers.echo)
            deproxy.make_request(server.url + "/?api_key=q-s3cret", headers={"Authorization": "Basic YWxhZGRpbjpzZXNhbWU=", "Cookie": "a=c00k"})
            assert False
        """
    )
    result = pytester.runpytest_subprocess(f"--deproxy-har={pytester.path / 'har'}")
    result.assert_outcomes(failed=1)
    [written] = (pytester.path / "har").iterdir()
    text = written.read_text()
    assert "YWxhZGRpbjpzZXNhbWU=" not in text and "c00k" not in text and "q-s3cret" not in text
    assert "Authorization" in text and REDACTED in text


def test_redacted_values_are_wildcards_only_where_redacted(tmp_path: Path) -> None:
    from pytest_deproxy.mitm.matching import IncomingRequest, decide

    path = interaction_file(
        tmp_path,
        "request:\n  method: POST\n  url: 'http://api.example.org/x?token=<redacted>&a=1'\n"
        "  headers: {Cookie: ['sid=<redacted>; theme=dark']}\n"
        '  body: \'{"password": "<redacted>", "user": "bob"}\'\n'
        "response:\n  status: {code: 200}\n"
        "match:\n  exact: [url, method, body, headers]\n",
    )
    interaction = load_interaction(path)
    store = ScenarioStore(tmp_path).service("default", "ApiService")
    found = store.candidates("POST", "http://api.example.org/x?token=t&a=1")
    assert [i.name for i in found] == ["interaction_0"]  # not lost to the (method, url) index

    def decision(url: str, cookie: str, body: str) -> bool:
        request = IncomingRequest("POST", url, Headers({"Cookie": cookie}), body.encode())
        return decide(request, [interaction], lambda i: 0).interaction is not None

    url, cookie, body = (
        "http://api.example.org/x?token=t0k&a=1",
        "sid=abc; theme=dark",
        '{"user": "bob", "password": "x"}',
    )
    assert decision(url, cookie, body)
    assert not decision(url.replace("a=1", "a=2"), cookie, body)
    assert not decision(url, "sid=abc; theme=light", body)
    assert not decision(url, cookie, body.replace("bob", "eve"))


# -- 8. recordings follow the umask ------------------------------------------------------


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_recordings_follow_the_umask(
    deproxy: Deproxy, endpoint: EndpointFactory, tmp_path: Path, umask: int, mode: int
) -> None:
    upstream = endpoint("real-api", handlers.echo)
    mitm = start(deproxy, tmp_path, record=True, upstreams={"api.example.org": upstream.url})
    previous = os.umask(umask)
    try:
        deproxy.make_request("http://api.example.org/u", proxy=mitm.url)
    finally:
        os.umask(previous)
    written = tmp_path / "default" / "ApiService" / "interaction_0.yaml"
    assert oct(written.stat().st_mode & 0o777) == oct(mode)
