"""HTTPS endpoints, HTTPS requests, and the certificate authority behind them."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import stat
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import requests

from pytest_deproxy import CertificateAuthority, Deproxy, Endpoint, NetworkError, handlers

from .conftest import eventually

EndpointFactory = Callable[..., Endpoint]


def test_a_tls_endpoint_says_https(endpoint: EndpointFactory) -> None:
    server = endpoint(tls=True)
    assert server.tls is True
    assert server.url == f"https://127.0.0.1:{server.port}"


def test_make_request_to_https_trusts_the_deproxy_ca(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint(handler=handlers.echo, tls=True)
    chain = deproxy.make_request(server.url + "/secure", "POST", request_body="over tls")
    assert chain.error is None
    assert chain.received_response is not None
    assert chain.received_response.body == "over tls"
    assert chain.handlings[0].request.path == "/secure"


def test_host_leaves_out_443_for_https(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint(tls=True, hostname="localhost")
    chain = deproxy.make_request("https://localhost/", port=server.port)
    assert chain.error is None
    assert chain.handlings[0].request.headers["Host"] == "localhost"


def test_a_certificate_from_another_ca_fails_verification_as_data(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    with Deproxy(ca=CertificateAuthority()) as stranger:
        foreign = stranger.add_endpoint(tls=True)
        chain = deproxy.make_request(foreign.url)
        assert chain.received_response is None
        assert isinstance(chain.error, NetworkError)
        assert "TLS failed" in str(chain.error)
        assert "CERTIFICATE_VERIFY_FAILED" in str(chain.error)
        unverified = deproxy.make_request(foreign.url, verify=False)
        assert unverified.received_response is not None
        assert unverified.received_response.code == "200"
        own_context = stranger.ca.client_context()
        assert deproxy.make_request(foreign.url, verify=own_context).error is None
        eventually(lambda: len(foreign.errors) == 1)  # the refused handshake, server side


def test_verify_rejects_nonsense(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    with pytest.raises(TypeError, match="verify"):
        deproxy.make_request(endpoint(tls=True).url, verify="yes")  # type: ignore[arg-type]


def test_a_persistent_tls_connection_is_reused(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    server = endpoint(tls=True)
    with deproxy.connect(server.url) as connection:
        chains = [deproxy.make_request(server.url, connection=connection) for _ in range(3)]
    assert len({chain.handlings[0].connection for chain in chains}) == 1


def test_route_forwards_over_tls(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    secure = endpoint("secure", handlers.echo, tls=True)
    front = endpoint("front", handlers.route(secure.url))
    chain = deproxy.make_request(front.url, "POST", request_body="relayed")
    assert [h.endpoint.name for h in chain.handlings] == ["front", "secure"]
    assert chain.received_response is not None
    assert chain.received_response.body == "relayed"


def test_plain_http_on_a_tls_port_is_recorded_and_the_endpoint_keeps_serving(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint(tls=True)
    plain = deproxy.make_request(f"http://127.0.0.1:{server.port}/")
    assert plain.received_response is None
    eventually(lambda: len(server.errors) == 1)
    assert "TLS failed" in str(server.errors[0])
    assert deproxy.make_request(server.url).error is None


def test_a_truncated_handshake_does_not_stop_the_endpoint(
    deproxy: Deproxy, endpoint: EndpointFactory
) -> None:
    server = endpoint(tls=True)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # half a ClientHello
    assert deproxy.make_request(server.url).error is None


class TestRealClients:
    def test_requests(self, deproxy_ca: CertificateAuthority, endpoint: EndpointFactory) -> None:
        server = endpoint(handler=handlers.echo, tls=True)
        response = requests.post(
            server.url + "/r", data=b"from requests", verify=deproxy_ca.cert_pem_path, timeout=10
        )
        assert response.status_code == 200
        assert response.content == b"from requests"
        assert server.handlings[0].request.headers["User-Agent"].startswith("python-requests")

    def test_httpx(self, deproxy_ca: CertificateAuthority, endpoint: EndpointFactory) -> None:
        server = endpoint(handler=handlers.echo, tls=True, hostname="localhost")
        with httpx.Client(verify=deproxy_ca.client_context(), timeout=10) as client:
            responses = [client.post(server.url, content=f"call {n}") for n in range(2)]
        assert [r.text for r in responses] == ["call 0", "call 1"]
        assert len({h.connection for h in server.handlings}) == 1  # httpx kept the connection

    def test_curl(self, deproxy_ca: CertificateAuthority, endpoint: EndpointFactory) -> None:
        curl = shutil.which("curl")
        if curl is None:
            pytest.skip("curl is not installed (Debian: apt-get install curl)")
        server = endpoint(handler=handlers.echo, tls=True)
        result = subprocess.run(
            [
                curl,
                "--silent",
                "--show-error",
                "--cacert",
                deproxy_ca.cert_pem_path,
                "--data-binary",
                "from curl",
                server.url + "/c",
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"from curl"

    def test_curl_refuses_an_untrusted_endpoint(self, endpoint: EndpointFactory) -> None:
        curl = shutil.which("curl")
        if curl is None:
            pytest.skip("curl is not installed (Debian: apt-get install curl)")
        server = endpoint(tls=True)
        result = subprocess.run(
            [curl, "--silent", "--cacert", "/dev/null", server.url],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert result.returncode != 0
        assert server.handlings == []


class TestCertificateAuthority:
    def test_the_pem_file_holds_the_certificate_only(self) -> None:
        ca = CertificateAuthority()
        text = Path(ca.cert_pem_path).read_text()
        assert "BEGIN CERTIFICATE" in text
        assert "PRIVATE KEY" not in text
        first_path = ca.cert_pem_path
        ca.close()
        assert not Path(first_path).exists()
        assert Path(ca.cert_pem_path).read_text() == text  # usable again after close()
        ca.close()

    def test_no_file_is_written_until_asked(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TMPDIR", str(tmp_path))
        import tempfile

        monkeypatch.setattr(tempfile, "tempdir", None)
        ca = CertificateAuthority()
        ca.server_context("localhost")
        ca.client_context()
        assert list(tmp_path.iterdir()) == []
        assert Path(ca.cert_pem_path).is_file()
        assert len(list(tmp_path.iterdir())) == 1
        ca.close()
        assert list(tmp_path.iterdir()) == []

    def test_a_written_key_is_owner_only_and_loads_back(self, tmp_path: Path) -> None:
        ca = CertificateAuthority()
        key = tmp_path / "ca.key"
        key.write_text("old, world-readable")
        os.chmod(key, 0o644)
        ca.write_key(key)
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        cert = ca.write_cert(tmp_path / "ca.pem")
        loaded = CertificateAuthority.from_files(cert, key)
        assert loaded.cert_pem == ca.cert_pem
        context = ssl.create_default_context(cafile=cert)
        with Deproxy(ca=loaded) as deproxy:
            server = deproxy.add_endpoint(tls=True)
            assert deproxy.make_request(server.url, verify=context).error is None

    def test_from_files_explains_bad_input(self, tmp_path: Path) -> None:
        junk = tmp_path / "junk.pem"
        junk.write_text("not a certificate")
        with pytest.raises(ValueError, match="not a PEM CA certificate"):
            CertificateAuthority.from_files(junk, junk)
        with pytest.raises(ValueError, match="cannot read"):
            CertificateAuthority.from_files(tmp_path / "missing.pem", junk)

    def test_names_trustme_refuses_still_get_a_certificate(self) -> None:
        ca = CertificateAuthority()
        server_side, client_side = socket.socketpair()
        errors: list[BaseException] = []

        def serve() -> None:
            try:
                with ca.server_context("host_a.local").wrap_socket(server_side, server_side=True):
                    pass
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        thread = threading.Thread(target=serve)
        thread.start()
        with ca.client_context().wrap_socket(client_side, server_hostname="host_a.local") as tls:
            certificate = tls.getpeercert()
            assert certificate is not None
            assert certificate["subjectAltName"] == (("DNS", "host_a.local"),)
        thread.join(5)
        assert errors == []

    def test_server_contexts_are_cached_per_host_set(self) -> None:
        ca = CertificateAuthority()
        assert ca.server_context("a", "b") is ca.server_context("b", "a")
        assert ca.server_context("a") is not ca.server_context("a", "b")
        with pytest.raises(ValueError, match="host name"):
            ca.server_context()
