"""The record is the truth, client side: responses as they came (fields, interim 1xx, 101),
and requests sent as asked (HTTP/1.0, Expect: 100-continue, a PROXY header first, a client
certificate for the proxy under test)."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pytest_deproxy import Deproxy, Endpoint, NetworkError, ProtocolError, ProxyHeader, to_har
from pytest_deproxy.process import ServerProcess, free_port
from pytest_deproxy.proxyproto import V2_SIGNATURE, read
from pytest_deproxy.wire import MessageReader

from .conftest import MemoryStream, RawServer, find_program

RawServerFactory = Callable[..., RawServer]
EndpointFactory = Callable[..., Endpoint]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


# -- 1. received fields as they came -------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "fields"),
    [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok",
            [("Content-Length", "2"), ("content-length", "2")],
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-encoding: Chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            [("Transfer-encoding", "Chunked")],
        ),
        (  # read by h11 (chunked), then by the fast reader (a plain length)
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a:  2 \r\nTRANSFER-ENCODING:\tChunked\t\r\n"
            b"X-a:3\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            [("X-A", "1"), ("x-a", "2"), ("TRANSFER-ENCODING", "Chunked"), ("X-a", "3")],
        ),
        (
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a:  2 \r\nContent-Length: 2\r\nX-a:3\r\n\r\nok",
            [("X-A", "1"), ("x-a", "2"), ("Content-Length", "2"), ("X-a", "3")],
        ),
    ],
)
def test_received_fields_keep_case_order_duplicates_and_values(
    deproxy: Deproxy, raw_server: RawServerFactory, reply: bytes, fields: list[tuple[str, str]]
) -> None:
    server = raw_server(reply)
    chain = deproxy.make_request(server.url)
    assert chain.error is None
    assert chain.received_response is not None
    assert chain.received_response.headers.items() == fields
    assert chain.received_response.body == "ok"
    assert chain.received_response.headers.get_all("X-A") == [
        value for name, value in fields if name.lower() == "x-a"
    ]


def test_an_ambiguous_response_is_still_a_protocol_error(
    deproxy: Deproxy, raw_server: RawServerFactory
) -> None:
    server = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok")
    chain = deproxy.make_request(server.url)
    assert chain.received_response is None
    assert isinstance(chain.error, ProtocolError)
    assert "Content-Length" in str(chain.error) or "content-length" in str(chain.error)


# -- 2. interim responses and 101 ----------------------------------------------------------

INTERIMS = (
    b"HTTP/1.1 100 Continue\r\nX-Step: one\r\n\r\n"
    b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nlink: </b.js>\r\n\r\n"
)


def test_interim_responses_are_on_the_chain_in_order(
    deproxy: Deproxy, raw_server: RawServerFactory
) -> None:
    server = raw_server(INTERIMS + OK)
    chain = deproxy.make_request(server.url)
    assert chain.error is None
    assert [(r.code, r.message) for r in chain.interim_responses] == [
        ("100", "Continue"),
        ("103", "Early Hints"),
    ]
    assert chain.interim_responses[0].headers.items() == [("X-Step", "one")]
    assert chain.interim_responses[1].headers.items() == [
        ("Link", "</a.css>; rel=preload"),
        ("link", "</b.js>"),
    ]
    assert chain.received_response is not None
    assert chain.received_response.code == "200"
    assert chain.received_response.body == "ok"
    lines = chain.diagram().splitlines()
    assert any(
        line.startswith("client ") and "<-- 100 Continue (interim)" in line for line in lines
    )
    interim_at = next(i for i, line in enumerate(lines) if "103 Early Hints (interim)" in line)
    final_at = next(i for i, line in enumerate(lines) if "<-- 200 OK" in line)
    assert interim_at < final_at


def test_make_raw_request_reads_interim_responses_too(
    deproxy: Deproxy, raw_server: RawServerFactory
) -> None:
    server = raw_server(INTERIMS + OK)
    chain = deproxy.make_raw_request(server.url, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [r.code for r in chain.interim_responses] == ["100", "103"]
    assert chain.received_response is not None
    assert chain.received_response.code == "200"


def test_interim_responses_that_came_stay_on_the_chain_when_the_final_one_fails(
    deproxy: Deproxy, raw_server: RawServerFactory
) -> None:
    server = raw_server(INTERIMS + b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\ncut")
    chain = deproxy.make_request(server.url)
    assert chain.received_response is None
    assert isinstance(chain.error, NetworkError)
    assert [r.code for r in chain.interim_responses] == ["100", "103"]


SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"


def test_101_is_the_final_response_of_its_chain(
    deproxy: Deproxy, raw_server: RawServerFactory
) -> None:
    server = raw_server(SWITCH + b"\x81\x02hi")
    chain = deproxy.make_request(
        server.url, headers={"Upgrade": "websocket", "Connection": "Upgrade"}
    )
    assert chain.error is None
    assert chain.interim_responses == []
    assert chain.received_response is not None
    assert chain.received_response.code == "101"
    assert chain.received_response.headers.items() == [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
    ]


def test_101_after_an_interim_response_ends_http_on_that_connection(
    deproxy: Deproxy, raw_server: RawServerFactory
) -> None:
    server = raw_server(b"HTTP/1.1 100 Continue\r\n\r\n" + SWITCH)
    with deproxy.connect(server.url) as connection:
        chain = deproxy.make_request(server.url, connection=connection)
        assert chain.received_response is not None
        assert chain.received_response.code == "101"
        assert [r.code for r in chain.interim_responses] == ["100"]
        assert not connection.closed  # it belongs to the new protocol now
        again = deproxy.make_request(server.url, connection=connection)
    assert again.received_response is None
    assert "switched protocols" in str(again.error)


@pytest.mark.parametrize("piece", [1, 7, 200])
def test_bytes_after_a_101_stay_for_the_new_protocol(piece: int) -> None:
    stream = MemoryStream(b"HTTP/1.1 100 Continue\r\n\r\n" + SWITCH + b"\x81\x02hi", piece)
    reader = MessageReader(stream)
    interim: list[object] = []
    response = reader.read_response("GET", interim)  # type: ignore[arg-type]
    assert response.code == "101"
    assert len(interim) == 1
    rest = reader.pending
    while data := stream.read():
        rest += data
    assert rest == b"\x81\x02hi"


# -- 3. HTTP/1.0 and Expect: 100-continue ---------------------------------------------------


def test_http_1_0_request_line(deproxy: Deproxy, raw_server: RawServerFactory) -> None:
    server = raw_server(OK)
    chain = deproxy.make_request(server.url, http_version="1.0")
    assert server.wait().startswith(b"GET / HTTP/1.0\r\n")
    assert chain.sent_request.http_version == "1.0"


def test_http_1_0_reaches_an_endpoint_as_1_0(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    chain = deproxy.make_request(endpoint().url, "POST", request_body="x", http_version="1.0")
    assert chain.handlings[0].request.http_version == "1.0"
    assert chain.handlings[0].request.body == "x"


@pytest.mark.parametrize(
    ("headers", "reply", "stays_open"),
    [
        ({}, OK, False),
        ({"Connection": "keep-alive"}, OK, True),
        (
            {"Connection": "keep-alive"},
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
            False,
        ),
        (
            {"Connection": "keep-alive"},
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
            True,
        ),
    ],
)
def test_http_1_0_keeps_the_connection_only_when_both_say_keep_alive(
    deproxy: Deproxy,
    raw_server: RawServerFactory,
    headers: dict[str, str],
    reply: bytes,
    stays_open: bool,
) -> None:
    server = raw_server(reply)
    with deproxy.connect(server.url) as connection:
        chain = deproxy.make_request(
            server.url, headers=headers, http_version="1.0", connection=connection
        )
        assert chain.received_response is not None
        assert connection.closed is not stays_open


@pytest.mark.parametrize("bad", ["2", "1.2", "HTTP/1.1", 1.1])
def test_an_unknown_http_version_is_refused(deproxy: Deproxy, bad: object) -> None:
    with pytest.raises(ValueError, match=r'http_version is "1\.0" or "1\.1"'):
        deproxy.make_request("http://127.0.0.1:9/", http_version=bad)  # type: ignore[arg-type]


class ScriptedServer:
    """A one-connection server that follows a script: ``bytes`` are sent, a number ``n`` means
    "read until the request head and ``n`` bytes after it have come"; then it reads until the
    client closes."""

    def __init__(self, *steps: bytes | int) -> None:
        self.steps = steps
        self.received = b""
        self.sent_at: list[float] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="scripted-server", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            try:
                for step in self.steps:
                    if isinstance(step, bytes):
                        conn.sendall(step)
                        self.sent_at.append(time.monotonic())
                        continue
                    while not self._has(step) and (data := conn.recv(65536)):
                        self.received += data
                while data := conn.recv(65536):
                    self.received += data
            except OSError:
                pass
            finally:
                self.done.set()

    def _has(self, body_bytes: int) -> bool:
        end = self.received.find(b"\r\n\r\n")
        return end >= 0 and len(self.received) >= end + 4 + body_bytes

    def close(self) -> None:
        self.listener.close()
        self.thread.join(10)


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(*steps: bytes | int) -> ScriptedServer:
        servers.append(ScriptedServer(*steps))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_expect_continue_sends_the_body_after_100(
    deproxy: Deproxy, scripted: Callable[..., ScriptedServer]
) -> None:
    server = scripted(
        0,
        b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n",
        5,
        OK,
    )
    chain = deproxy.make_request(
        server.url,
        "POST",
        request_body="hello",
        expect_continue=True,
    )
    assert chain.error is None
    assert chain.sent_request.headers["Expect"] == "100-continue"
    assert [r.code for r in chain.interim_responses] == ["103", "100"]
    assert chain.received_response is not None
    assert chain.received_response.code == "200"
    assert chain.body_withheld is False
    assert server.done.wait(10)
    assert b"\r\nExpect: 100-continue\r\n" in server.received
    assert server.received.endswith(b"\r\n\r\nhello")


def test_expect_continue_withholds_the_body_when_the_answer_comes_first(
    deproxy: Deproxy, scripted: Callable[..., ScriptedServer]
) -> None:
    server = scripted(0, b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 4\r\n\r\nnope")
    chain = deproxy.make_request(
        server.url,
        "POST",
        request_body="hello",
        expect_continue=True,
    )
    assert chain.error is None
    assert chain.received_response is not None
    assert chain.received_response.code == "417"
    assert chain.body_withheld is True
    assert chain.sent_request.body == "hello"  # as built; the flag says it never left
    assert "body withheld" in chain.diagram()
    assert server.done.wait(10)  # the client closed the connection
    assert server.received.endswith(b"\r\n\r\n")
    assert b"\r\nContent-Length: 5\r\n" in server.received


def test_expect_continue_sends_the_body_after_a_second_of_silence(
    deproxy: Deproxy, scripted: Callable[..., ScriptedServer]
) -> None:
    server = scripted(5, OK)
    chain = deproxy.make_request(
        server.url,
        "POST",
        request_body="hello",
        expect_continue=True,
    )
    assert chain.error is None
    assert chain.interim_responses == []
    assert chain.received_response is not None
    assert chain.received_response.code == "200"
    assert chain.body_withheld is False
    assert server.done.wait(10)
    assert b"\r\nExpect: 100-continue\r\n" in server.received
    assert server.received.endswith(b"\r\n\r\nhello")


def test_expect_continue_through_an_endpoint(deproxy: Deproxy, endpoint: EndpointFactory) -> None:
    chain = deproxy.make_request(
        endpoint().url, "PUT", request_body="payload", expect_continue=True
    )
    assert chain.error is None
    assert [r.code for r in chain.interim_responses] == ["100"]
    assert chain.handlings[0].request.headers["Expect"] == "100-continue"
    assert chain.handlings[0].request.body == "payload"


def test_interim_responses_go_to_har(deproxy: Deproxy, raw_server: RawServerFactory) -> None:
    server = raw_server(INTERIMS + OK)
    chain = deproxy.make_request(server.url)
    entry = to_har(chain)["log"]["entries"][0]
    interim = entry["response"]["_interimResponses"]
    assert [(i["status"], i["statusText"]) for i in interim] == [
        (100, "Continue"),
        (103, "Early Hints"),
    ]
    assert interim[1]["headers"][1] == {"name": "link", "value": "</b.js>"}


# -- 4. PROXY protocol ----------------------------------------------------------------------


def test_a_given_proxy_header_goes_first(deproxy: Deproxy, raw_server: RawServerFactory) -> None:
    server = raw_server(OK)
    header = ProxyHeader(1, source="192.0.2.1:5000", destination="198.51.100.2:80")
    chain = deproxy.make_request(server.url, proxy_protocol=header)
    assert chain.received_response is not None
    assert server.wait().startswith(
        b"PROXY TCP4 192.0.2.1 198.51.100.2 5000 80\r\nGET / HTTP/1.1\r\n"
    )


@pytest.mark.parametrize(("version", "number"), [("v1", 1), ("v2", 2)])
def test_v1_and_v2_name_the_connections_own_addresses(
    deproxy: Deproxy, raw_server: RawServerFactory, version: str, number: int
) -> None:
    heads = 2 if version == "v2" else 1  # the v2 signature holds a CRLF CRLF of its own
    server = raw_server(OK, read_until=lambda data: data.count(b"\r\n\r\n") >= heads)
    chain = deproxy.make_request(server.url, proxy_protocol=version)
    assert chain.received_response is not None
    received = server.wait()
    found = read(received)
    assert found is not None
    header, size = found
    assert header.version == number
    assert header.destination == f"127.0.0.1:{server.port}"
    assert header.source is not None and header.source.startswith("127.0.0.1:")
    assert received[size:].startswith(b"GET / HTTP/1.1\r\n")
    assert received.startswith(V2_SIGNATURE) is (number == 2)


def test_make_raw_request_and_connect_send_the_header_once_first(
    deproxy: Deproxy, raw_server: RawServerFactory
) -> None:
    server = raw_server(OK)
    deproxy.make_raw_request(server.url, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", proxy_protocol="v1")
    assert server.wait().startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 ")
    # The v2 signature holds a CRLF CRLF of its own: the request's head ends in the second.
    other = raw_server(OK, read_until=lambda data: data.count(b"\r\n\r\n") >= 2)
    with deproxy.connect(other.url, proxy_protocol=ProxyHeader(2, "LOCAL")) as connection:
        deproxy.make_request(other.url, connection=connection)
    received = other.wait()
    assert received.startswith(V2_SIGNATURE)
    assert received.count(V2_SIGNATURE) == 1


@pytest.mark.parametrize("bad", ["v3", "V1", True, 1, b"v1"])
def test_a_bad_proxy_protocol_is_refused(deproxy: Deproxy, bad: object) -> None:
    with pytest.raises(ValueError, match='proxy_protocol is "v1", "v2" or a ProxyHeader'):
        deproxy.make_request("http://127.0.0.1:9/", proxy_protocol=bad)  # type: ignore[arg-type]


def test_proxy_protocol_on_an_open_connection_is_refused(
    deproxy: Deproxy, raw_server: RawServerFactory
) -> None:
    server = raw_server(OK)
    with deproxy.connect(server.url) as connection, pytest.raises(ValueError, match="connect"):
        deproxy.make_request(server.url, connection=connection, proxy_protocol="v1")


def test_a_proxy_header_no_version_can_say_is_refused_before_connecting(deproxy: Deproxy) -> None:
    header = ProxyHeader(1, source="192.0.2.1:1", destination="[2001:db8::1]:80")
    with pytest.raises(ValueError, match="one IP version"):
        deproxy.make_request("http://127.0.0.1:9/", proxy_protocol=header)


def test_haproxy_with_accept_proxy_takes_the_client_from_the_header(
    deproxy: Deproxy, endpoint: EndpointFactory, tmp_path: Path
) -> None:
    binary = find_program("haproxy", "haproxy")
    backend = endpoint("backend")
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "defaults\n  mode http\n  timeout connect 5s\n  timeout client 10s\n"
        "  timeout server 10s\n  option forwardfor\n"
        f"frontend front\n  bind 127.0.0.1:{port} accept-proxy\n  default_backend back\n"
        f"backend back\n  server s1 127.0.0.1:{backend.port}\n"
    )
    with ServerProcess([binary, "-f", str(config), "-db"], port, name="haproxy"):
        url = f"http://127.0.0.1:{port}/"
        header = ProxyHeader(1, source="203.0.113.7:4242", destination=f"127.0.0.1:{port}")
        chain = deproxy.make_request(url, proxy_protocol=header)
        assert chain.received_response is not None, chain.diagram()
        assert chain.received_response.code == "200"
        assert chain.handlings[0].request.headers["X-Forwarded-For"] == "203.0.113.7"
        refused = deproxy.make_request(url)
        assert refused.received_response is None
        assert refused.handlings == []


# -- 5. client certificates ------------------------------------------------------------------


def test_issue_client_cert_writes_a_client_auth_certificate_and_a_private_key(
    deproxy: Deproxy,
) -> None:
    cert_path, key_path = deproxy.ca.issue_client_cert("proxy under/test")
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    certificate = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert name == "proxy under/test"
    assert os.path.dirname(cert_path) == os.path.dirname(deproxy.ca.cert_pem_path)


@pytest.mark.parametrize("bad", ["", "  ", None, "x" * 65])
def test_issue_client_cert_refuses_a_name_it_cannot_use(deproxy: Deproxy, bad: object) -> None:
    with pytest.raises(ValueError, match=r"issue_client_cert needs a name|at most 64"):
        deproxy.ca.issue_client_cert(bad)  # type: ignore[arg-type]


def handshake_outcomes(
    deproxy: Deproxy, tmp_path: Path, client_files: tuple[str, str] | None
) -> tuple[str, str]:
    """A TLS server requiring a client certificate signed by ``deproxy.ca``; what the server
    and the client made of one handshake and a line of data."""
    cert, key = deproxy.ca.write_server_files(tmp_path, "127.0.0.1")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    server_context.verify_mode = ssl.CERT_REQUIRED
    server_context.load_verify_locations(deproxy.ca.cert_pem_path)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    outcome: dict[str, str] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(5)
        try:
            with server_context.wrap_socket(conn, server_side=True) as tls:
                der = tls.getpeercert(binary_form=True)
                assert der is not None
                name = x509.load_der_x509_certificate(der).subject.rfc4514_string()
                outcome["server"] = f"accepted {name}"
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            outcome["server"] = f"refused: {exc}"
            conn.close()

    thread = threading.Thread(target=serve, name="client-cert-server", daemon=True)
    thread.start()
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.load_verify_locations(deproxy.ca.cert_pem_path)
    if client_files is not None:
        client_context.load_cert_chain(*client_files)
    try:
        with (
            socket.create_connection(listener.getsockname(), timeout=5) as raw,
            client_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            client = f"read {tls.recv(10)!r}"
    except (ssl.SSLError, OSError) as exc:
        client = f"failed: {exc}"
    thread.join(10)
    listener.close()
    return outcome["server"], client


def test_a_server_requiring_client_certs_accepts_the_issued_one(
    deproxy: Deproxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv(variable, raising=False)
    files = deproxy.ca.issue_client_cert("proxy-under-test")
    assert handshake_outcomes(deproxy, tmp_path, files) == (
        "accepted CN=proxy-under-test,O=pytest-deproxy",
        "read b'ok'",
    )
    server, client = handshake_outcomes(deproxy, tmp_path, None)
    assert server.startswith("refused")
    assert client.startswith("failed") or client == "read b''"
