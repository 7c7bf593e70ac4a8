"""The conformance runner itself: run against a proxy written here with defects planted on
purpose, every planted defect fails its check; with the defects fixed, the checks pass; the
example proxy's known behaviours pass; and the command, its reports and its exit status do
what they say."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from examples.example_proxy import ExampleProxy
from pytest_deproxy import Deproxy
from pytest_deproxy.cli import main
from pytest_deproxy.conformance import CHECKS, VERDICTS, Report, Result, run
from pytest_deproxy.conformance import proxies as packaged
from pytest_deproxy.process import free_port

from .conftest import find_program

HOP_BY_HOP = {"connection", "keep-alive", "te", "trailer", "upgrade", "proxy-connection"}


def _read_head(sock: socket.socket, data: bytes) -> tuple[bytes, bytes]:
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-head")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _fields(head: bytes) -> list[tuple[str, str]]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return [(n.strip(), v.strip()) for n, _, v in (line.partition(":") for line in lines)]


def _value(fields: list[tuple[str, str]], name: str) -> str:
    return {n.lower(): v for n, v in fields}.get(name, "0")


class PlantedProxy:
    """A small threaded reverse proxy, one request per client connection, with defects:
    ``hop_by_hop=False`` forwards hop-by-hop fields both ways; ``via=False`` adds no Via; and
    it always frames a request body by Content-Length alone, forwarding Transfer-Encoding
    beside it (CL.TE: what the backend reads as chunked ends early, the rest smuggled)."""

    def __init__(self, origin_port: int, *, strip_hop_by_hop: bool, via: bool) -> None:
        self.origin_port, self.strip, self.via = origin_port, strip_hop_by_hop, via
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._accept, name="planted-proxy", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _filtered(self, fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
        if not self.strip:
            return fields
        named = {
            token.strip().lower()
            for name, value in fields
            if name.lower() == "connection"
            for token in value.split(",")
        }
        return [(n, v) for n, v in fields if n.lower() not in HOP_BY_HOP | named]

    def _head(self, line: bytes, fields: list[tuple[str, str]]) -> bytes:
        fields = self._filtered(fields) + ([("Via", "1.1 planted")] if self.via else [])
        text = "".join(f"{name}: {value}\r\n" for name, value in fields)
        return line + b"\r\n" + text.encode("latin-1") + b"\r\n"

    def _serve(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.origin_port)) as upstream:
            client.settimeout(5)
            upstream.settimeout(5)
            try:
                head, rest = _read_head(client, b"")
                fields = _fields(head)
                length = int(_value(fields, "content-length"))
                while len(rest) < length:
                    rest += client.recv(65536)
                line = head.split(b"\r\n")[0]
                upstream.sendall(self._head(line, fields) + rest[:length])
                answer, body = _read_head(upstream, b"")
                answer_fields = _fields(answer)
                size = int(_value(answer_fields, "content-length"))
                while len(body) < size:
                    body += upstream.recv(65536)
                client.sendall(self._head(answer.split(b"\r\n")[0], answer_fields) + body[:size])
            except (OSError, ValueError):
                pass

    def shutdown(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        self.listener.close()
        self.thread.join(5)
        for thread in self.threads:
            thread.join(5)


Planted = Callable[..., str]  # planted(origin_port, *, strip_hop_by_hop=, via=) -> URL


@pytest.fixture
def planted() -> Iterator[Planted]:
    started: list[PlantedProxy] = []

    def start(origin_port: int, *, strip_hop_by_hop: bool = False, via: bool = False) -> str:
        started.append(PlantedProxy(origin_port, strip_hop_by_hop=strip_hop_by_hop, via=via))
        return started[-1].url

    yield start
    for proxy in started:
        proxy.shutdown()


def verdicts(report: Report) -> dict[str, str]:
    return {result.id: result.verdict for result in report.results}


def checks(*prefixes: str) -> list:  # type: ignore[type-arg]
    return [check for check in CHECKS if check.id.startswith(prefixes)]


PLANTED = [
    "hop.request.connection",
    "hop.request.connection-nominated",
    "hop.request.keep-alive",
    "hop.request.te",
    "hop.request.upgrade",
    "hop.request.proxy-connection",
    "hop.response.connection",
    "hop.response.connection-nominated",
    "hop.response.keep-alive",
    "hop.response.upgrade",
    "hop.response.proxy-connection",
    "via.request",
    "via.response",
    "framing.cl-te",
    "smuggling.cl-te",
]


def test_there_are_over_60_checks_each_with_an_rfc_section() -> None:
    assert len(CHECKS) >= 60
    assert len({check.id for check in CHECKS}) == len(CHECKS)
    for check in CHECKS:
        assert re.fullmatch(r"RFC (9110|9112|7239) §[0-9.]+", check.reference), check


def test_every_planted_defect_fails(deproxy: Deproxy, planted) -> None:  # type: ignore[no-untyped-def]
    origin = deproxy.add_endpoint(request_timeout=2)
    url = planted(origin.port)

    report = run([c for c in CHECKS if c.id in PLANTED], deproxy=deproxy, url=url, origin=origin)

    assert verdicts(report) == dict.fromkeys(PLANTED, "fail"), report.text()
    [smuggling] = [r for r in report.results if r.id == "smuggling.cl-te"]
    assert "GET /smuggled-" in smuggling.detail
    assert "--- MessageChain" in report.text()  # each failure with its two-sided diagram


def test_with_the_defects_fixed_the_hop_by_hop_and_via_checks_pass(
    deproxy: Deproxy,
    planted: Planted,
) -> None:
    origin = deproxy.add_endpoint(request_timeout=2)
    url = planted(origin.port, strip_hop_by_hop=True, via=True)

    report = run(checks("hop.", "via.request", "via.response"), deproxy=deproxy, url=url, origin=origin)  # fmt: skip

    assert set(verdicts(report).values()) == {"pass"}, report.text()


EXAMPLE_PASSES = [
    "hop.request.connection",
    "hop.request.keep-alive",
    "hop.request.te",
    "hop.request.upgrade",
    "hop.response.connection",
    "hop.response.keep-alive",
    "hop.response.upgrade",
    "via.request",
    "via.response",
    "forwarded.xff-spoof",
    "forwarded.client-address",
    "fields.request-unknown",
    "fields.response-unknown",
    "method.post-body",
    "http11.persistent",
]


def test_the_example_proxy_known_behaviours_pass(deproxy: Deproxy) -> None:
    origin = deproxy.add_endpoint(request_timeout=2)
    proxy = ExampleProxy(origin.url).start()
    try:
        report = run(
            [c for c in CHECKS if c.id in EXAMPLE_PASSES],
            deproxy=deproxy,
            url=proxy.url,
            origin=origin,
        )
    finally:
        proxy.shutdown()

    assert verdicts(report) == dict.fromkeys(EXAMPLE_PASSES, "pass"), report.text()


def test_one_check_gives_one_result_stating_its_configuration(deproxy: Deproxy, planted) -> None:  # type: ignore[no-untyped-def]
    origin = deproxy.add_endpoint(request_timeout=2)
    url = planted(origin.port)
    [check] = [c for c in CHECKS if c.id == "via.request"]

    result = run(check, deproxy=deproxy, url=url, origin=origin, config="planted, no Via")

    assert isinstance(result, Result)
    assert (result.verdict, result.config) == ("fail", "planted, no Via")
    assert "MUST send one (RFC 9110 §7.6.3)" in result.detail
    assert "configuration: planted, no Via" in result.report()


def test_the_command_reports_and_exits_1_on_a_failure(
    tmp_path: Path,
    planted: Planted,
    capsys: pytest.CaptureFixture[str],
) -> None:
    origin_port = free_port()
    url = planted(origin_port)
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"

    status = main(["conformance", "--url", url, "--origin-port", str(origin_port), "--only",
                   "hop.request.keep", "--report-json", str(out_json), "--report-md", str(out_md)])  # fmt: skip

    assert status == 1
    report = json.loads(out_json.read_text())
    assert report["proxy"] == url and "forwarding to 127.0.0.1:" in report["config"]["description"]
    ids = [check["id"] for check in report["checks"]]
    assert ids == ["hop.request.keep-alive", "hop.request.keep-alive-unnominated"]
    for check in report["checks"]:
        assert set(check) == {"id", "title", "reference", "verdict", "detail"}
        assert check["verdict"] == "fail" and "Keep-Alive" in check["detail"]
    table = out_md.read_text()
    assert (
        "| `hop.request.keep-alive` Keep-Alive is not forwarded | RFC 9110 §7.6.1 | **fail** |"
        in table
    )
    printed = capsys.readouterr().out
    assert "FAIL  hop.request.keep-alive" in printed and "--- MessageChain" in printed


def test_the_command_exits_0_when_nothing_fails(planted) -> None:  # type: ignore[no-untyped-def]
    origin_port = free_port()
    url = planted(origin_port, strip_hop_by_hop=True, via=True)

    assert (
        main(
            [
                "conformance",
                "--url",
                url,
                "--origin-port",
                str(origin_port),
                "--only",
                "hop.request",
            ]
        )
        == 0
    )


def test_the_command_refuses_what_cannot_run(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, said in [
        (["--url", "http://127.0.0.1:1"], "--url needs --origin-port"),
        (["--url", "http://127.0.0.1:1", "--origin-port", "2", "--only", "no-such"], "no check id contains 'no-such'"),
        (["--proxy", "no-such-proxy"], "invalid choice: 'no-such-proxy'"),
    ]:  # fmt: skip
        with pytest.raises(SystemExit) as exited:
            main(["conformance", *argv])
        assert exited.value.code == 2
        assert said in capsys.readouterr().err


def test_a_proxy_not_installed_is_skipped_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = dataclasses.replace(packaged.PROXIES["varnish"], program="deproxy-no-such-varnishd")
    monkeypatch.setitem(packaged.PROXIES, "varnish", missing)
    out = tmp_path / "r.json"

    assert main(["conformance", "--proxy", "varnish", "--report-json", str(out)]) == 0

    said = capsys.readouterr().err
    assert "skipped varnish" in said and "apt-get install varnish" in said
    assert json.loads(out.read_text())["checks"] == []


def test_a_packaged_nginx_runs_from_its_shipped_config(tmp_path: Path) -> None:
    find_program("nginx", "nginx-light")
    out = tmp_path / "r.json"

    status = main(["conformance", "--proxy", "nginx", "--only", "hop.request.keep-alive", "--report-json", str(out)])  # fmt: skip

    report = json.loads(out.read_text())
    assert status == 0, report
    assert report["proxy"].startswith("nginx ")
    assert report["config"]["file"] == "nginx.conf"
    assert re.search(r"proxy_pass http://127\.0\.0\.1:\d+;", report["config"]["text"])
    assert [check["verdict"] for check in report["checks"]] == ["pass", "pass"]


def test_the_checks_run_in_a_users_own_pytest_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from pytest_deproxy import handlers
        from pytest_deproxy.conformance import CHECKS, run

        CHOSEN = [c for c in CHECKS if c.id in ("hop.request.keep-alive", "via.request")]

        @pytest.mark.parametrize("check", CHOSEN, ids=str)
        def test_proxy(check, deproxy):
            origin = deproxy.add_endpoint()
            proxy = deproxy.add_endpoint(default_handler=handlers.route(origin.url))
            result = run(check, deproxy=deproxy, url=proxy.url, origin=origin)
            assert result.verdict != "fail", result.report()
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-q")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*FAIL  via.request*", "*--- MessageChain*"])
    assert set(VERDICTS) == {"pass", "fail", "n/a", "error"}
