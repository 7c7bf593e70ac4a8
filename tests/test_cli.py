"""The ``deproxy mitm`` command: a standalone MITM for other processes and containers."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_deproxy import CertificateAuthority, Deproxy

from .conftest import write_interaction


def run_mitm_command(*args: str) -> subprocess.CompletedProcess[str]:
    """``deproxy mitm`` to completion (for the ways it refuses to start)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest_deproxy", "mitm", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


SERVICES = "services:\n- {type: BaseService, name: ApiService, hosts_list: [api.example.org]}\n"


@pytest.fixture
def scenarios(tmp_path: Path) -> Path:
    root = tmp_path / "scenarios"
    write_interaction(
        root,
        "default",
        "ApiService",
        "interaction_0",
        url="https://api.example.org/x",
        body="standalone",
    )
    (root / "services.yaml").write_text(SERVICES)
    return root


Runner = Callable[..., tuple[subprocess.Popen[str], str, str]]


@pytest.fixture
def run() -> Iterator[Runner]:
    processes: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], str, str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest_deproxy", "mitm", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        assert process.stdout is not None
        proxy_line, ca_line = process.stdout.readline(), process.stdout.readline()
        return (
            process,
            proxy_line.removeprefix("proxy: ").strip(),
            ca_line.removeprefix("ca: ").strip(),
        )

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def test_serves_replays_logs_and_stops_on_sigterm(run: Runner, scenarios: Path) -> None:
    process, proxy, ca_file = run("--scenarios-path", str(scenarios))
    assert proxy.startswith("http://127.0.0.1:")
    with Deproxy() as client:
        import ssl

        chain = client.make_request(
            "https://api.example.org/x",
            proxy=proxy,
            verify=ssl.create_default_context(cafile=ca_file),
        )
    assert chain.received_response is not None and chain.received_response.body == "standalone"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "GET https://api.example.org/x -> ApiService: replayed interaction_0" in stderr
    assert "stopped" in stderr


def test_a_ca_loaded_from_files_can_be_trusted_ahead_of_time(
    run: Runner, scenarios: Path, tmp_path: Path
) -> None:
    ca = CertificateAuthority()
    cert, key = ca.write_cert(tmp_path / "ca.pem"), ca.write_key(tmp_path / "ca.key")
    process, proxy, ca_file = run(
        "--scenarios-path", str(scenarios), "--ca-cert", cert, "--ca-key", key
    )
    assert ca_file == cert
    with Deproxy(ca=ca) as client:  # trusts only the CA it was given
        chain = client.make_request(
            "https://api.example.org/x", proxy=proxy, verify=ca.client_context()
        )
    assert chain.error is None
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=15)
    assert process.returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ca-cert", "/nonexistent.pem"], "--ca-cert and --ca-key go together"),
        (
            ["--ca-cert", "/nonexistent.pem", "--ca-key", "/nonexistent.key"],
            "cannot read the CA files",
        ),
        (["--upstream", "nohost"], "--upstream takes HOST=URL"),
    ],
)
def test_bad_arguments_say_what_is_wrong(scenarios: Path, args: list[str], message: str) -> None:
    result = run_mitm_command("--port", "0", "--scenarios-path", str(scenarios), *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_a_port_in_use_is_a_clear_error(scenarios: Path) -> None:
    with Deproxy() as deproxy:
        taken = deproxy.add_endpoint()
        result = run_mitm_command("--port", str(taken.port), "--scenarios-path", str(scenarios))
    assert result.returncode == 2
    assert f"127.0.0.1:{taken.port}: the port is already in use" in result.stderr


def test_a_broken_services_file_is_a_clear_error(scenarios: Path) -> None:
    (scenarios / "services.yaml").write_text("services: [unclosed\n")
    result = run_mitm_command("--port", "0", "--scenarios-path", str(scenarios))
    assert result.returncode == 2
    assert "services.yaml:2: not valid YAML" in result.stderr


def test_errors_during_the_run_are_reported_and_it_still_stops_cleanly(
    run: Runner, scenarios: Path
) -> None:
    broken = scenarios / "default" / "ApiService" / "interaction_0.yaml"
    broken.write_text("request: [broken\n")
    process, proxy, _ = run("--scenarios-path", str(scenarios))
    with Deproxy() as client:
        chain = client.make_request("http://api.example.org/x", proxy=proxy)
    assert chain.received_response is not None and chain.received_response.code == "500"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0
    assert f"deproxy mitm: during the run: {broken}:" in stderr
