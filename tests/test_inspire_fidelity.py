"""INSPIRE-MITMProxy's users switch without changing a byte: its files, its replies, its clients.

Each test is one item of fidelity: charsets, gzip both ways, HEAD and 304 lengths, reason
phrases, file order, unknown keys, scenario names with spaces, the management API's replies,
the CA variables real clients read, unverified upstream TLS, and recording with real clients
(curl, requests, httpx, aiohttp, git, pip) then replaying with no upstream at all. The
interaction files are hand-written in the original's format under tests/inspire_fixtures/.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import yaml

from pytest_deproxy import CertificateAuthority, Deproxy, Endpoint, MitmEndpoint, Request, Response

from .conftest import find_program

FIXTURES = Path(__file__).parent / "inspire_fixtures"
CORPUS = Path(  # as tests/test_mitm_corpus.py finds it: read in place, never copied
    os.environ.get("DEPROXY_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus")
)
EndpointFactory = Callable[..., Endpoint]


def service(name: str, *hosts: str, kind: str = "BaseService") -> dict[str, Any]:
    return {"type": kind, "name": name, "hosts_list": list(hosts)}


def replaying(deproxy: Deproxy, scenario: str, *services: dict[str, Any]) -> MitmEndpoint:
    return deproxy.add_mitm_endpoint(
        scenarios_path=FIXTURES, active_scenario=scenario, services=list(services)
    )


def ask(
    deproxy: Deproxy,
    mitm: MitmEndpoint,
    url: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | str | None = None,
) -> Response:
    chain = deproxy.make_request(url, method, headers, body, proxy=mitm.url)
    assert chain.received_response is not None, chain.error
    return chain.received_response


def client_env(mitm: MitmEndpoint, home: Path) -> dict[str, str]:
    """The environment of a client subprocess: no proxy or CA settings but the MITM's."""
    env = {
        key: value
        for key, value in os.environ.items()
        if "proxy" not in key.lower() and not key.endswith(("_CA_BUNDLE", "_CAINFO", "CERT_FILE"))
    }
    env.update(mitm.proxy_env())
    env.update({"HOME": str(home), "PIP_CONFIG_FILE": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"})
    return env


# -- bodies and charsets -------------------------------------------------------------------


def test_a_text_body_is_sent_in_its_declared_charset(deproxy: Deproxy) -> None:
    mitm = replaying(deproxy, "charsets", service("LatinService", "latin.example.org"))
    response = ask(deproxy, mitm, "http://latin.example.org/hello")
    assert response.raw_body == "Witaj, świecie!".encode("iso-8859-2")
    assert b"\xb6" in response.raw_body  # ś in ISO-8859-2, as the original sends it


def test_a_text_request_body_is_matched_in_its_declared_charset(deproxy: Deproxy) -> None:
    mitm = replaying(deproxy, "charsets", service("LatinService", "latin.example.org"))
    latin = {"Content-Type": "text/plain; charset=ISO-8859-2"}
    assert (
        ask(
            deproxy,
            mitm,
            "http://latin.example.org/echo",
            "POST",
            latin,
            "świat".encode("iso-8859-2"),
        ).raw_body
        == "przyjęto".encode()
    )
    # The same text in UTF-8, declared so, is the same text.
    utf8 = {"Content-Type": "text/plain; charset=utf-8"}
    assert (
        ask(deproxy, mitm, "http://latin.example.org/echo", "POST", utf8, "świat".encode()).code
        == "200"
    )
    other = ask(
        deproxy, mitm, "http://latin.example.org/echo", "POST", latin, "świt".encode("iso-8859-2")
    )
    assert other.code == "501"


def test_a_text_body_its_charset_cannot_encode_is_a_scenario_error(tmp_path: Path) -> None:
    from pytest_deproxy.errors import ScenarioError
    from pytest_deproxy.mitm.interactions import load_interaction

    path = tmp_path / "interaction_0.yaml"
    text = (FIXTURES / "charsets" / "LatinService" / "interaction_0.yaml").read_text()
    path.write_text(text.replace("Witaj, świecie!", "Witaj, 世界"), encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"interaction_0.yaml:11: .*'世'.*iso8859-2.*!!binary"):
        load_interaction(path)


def test_recording_stores_text_of_a_declared_charset_as_text_and_replays_it_byte_for_byte(
    deproxy: Deproxy, endpoint: EndpointFactory, tmp_path: Path
) -> None:
    latin = {"Content-Type": "text/plain; charset=ISO-8859-2"}
    upstream = endpoint("latin", Response(200, headers=latin, body="Witaj, świecie!"))
    api = service("LatinService", "latin.example.org")
    recorder = deproxy.add_mitm_endpoint(
        scenarios_path=tmp_path,
        services=[api],
        record=True,
        upstreams={"latin.example.org": upstream.url},
    )
    sent = "świat".encode("iso-8859-2")
    recorded = ask(deproxy, recorder, "http://latin.example.org/x", "POST", latin, sent)
    document = yaml.safe_load(
        (tmp_path / "default" / "LatinService" / "interaction_0.yaml").read_text()
    )
    assert document["request"]["body"] == "świat"  # text, as the original writes it
    assert document["response"]["body"] == "Witaj, świecie!"
    replayer = deproxy.add_mitm_endpoint(scenarios_path=tmp_path, services=[api], name="replay")
    replayed = ask(deproxy, replayer, "http://latin.example.org/x", "POST", latin, sent)
    assert replayed.raw_body == recorded.raw_body == "Witaj, świecie!".encode("iso-8859-2")


# -- gzip, both ways ------------------------------------------------------------------------


def test_a_gzip_response_the_original_stored_as_decoded_text_still_replays(
    deproxy: Deproxy,
) -> None:
    mitm = replaying(deproxy, "gzip", service("GzipService", "gzip.example.org"))
    response = ask(
        deproxy, mitm, "https://gzip.example.org/text", headers={"Accept-Encoding": "gzip"}
    )
    assert response.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(response.raw_body) == b'{"answer": "decoded text"}'
    with httpx.Client(proxy=mitm.url, verify=mitm.ca.client_context()) as client:
        assert client.get(
            "https://gzip.example.org/text", headers={"Accept-Encoding": "gzip"}
        ).json() == {"answer": "decoded text"}


def test_a_gzip_request_body_is_matched_byte_for_byte(deproxy: Deproxy) -> None:
    mitm = replaying(deproxy, "gzip", service("GzipService", "gzip.example.org"))
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    body = gzip.compress(b'{"query": "gzip"}', mtime=0)
    response = ask(deproxy, mitm, "https://gzip.example.org/search", "POST", headers, body)
    assert response.code == "200"
    assert response.raw_body == gzip.compress(b'{"answer": "gzip"}', mtime=0)  # as stored
    # Other bytes of the same JSON (another mtime in the gzip header) are another body.
    other = gzip.compress(b'{"query": "gzip"}', mtime=1)
    assert (
        ask(deproxy, mitm, "https://gzip.example.org/search", "POST", headers, other).code == "501"
    )


def test_recording_stores_gzip_both_ways_as_binary_the_original_reads_back(
    deproxy: Deproxy, endpoint: EndpointFactory, tmp_path: Path
) -> None:
    answer = gzip.compress(b'{"answer": 42}', mtime=7)
    upstream = endpoint(
        "gz",
        Response(
            200,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            body=answer,
        ),
        tls=True,
    )
    api = service("GzipService", "gzip.example.org")
    recorder = deproxy.add_mitm_endpoint(
        scenarios_path=tmp_path,
        services=[api],
        record=True,
        upstreams={"gzip.example.org": upstream.url},
    )
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    body = gzip.compress(b'{"question": 6}', mtime=3)
    ask(deproxy, recorder, "https://gzip.example.org/q", "POST", headers, body)
    path = tmp_path / "default" / "GzipService" / "interaction_0.yaml"
    text = path.read_text()
    assert text.count("!!binary") == 2
    # What the original's loader (PyYAML's yaml.load; !!binary is bytes) reads: the same bytes.
    document = yaml.load(text, Loader=yaml.FullLoader)
    assert document["request"]["body"] == body and document["response"]["body"] == answer
    assert document["response"]["status"] == {"code": 200, "message": "OK"}
    assert document["request"]["url"] == "https://gzip.example.org/q"
    replayer = deproxy.add_mitm_endpoint(scenarios_path=tmp_path, services=[api], name="replay")
    assert (
        ask(deproxy, replayer, "https://gzip.example.org/q", "POST", headers, body).raw_body
        == answer
    )


# -- lengths of bodiless answers, reason phrases ---------------------------------------------


def test_head_and_304_keep_their_recorded_content_length(deproxy: Deproxy) -> None:
    mitm = replaying(deproxy, "lengths", service("SizeService", "size.example.org"))
    head = ask(deproxy, mitm, "https://size.example.org/bucket/object.bin", "HEAD")
    assert (head.code, head.headers["Content-Length"], head.raw_body) == ("200", "1234", b"")
    not_modified = ask(deproxy, mitm, "https://size.example.org/bucket/object.bin")
    assert (not_modified.code, not_modified.headers["Content-Length"]) == ("304", "1234")
    # What boto3's head_object reads, through requests (urllib3, as botocore).
    with requests.Session() as session:
        session.trust_env = False
        answer = session.head(
            "https://size.example.org/bucket/object.bin",
            proxies={"https": mitm.url},
            verify=mitm.ca.cert_pem_path,
            timeout=30,
        )
    assert int(answer.headers["Content-Length"]) == 1234


def test_head_and_304_keep_their_content_length_passing_through_and_recording(
    deproxy: Deproxy, endpoint: EndpointFactory, tmp_path: Path
) -> None:
    def handler(request: Request) -> Response:
        if request.headers.get("If-None-Match"):
            return Response(304, headers={"Content-Length": "1234", "ETag": '"abc"'})
        return Response(200, headers={"Content-Type": "application/octet-stream"}, body=b"x" * 1234)

    upstream = endpoint("s3", handler, tls=True)
    stores = {"size.example.org": upstream.url, "pass.example.org": upstream.url}
    mitm = deproxy.add_mitm_endpoint(
        scenarios_path=tmp_path,
        services=[
            service("SizeService", "size.example.org"),
            service("WhitelistService", "pass.example.org", kind="WhitelistService"),
        ],
        record=True,
        upstreams=stores,
    )
    for host in ("pass.example.org", "size.example.org"):  # passed through, recorded
        head = ask(deproxy, mitm, f"https://{host}/object.bin", "HEAD")
        assert (head.headers["Content-Length"], head.raw_body) == ("1234", b"")
        cached = ask(
            deproxy, mitm, f"https://{host}/object.bin", headers={"If-None-Match": '"abc"'}
        )
        assert (cached.code, cached.headers["Content-Length"]) == ("304", "1234")
    mitm.set_recording(False)
    head = ask(deproxy, mitm, "https://size.example.org/object.bin", "HEAD")  # replayed
    assert head.headers["Content-Length"] == "1234"


def test_a_status_without_a_message_gets_the_standard_reason_phrase(deproxy: Deproxy) -> None:
    mitm = replaying(deproxy, "reasons", service("PlainService", "plain.example.org"))
    response = ask(deproxy, mitm, "http://plain.example.org/missing")
    assert (response.code, response.message, response.body) == ("404", "Not Found", "gone")


# -- files: order, unknown keys, names -------------------------------------------------------


def test_files_are_tried_in_the_originals_sorted_order(deproxy: Deproxy) -> None:
    mitm = replaying(deproxy, "order", service("OrderService", "order.example.org"))
    which = [ask(deproxy, mitm, "http://order.example.org/which").body for _ in range(2)]
    assert which == ["answer.yaml", "answer2.yaml"]  # sorted(): "answer." < "answer2"
    numbered = [ask(deproxy, mitm, "http://order.example.org/numbered").body for _ in range(2)]
    assert numbered == ["interaction_10", "interaction_2"]  # plain order, as the original
    assert list(mitm.interactions("OrderService")) == [
        "answer",
        "answer2",
        "interaction_10",
        "interaction_2",
    ]


def test_the_corpus_robotupload_pair_is_listed_in_the_originals_order(deproxy: Deproxy) -> None:
    root = CORPUS / "inspire-next" / "scenarios"
    if not root.is_dir():
        pytest.skip(f"the INSPIRE corpus is not at {root} (set DEPROXY_CORPUS)")
    mitm = deproxy.add_mitm_endpoint(
        scenarios_path=root, active_scenario="harvest_nucl_th_and_jlab_curation"
    )
    assert list(mitm.interactions("LegacyService")) == [
        "allocaterecord",
        "robotupload",
        "robotupload2",
    ]
    tree = mitm.scenario_tree()["harvest_nucl_th_and_jlab_curation"]["responses"]
    assert tree["LegacyService"] == ["allocaterecord.yaml", "robotupload.yaml", "robotupload2.yaml"]


def test_unknown_top_level_keys_are_ignored_and_warned_about_once(
    deproxy: Deproxy, caplog: pytest.LogCaptureFixture
) -> None:
    mitm = replaying(deproxy, "unknown_keys", service("ExtraService", "extra.example.org"))
    with caplog.at_level("WARNING", logger="pytest_deproxy.mitm"):
        for _ in range(3):
            assert ask(deproxy, mitm, "http://extra.example.org/x").body == "still replayed"
    path = FIXTURES / "unknown_keys" / "ExtraService" / "interaction_0.yaml"
    assert [w.split(": unknown")[0] for w in mitm.warnings] == [f"{path}:10", f"{path}:11"]
    assert "'recorded_by' ignored" in mitm.warnings[0] and "'notes' ignored" in mitm.warnings[1]
    assert [
        r.getMessage() for r in caplog.records if "unknown top-level" in r.getMessage()
    ] == mitm.warnings


def test_a_scenario_name_with_a_space_through_the_management_api(deproxy: Deproxy) -> None:
    mitm = replaying(deproxy, "default", service("SpaceService", "space.example.org"))
    switched = ask(
        deproxy,
        mitm,
        "http://mitm-manager.local/config",
        "PUT",
        {"Content-Type": "application/json"},
        json.dumps({"active_scenario": "a scenario"}),
    )
    assert switched.code == "204" and mitm.active_scenario == "a scenario"
    assert ask(deproxy, mitm, "http://space.example.org/x").body == "from a scenario with a space"
    counts = ask(deproxy, mitm, "http://mitm-manager.local/service/SpaceService/interactions")
    assert json.loads(counts.body) == {"interaction_0": {"num_calls": 1}}
    assert "a scenario" in json.loads(
        ask(deproxy, mitm, "http://mitm-manager.local/scenarios").body
    )


# -- the management API's replies ------------------------------------------------------------

MANAGER = "http://mitm-manager.local"


def manage(mitm: MitmEndpoint, method: str, path: str, document: Any = None) -> requests.Response:
    """A management call as inspire-next's client makes it: requests, through the proxy."""
    with requests.Session() as session:
        session.trust_env = False
        return session.request(
            method, MANAGER + path, json=document, proxies={"http": mitm.url}, timeout=30
        )


def test_record_answers_enabled_as_the_original(deproxy: Deproxy) -> None:
    mitm = replaying(deproxy, "default", service("SpaceService", "space.example.org"))
    posted = manage(mitm, "POST", "/record", {"enable": True})
    assert (posted.status_code, posted.json()) == (201, {"enabled": True})
    assert mitm.recording is True
    # The original answered PUT with 204 and this body, which HTTP forbids: a 200 carries it.
    put = manage(mitm, "PUT", "/record", {"enable": False})
    assert (put.status_code, put.json()) == (200, {"enabled": False})
    assert mitm.recording is False


def test_services_put_and_post_replace_the_list_and_answer_it(
    deproxy: Deproxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MITM_PROXY_WHITELIST", "indexer.local scrapyd.local")
    mitm = replaying(deproxy, "default", service("SpaceService", "space.example.org"))
    management = service("ManagementService", "mitm-manager.local", kind="ManagementService")
    arxiv = service("ArxivService", "arxiv.org")
    whitelist = service("WhitelistService", "from-the-call.local", kind="WhitelistService")
    for method in ("PUT", "POST"):
        answer = manage(mitm, method, "/services", {"services": [arxiv, whitelist]})
        overridden = dict(whitelist, hosts_list=["indexer.local", "scrapyd.local"])
        assert (answer.status_code, answer.json()) == (
            201,
            {"services": [management, arxiv, overridden]},
        )
        assert [s.name for s in mitm.services] == ["ArxivService", "WhitelistService"]
    assert manage(mitm, "GET", "/services").json() == answer.json()


def test_interactions_of_the_management_service_and_unknown_calls(deproxy: Deproxy) -> None:
    mitm = replaying(deproxy, "default", service("SpaceService", "space.example.org"))
    own = manage(mitm, "GET", "/service/ManagementService/interactions")
    assert (own.status_code, own.json()) == (200, {})
    unknown = manage(mitm, "GET", "/service/Nope/interactions")
    assert unknown.status_code == 404 and "Nope" in unknown.json()["error"]
    assert manage(mitm, "GET", "/nothing").status_code == 404
    wrong = manage(mitm, "DELETE", "/services")
    assert (wrong.status_code, wrong.headers["Allow"]) == (405, "GET, PUT, POST")
    posted = manage(mitm, "POST", "/config", {"active_scenario": "a scenario"})
    assert (posted.status_code, posted.json()) == (201, None)  # the original's `null`
    put = manage(mitm, "PUT", "/config", {"active_scenario": "default"})
    assert (put.status_code, put.content) == (204, b"")


# -- clients: CA variables, unverified upstreams ---------------------------------------------


def test_proxy_env_names_the_ca_for_git_node_and_pip(deproxy: Deproxy, tmp_path: Path) -> None:
    mitm = deproxy.add_mitm_endpoint(scenarios_path=tmp_path)
    env = mitm.proxy_env()
    for name in ("GIT_SSL_CAINFO", "NODE_EXTRA_CA_CERTS", "PIP_CERT", "REQUESTS_CA_BUNDLE"):
        assert env[name] == mitm.ca.cert_pem_path


def test_git_gets_past_tls_verification_to_the_mitms_answer(
    deproxy: Deproxy, tmp_path: Path
) -> None:
    git = find_program("git", "git")
    mitm = deproxy.add_mitm_endpoint(
        scenarios_path=tmp_path, services=[service("GitService", "git.example.org")]
    )
    result = subprocess.run(
        [git, "ls-remote", "https://git.example.org/project.git"],
        env=client_env(mitm, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "501" in result.stderr, result.stderr  # the MITM's NoMatchingRecording, over TLS
    assert "certificate" not in result.stderr.lower() and "SSL" not in result.stderr


@pytest.fixture
def foreign_upstream() -> Any:
    """An https endpoint whose certificate a different CertificateAuthority signed."""
    other_ca = CertificateAuthority()
    with Deproxy(ca=other_ca) as other:
        yield other.add_endpoint(
            name="foreign", default_handler=Response(200, body="foreign"), tls=True
        )
    other_ca.close()


def test_an_upstream_of_another_ca_is_a_502_unless_verification_is_off(
    deproxy: Deproxy, tmp_path: Path, foreign_upstream: Endpoint
) -> None:
    api = [service("WhitelistService", "self-signed.example.org", kind="WhitelistService")]
    upstreams = {"self-signed.example.org": foreign_upstream.url}
    strict = deproxy.add_mitm_endpoint(scenarios_path=tmp_path, services=api, upstreams=upstreams)
    refused = ask(deproxy, strict, "https://self-signed.example.org/")
    assert refused.code == "502" and "certificate" in refused.body.lower()
    lax = deproxy.add_mitm_endpoint(
        scenarios_path=tmp_path,
        services=api,
        upstreams=upstreams,
        verify_upstream=False,
        name="lax",
    )
    assert ask(deproxy, lax, "https://self-signed.example.org/").body == "foreign"


@pytest.mark.parametrize("insecure", [False, True], ids=["verified", "insecure-upstream"])
def test_the_command_takes_insecure_upstream(
    tmp_path: Path, foreign_upstream: Endpoint, insecure: bool
) -> None:
    (tmp_path / "services.yaml").write_text(
        "services:\n- {type: WhitelistService, name: WhitelistService, "
        "hosts_list: [self-signed.example.org]}\n"
    )
    args = ["--port", "0", "--scenarios-path", str(tmp_path)]
    args += ["--upstream", f"self-signed.example.org={foreign_upstream.url}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_deproxy", "mitm", *args]
        + (["--insecure-upstream"] if insecure else []),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        proxy = process.stdout.readline().removeprefix("proxy: ").strip()
        ca_file = process.stdout.readline().removeprefix("ca: ").strip()
        with Deproxy() as client:
            chain = client.make_request(
                "https://self-signed.example.org/",
                proxy=proxy,
                verify=ssl.create_default_context(cafile=ca_file),
            )
        assert chain.received_response is not None, chain.error
        assert chain.received_response.code == ("200" if insecure else "502")
    finally:
        process.terminate()
        process.communicate(timeout=15)


# -- record with real clients, replay with no upstream ---------------------------------------

SHA = "0123456789abcdef0123456789abcdef01234567"


def pkt_line(text: str) -> str:
    return f"{len(text) + 4:04x}{text}"


def upstream_handler(request: Request) -> Response:
    """A stand-in for the real services: a git smart-HTTP server's ref advertisement, a PyPI
    simple index page, and a JSON API."""
    if request.path.startswith("/project.git/info/refs"):
        advertisement = (
            pkt_line("# service=git-upload-pack\n")
            + "0000"
            + pkt_line(f"{SHA} HEAD\0symref=HEAD:refs/heads/main\n")
            + pkt_line(f"{SHA} refs/heads/main\n")
            + "0000"
        )
        content_type = "application/x-git-upload-pack-advertisement"
        return Response(200, headers={"Content-Type": content_type}, body=advertisement)
    if request.path.startswith("/simple/demo"):
        links = "".join(
            f'<a href="https://pypi.example.org/files/demo-{v}-py3-none-any.whl">'
            f"demo-{v}-py3-none-any.whl</a>\n"
            for v in ("1.0", "1.1")
        )
        page = f"<!DOCTYPE html><html><body>\n{links}</body></html>\n"
        return Response(200, headers={"Content-Type": "text/html"}, body=page)
    answer = {"method": request.method, "path": request.path, "body": request.raw_body.decode()}
    return Response(200, headers={"Content-Type": "application/json"}, body=json.dumps(answer))


def with_curl(mitm: MitmEndpoint, home: Path) -> str:
    curl = find_program("curl", "curl")
    outputs = []
    for extra in ([], ["--data-binary", '{"from": "curl"}']):
        result = subprocess.run(
            [curl, "--silent", "--show-error", *extra, "https://api.example.org/curl"],
            env=client_env(mitm, home),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        outputs.append(result.stdout)
    return "\n".join(outputs)


def with_requests(mitm: MitmEndpoint, home: Path) -> str:
    with requests.Session() as session:
        session.trust_env = False
        options: dict[str, Any] = {
            "proxies": {"https": mitm.url},
            "verify": mitm.ca.cert_pem_path,
            "timeout": 30,
        }
        got = session.get("https://api.example.org/requests", **options).json()
        posted = session.post("https://api.example.org/requests", json={"n": 1}, **options).json()
    return json.dumps([got, posted])


def with_httpx(mitm: MitmEndpoint, home: Path) -> str:
    context = ssl.create_default_context(cafile=mitm.ca.cert_pem_path)
    with httpx.Client(proxy=mitm.url, verify=context, trust_env=False, timeout=30) as client:
        got = client.get("https://api.example.org/httpx").json()
        posted = client.post("https://api.example.org/httpx", content=b"raw bytes").json()
    return json.dumps([got, posted])


def with_aiohttp(mitm: MitmEndpoint, home: Path) -> str:
    aiohttp = pytest.importorskip("aiohttp")
    context = ssl.create_default_context(cafile=mitm.ca.cert_pem_path)

    async def run() -> str:
        async with aiohttp.ClientSession(trust_env=False) as session:
            async with session.get(
                "https://api.example.org/aiohttp", proxy=mitm.url, ssl=context
            ) as got:
                first = await got.json()
            async with session.post(
                "https://api.example.org/aiohttp", data=b"aio", proxy=mitm.url, ssl=context
            ) as posted:
                second = await posted.json()
        return json.dumps([first, second])

    return asyncio.run(run())


def with_git(mitm: MitmEndpoint, home: Path) -> str:
    git = find_program("git", "git")
    result = subprocess.run(
        [git, "ls-remote", "https://git.example.org/project.git"],
        env=client_env(mitm, home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def with_pip(mitm: MitmEndpoint, home: Path) -> str:
    command = [sys.executable, "-m", "pip", "index", "versions", "demo"]
    command += ["--index-url", "https://pypi.example.org/simple/", "--no-cache-dir"]
    command += ["--disable-pip-version-check", "--retries", "0"]
    result = subprocess.run(
        command,
        env=client_env(mitm, home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


CLIENTS = {
    "curl": with_curl,
    "requests": with_requests,
    "httpx": with_httpx,
    "aiohttp": with_aiohttp,
    "git": with_git,
    "pip": with_pip,
}


@pytest.mark.parametrize("client", list(CLIENTS))
def test_record_with_a_real_client_then_replay_with_no_upstream(
    deproxy: Deproxy, endpoint: EndpointFactory, tmp_path: Path, client: str
) -> None:
    use = CLIENTS[client]
    upstream = endpoint("upstream", upstream_handler, tls=True)
    hosts = ("api.example.org", "git.example.org", "pypi.example.org")
    services = [service(f"Service{n}", host) for n, host in enumerate(hosts)]
    scenarios, home = tmp_path / "scenarios", tmp_path / "home"
    home.mkdir()
    recorder = deproxy.add_mitm_endpoint(
        scenarios_path=scenarios,
        services=services,
        record=True,
        upstreams=dict.fromkeys(hosts, upstream.url),
        name="recorder",
    )
    live = use(recorder, home)
    forwarded = len(upstream.handlings)
    assert forwarded >= 1 and list(scenarios.rglob("interaction_*.yaml"))
    offline = deproxy.add_mitm_endpoint(scenarios_path=scenarios, services=services, name="offline")
    assert use(offline, home) == live
    assert offline.misses == [] and len(upstream.handlings) == forwarded
